/**
 * How a refused or failed Workload API call reaches callers: a SvidscopeError whose `code` follows
 * the catalogue (so the CLI prints and exits as for every other error) and which also carries the
 * gRPC status the server answered, because the standard's retry rules are stated per status.
 */
import * as grpc from '@grpc/grpc-js';
import { SvidscopeError, type ErrorCode } from '../../common/errors/catalog.js';
import { codeOfServiceError } from '../../common/errors/grpc.js';
import type { WorkloadApiAddress } from './address.js';

const STATUS_NAME = new Map<number, string>(
  Object.entries(grpc.status).filter((e): e is [string, number] => typeof e[1] === 'number').map(([name, value]) => [value, name]),
);

export function statusName(status: grpc.status): string {
  return STATUS_NAME.get(status) ?? `CODE_${status}`;
}

/** A Workload API failure: catalogue `code` plus the gRPC `status` (and its name) the call ended with. */
export class WorkloadApiError extends SvidscopeError {
  readonly status: grpc.status;
  readonly statusName: string;
  constructor(code: ErrorCode, status: grpc.status, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'WorkloadApiError';
    this.status = status;
    this.statusName = statusName(status);
  }
}

export function isWorkloadApiError(err: unknown): err is WorkloadApiError {
  return err instanceof WorkloadApiError;
}

/**
 * Translates a grpc-js error. The code is svidscope's agent's own (its trailer) or the one the
 * status stands for (any other SPIFFE agent). The server's own message is kept (for
 * InvalidArgument it names the broken rule, e.g. "security header missing from request");
 * connection failures, whose grpc-js text is obscure, are reworded to say which socket could not be
 * reached and why. Reading grpc-js's connection text is classification of a foreign error: the
 * transport gives no structured cause.
 */
export function fromServiceError(rpc: string, err: grpc.ServiceError, address: WorkloadApiAddress, deadlineMs?: number): WorkloadApiError {
  let code: ErrorCode = codeOfServiceError(err);
  const details = err.details || err.message;
  let message = `workloadapi: ${rpc}: ${details}`;
  if (err.code === grpc.status.UNAVAILABLE && /ENOENT/.test(details)) code = 'workload-api-socket-missing';
  if (err.code === grpc.status.UNAVAILABLE && /No connection established|connect |Failed to connect/i.test(details)) {
    message = `workloadapi: cannot reach the workload API at ${address.address}: ${connectReason(details)}`;
  } else if (err.code === grpc.status.DEADLINE_EXCEEDED) {
    message = `workloadapi: ${rpc}: no answer within the deadline${deadlineMs === undefined ? '' : ` of ${deadlineMs} ms`}`;
  }
  return new WorkloadApiError(code, err.code, message, { cause: err });
}

function connectReason(details: string): string {
  if (/ENOENT/.test(details)) return 'no socket at that path (is the agent running?)';
  if (/ECONNREFUSED/.test(details)) return 'connection refused (is the agent running?)';
  if (/EACCES|EPERM/.test(details)) return 'permission denied on the socket';
  return details;
}

/** The stream ended without an error status: the standard says clients reconnect, so it is retryable. */
export function streamEnded(rpc: string): WorkloadApiError {
  return new WorkloadApiError('workload-api-stream-ended', grpc.status.UNAVAILABLE, `workloadapi: ${rpc}: stream ended by the server`);
}

export type RetryDecision = 'stop' | 'stop-with-error' | 'retry';

/**
 * go-spiffe's retry table for watches (`workloadapi/client.go` handleWatchError), by the status a
 * stream ended with:
 *
 * | status           | decision                                              |
 * |------------------|-------------------------------------------------------|
 * | CANCELLED        | stop quietly: someone meant to end it                 |
 * | INVALID_ARGUMENT | stop with the error: retrying cannot fix the request  |
 * | anything else    | retry with backoff (PermissionDenied included: entries may still be on their way) |
 */
export function retryDecision(err: WorkloadApiError): RetryDecision {
  if (err.status === grpc.status.CANCELLED) return 'stop';
  if (err.status === grpc.status.INVALID_ARGUMENT) return 'stop-with-error';
  return 'retry';
}
