import * as grpc from '@grpc/grpc-js';
import type { Tracer } from '@opentelemetry/api';
import { extractFromMetadata, SpanKind, withSpan } from '../../../common/telemetry/tracing.js';
import { isSvidscopeError } from '../../../common/errors/catalog.js';
import type { Logger } from '../../../common/log.js';
import { ERROR_CODE_METADATA } from '../../server-api/services.js';

export { ERROR_CODE_METADATA, serverServices, toNumber } from '../../server-api/services.js';

/** A gRPC error with a status code, as grpc-js expects (a string `code` would become UNKNOWN). */
export class StatusError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Maps any thrown error to a gRPC status once, at the handler boundary. Our errors carry their
 * status in the catalogue; NotFound hides inner details (SPIRE does the same), unexpected faults
 * become INTERNAL with a fixed message and are logged with their stack.
 */
export function toServiceError(err: unknown, logger: Logger, method: string): grpc.ServiceError {
  let code: grpc.status;
  let details: string;
  if (err instanceof StatusError) {
    code = err.code;
    details = err.message;
  } else if (isSvidscopeError(err)) {
    code = err.grpcStatus as number as grpc.status;
    details = err.message;
  } else {
    code = grpc.status.INTERNAL;
    details = 'internal error';
    logger.error({ err, method }, 'unexpected error in handler');
  }
  const e = new Error(details) as grpc.ServiceError;
  e.code = code;
  e.details = details;
  e.metadata = new grpc.Metadata();
  // The stable svidscope code travels beside the gRPC status, so CLIs can report the exact rule.
  if (isSvidscopeError(err)) e.metadata.set(ERROR_CODE_METADATA, err.code);
  return e;
}

/**
 * Adapts an async handler to grpc-js's callback style with the error mapping above. With a tracer,
 * each call runs in a server span whose parent comes from the caller's W3C trace context.
 */
export function unary<Req, Res>(
  logger: Logger,
  method: string,
  handler: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
  observe?: (method: string, code: grpc.status, seconds: number) => void,
  tracer?: Tracer,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const start = process.hrtime.bigint();
    const parent = tracer ? extractFromMetadata(call.metadata.getMap()) : undefined;
    void withSpan(tracer, `svidscope.server/${method}`, { 'rpc.system': 'grpc', 'rpc.method': method }, async (span) => {
      try {
        const res = await handler(call.request, call);
        observe?.(method, grpc.status.OK, Number(process.hrtime.bigint() - start) / 1e9);
        callback(null, res);
      } catch (err) {
        const serviceError = toServiceError(err, logger, method);
        observe?.(method, serviceError.code, Number(process.hrtime.bigint() - start) / 1e9);
        span?.setAttribute('rpc.grpc.status_code', serviceError.code);
        logger.debug({ method, code: grpc.status[serviceError.code], msg: serviceError.details }, 'request refused');
        callback(serviceError, null);
      }
    }, { kind: SpanKind.SERVER, parent });
  };
}
