import * as grpc from '@grpc/grpc-js';
import type { Span, Tracer } from '@opentelemetry/api';
import { extractFromMetadata, SpanKind, withSpan } from '../../../common/telemetry/tracing.js';
import { toServiceError } from '../../../common/errors/grpc.js';
import type { Logger } from '../../../common/log.js';

export { ERROR_CODE_METADATA, serverServices, toNumber } from '../../server-api/services.js';

/**
 * Adapts an async handler to grpc-js's callback style. Any thrown error is mapped to a gRPC status
 * once, here, by the project's one mapping (common/errors/grpc.ts): our errors answer with their
 * catalogue status and code trailer, unexpected faults with INTERNAL and a log line. With a tracer,
 * each call runs in a server span whose parent comes from the caller's W3C trace context.
 */
export function unary<Req, Res>(
  logger: Logger,
  method: string,
  handler: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
  observe?: (method: string, code: grpc.status, seconds: number) => void,
  tracer?: Tracer,
): grpc.handleUnaryCall<Req, Res> {
  // The span's name and attributes are made once; with no tracer (the default) a call costs no
  // span work at all, not even the arguments of one (every agent sync comes through here).
  const spanName = `svidscope.server/${method}`;
  const spanAttributes = { 'rpc.system': 'grpc', 'rpc.method': method };
  const answer = async (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>, span: Span | undefined) => {
    const start = process.hrtime.bigint();
    try {
      const res = await handler(call.request, call);
      observe?.(method, grpc.status.OK, Number(process.hrtime.bigint() - start) / 1e9);
      callback(null, res);
    } catch (err) {
      const serviceError = toServiceError(err, (e) => logger.error({ err: e, method }, 'unexpected error in handler'));
      observe?.(method, serviceError.code, Number(process.hrtime.bigint() - start) / 1e9);
      span?.setAttribute('rpc.grpc.status_code', serviceError.code);
      logger.debug({ method, code: grpc.status[serviceError.code], msg: serviceError.details }, 'request refused');
      callback(serviceError, null);
    }
  };
  if (!tracer) return (call, callback) => void answer(call, callback, undefined);
  return (call, callback) => {
    const parent = extractFromMetadata(call.metadata.getMap());
    void withSpan(tracer, spanName, spanAttributes, (span) => answer(call, callback, span), { kind: SpanKind.SERVER, parent });
  };
}
