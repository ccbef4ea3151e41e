/**
 * How svidscope errors cross gRPC, in both directions, for every service the project serves (the
 * server's node and admin APIs, the agent's Workload API) and every client it ships.
 *
 * grpc-js honours a thrown error's `code` only when it is an integer, so a catalogue code must be
 * turned into a status at the handler boundary; the code itself travels beside the status in the
 * `svidscope-error-code` trailer, so a client can name the exact rule. A peer that sends no trailer
 * (another SPIFFE implementation, or a transport failure) is read by its status alone.
 */
import * as grpc from '@grpc/grpc-js';
import { codeForGrpcStatus, errorCatalog, isSvidscopeError, type ErrorCode } from './catalog.js';

/** Trailer metadata key carrying the svidscope error code of a refused call. */
export const ERROR_CODE_METADATA = 'svidscope-error-code';

/** The catalogue code of a failed call: the peer's own code from the trailer, else the one its status stands for. */
export function codeOfServiceError(err: Pick<grpc.ServiceError, 'code' | 'metadata'>): ErrorCode {
  const carried = String(err.metadata?.get(ERROR_CODE_METADATA)?.[0] ?? '');
  return carried in errorCatalog ? (carried as ErrorCode) : codeForGrpcStatus(err.code);
}

/** What a handler boundary does with an error it did not expect (not a SvidscopeError, or one coded `internal`). */
export type UnexpectedErrorSink = (err: unknown) => void;

/**
 * Turns any thrown error into the gRPC error a client sees. SvidscopeErrors answer with their
 * catalogue status, their message and the code trailer; anything unexpected (including the
 * `internal` code) becomes INTERNAL "internal error" with the same trailer, and is handed to
 * `unexpected` (to be logged with its stack) because its text may hold details callers must not see.
 */
export function toServiceError(err: unknown, unexpected: UnexpectedErrorSink): grpc.ServiceError {
  const expected = isSvidscopeError(err) && err.code !== 'internal';
  if (!expected) unexpected(err);
  const code: ErrorCode = expected ? err.code : 'internal';
  const details = expected ? err.message : 'internal error';
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_METADATA, code);
  return Object.assign(new Error(details), { code: errorCatalog[code].grpc as number as grpc.status, details, metadata });
}
