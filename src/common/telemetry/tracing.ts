import { context, propagation, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api';
import type { Logger } from '../log.js';

/** SPIFFE attributes on spans (semantic names of this project; OpenTelemetry has none for SPIFFE). */
export const SpanAttr = {
  trustDomain: 'spiffe.trust_domain',
  spiffeId: 'spiffe.id',
  svidType: 'spiffe.svid_type',
  ttl: 'spiffe.svid.ttl_seconds',
  entryId: 'spiffe.entry_id',
  count: 'svidscope.count',
} as const;

export interface Tracing {
  /** Undefined when tracing is off: callers then skip span work entirely (no cost when off). */
  readonly tracer: Tracer | undefined;
  shutdown(): Promise<void>;
}

/** Tracing is on only when the standard OTEL_* variables ask for an exporter. */
export function tracingRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (exporters.includes('none') || env.OTEL_SDK_DISABLED === 'true') return false;
  return exporters.length > 0 || Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/**
 * Starts the OpenTelemetry Node SDK (OTLP/HTTP exporter, W3C trace context propagator, async
 * context) when the environment asks for it; otherwise starts nothing. The SDK is loaded lazily
 * so a process without tracing never even imports it.
 */
export async function startTracing(opts: { serviceName: string; logger: Logger; env?: NodeJS.ProcessEnv }): Promise<Tracing> {
  if (!tracingRequested(opts.env)) return { tracer: undefined, shutdown: async () => undefined };
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const sdk = new NodeSDK({ serviceName: opts.serviceName, instrumentations: [] });
  sdk.start();
  opts.logger.info({ endpoint: process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT }, 'tracing on: exporting spans over OTLP');
  return {
    tracer: trace.getTracer(opts.serviceName),
    shutdown: () => sdk.shutdown().catch((err: unknown) => opts.logger.warn({ err }, 'trace exporter shutdown failed')),
  };
}

/** Runs `fn` in a span (child of `parent` or the active context) when a tracer is given; plainly otherwise. */
export async function withSpan<T>(tracer: Tracer | undefined, name: string, attributes: Attributes, fn: (span: Span | undefined) => Promise<T>, opts: { kind?: SpanKind; parent?: Context } = {}): Promise<T> {
  if (!tracer) return fn(undefined);
  return tracer.startActiveSpan(name, { kind: opts.kind ?? SpanKind.INTERNAL, attributes }, opts.parent ?? context.active(), async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** The trace id of the active span, for exemplars; undefined when none is recording. */
export function activeTraceId(): string | undefined {
  const span = trace.getActiveSpan();
  return span?.isRecording() ? span.spanContext().traceId : undefined;
}

/** Extracts W3C trace context from gRPC metadata (a map of header → value). */
export function extractFromMetadata(map: Record<string, unknown>): Context {
  return propagation.extract(context.active(), map, {
    keys: (carrier) => Object.keys(carrier),
    get: (carrier, key) => {
      const v = carrier[key];
      return typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString() : undefined;
    },
  });
}

/** Injects the active trace context into outgoing gRPC metadata (through a `set` callback). */
export function injectInto(set: (key: string, value: string) => void): void {
  propagation.inject(context.active(), {}, { set: (_c, k, v) => set(k, v) });
}

export { SpanKind };
