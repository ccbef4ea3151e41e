export { bareClientArgs } from './bare-client-args.js';
export { parseWorkloadApiAddress, resolveWorkloadApiAddress, SPIFFE_ENDPOINT_SOCKET, type WorkloadApiAddress } from './address.js';
export {
  createWorkloadApiClient,
  type CallOptions,
  type JwtSvidParams,
  type WatchErrorHandler,
  type WatchHandle,
  type WorkloadApiClient,
  type WorkloadApiClientOptions,
} from './client.js';
export { defaultX509Svid, type ValidatedJwtSvid, type WorkloadJwtSvid, type WorkloadX509Svid, type X509Context } from './convert.js';
export { isWorkloadApiError, retryDecision, WorkloadApiError, type RetryDecision } from './errors.js';
export {
  jsonToStruct,
  structToJson,
  SECURITY_HEADER,
  SECURITY_HEADER_VALUE,
  workloadApiService,
  type JwtBundlesResponseMessage,
  type JwtSvidRequestMessage,
  type JwtSvidResponseMessage,
  type ValidateJwtSvidRequestMessage,
  type ValidateJwtSvidResponseMessage,
  type X509BundlesResponseMessage,
  type X509SvidResponseMessage,
} from './proto.js';
export { linearBackoff, watchWithRetry, type BackoffStrategy, type RetryOptions } from './retry.js';
export { createX509Source, type X509Source, type X509SourceOptions, type X509SvidSource } from './x509-source.js';
