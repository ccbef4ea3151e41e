/**
 * A Workload API client written against the standard proto only (go-spiffe `workloadapi.Client`):
 * it works against svidscope's agent and SPIRE's alike. Every call carries the security header;
 * every failure becomes a WorkloadApiError (catalogue code + gRPC status). Fetches of streaming
 * RPCs take the first message and cancel; watches keep one stream open until closed or failed —
 * reconnecting is the job of the retry layer (`watchWithRetry`, `createX509Source`).
 */
import * as grpc from '@grpc/grpc-js';
import type { BundleSet } from '../spiffe/bundle/index.js';
import { resolveWorkloadApiAddress, type WorkloadApiAddress } from './address.js';
import {
  toJwtBundles,
  toJwtSvids,
  toValidated,
  toX509Bundles,
  toX509Context,
  type ValidatedJwtSvid,
  type WorkloadJwtSvid,
  type X509Context,
} from './convert.js';
import { fromServiceError, isWorkloadApiError, streamEnded, WorkloadApiError } from './errors.js';
import { SECURITY_HEADER, SECURITY_HEADER_VALUE, workloadApiService, type JwtSvidRequestMessage } from './proto.js';

export interface WorkloadApiClientOptions {
  /** `unix:///path`, `tcp://IP:port` or an absolute path; default: `SPIFFE_ENDPOINT_SOCKET` of `env`. */
  readonly address?: string | WorkloadApiAddress;
  /** Where the fallback variable is read; defaults to the process environment, as go-spiffe does. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Default deadline (ms) of unary calls and of the first message of a fetch; none when unset. */
  readonly deadlineMs?: number;
  /** Sent INSTEAD of the standard metadata. For tests of servers that must refuse a header-less call. */
  readonly rawMetadata?: grpc.Metadata;
}

export interface CallOptions {
  /** Overrides the client's default deadline for this call. */
  readonly deadlineMs?: number;
}

export interface WatchHandle {
  /** Cancels the stream; idempotent. `done` then resolves with undefined and no error is reported. */
  close(): void;
  /** Resolves when the stream is over: with the error that ended it, or undefined after close(). */
  readonly done: Promise<WorkloadApiError | undefined>;
}

/** Called for every failure of a watch: a discarded message (stream goes on) or the stream's end. */
export type WatchErrorHandler = (err: WorkloadApiError) => void;

export interface JwtSvidParams {
  readonly audience: readonly string[];
  /** Restricts the answer to this identity; by default the server returns every entitled one. */
  readonly spiffeId?: string;
}

export interface WorkloadApiClient {
  readonly address: WorkloadApiAddress;
  fetchX509Context(opts?: CallOptions): Promise<X509Context>;
  watchX509Context(onUpdate: (ctx: X509Context) => void, onError: WatchErrorHandler): WatchHandle;
  fetchX509Bundles(opts?: CallOptions): Promise<BundleSet>;
  watchX509Bundles(onUpdate: (bundles: BundleSet) => void, onError: WatchErrorHandler): WatchHandle;
  /** The first (default) JWT-SVID of the answer. */
  fetchJwtSvid(params: JwtSvidParams, opts?: CallOptions): Promise<WorkloadJwtSvid>;
  fetchJwtSvids(params: JwtSvidParams, opts?: CallOptions): Promise<WorkloadJwtSvid[]>;
  fetchJwtBundles(opts?: CallOptions): Promise<BundleSet>;
  watchJwtBundles(onUpdate: (bundles: BundleSet) => void, onError: WatchErrorHandler): WatchHandle;
  /** Asks the server to validate a token for one audience (preferred over local validation by the standard). */
  validateJwtSvid(token: string, audience: string, opts?: CallOptions): Promise<ValidatedJwtSvid>;
  /** Cancels open streams and closes the channel. */
  close(): void;
}

type StreamFn = (req: object, md: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientReadableStream<unknown>;
type UnaryFn = (req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => grpc.ClientUnaryCall;

export function createWorkloadApiClient(options: WorkloadApiClientOptions = {}): WorkloadApiClient {
  const address = typeof options.address === 'object' ? options.address : resolveWorkloadApiAddress(options.address, options.env ?? process.env);
  const Service = workloadApiService();
  const stub = new Service(address.grpcTarget, grpc.credentials.createInsecure()) as unknown as Record<string, unknown>;
  const startStream = (rpc: string, opts: grpc.CallOptions) => (stub[rpc] as StreamFn).call(stub, {}, metadata(), opts);
  const open = new Set<grpc.ClientReadableStream<unknown>>();
  let clientClosed = false;

  const metadata = (): grpc.Metadata => {
    if (options.rawMetadata) return options.rawMetadata.clone();
    const md = new grpc.Metadata();
    md.set(SECURITY_HEADER, SECURITY_HEADER_VALUE);
    return md;
  };
  const callOptions = (deadlineMs: number | undefined): grpc.CallOptions => (deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs });
  const deadlineOf = (opts?: CallOptions) => opts?.deadlineMs ?? options.deadlineMs;

  function unary<T>(rpc: string, request: object, convert: (res: never) => T, opts?: CallOptions): Promise<T> {
    const deadlineMs = deadlineOf(opts);
    return new Promise<T>((resolve, reject) => {
      (stub[rpc] as UnaryFn).call(stub, request, metadata(), callOptions(deadlineMs), (err, res) => {
        if (err) return reject(fromServiceError(rpc, err, address, deadlineMs));
        try {
          resolve(convert(res as never));
        } catch (e) {
          reject(e);
        }
      });
    });
  }

  /** Opens a stream, converts its first message, cancels it. */
  function first<T>(rpc: string, convert: (msg: never) => T, opts?: CallOptions): Promise<T> {
    const deadlineMs = deadlineOf(opts);
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const call = startStream(rpc, callOptions(deadlineMs));
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        open.delete(call);
        call.cancel();
        fn();
      };
      open.add(call);
      call.on('data', (msg: unknown) => settle(() => {
        try {
          resolve(convert(msg as never));
        } catch (e) {
          reject(e);
        }
      }));
      // The listener stays attached: the cancel above makes grpc-js emit CANCELLED, which must not go unhandled.
      call.on('error', (err: grpc.ServiceError) => settle(() => reject(fromServiceError(rpc, err, address, deadlineMs))));
      // 'status' comes last whatever happened; only an OK one is not already handled as 'error'.
      call.on('status', (st: grpc.StatusObject) => st.code === grpc.status.OK && settle(() => reject(streamEnded(rpc))));
    });
  }

  function watch<T>(rpc: string, convert: (msg: never) => T, onUpdate: (value: T) => void, onError: WatchErrorHandler): WatchHandle {
    let closedByUs = false;
    let finish!: (err: WorkloadApiError | undefined) => void;
    const done = new Promise<WorkloadApiError | undefined>((resolve) => (finish = resolve));
    const call = startStream(rpc, {});
    open.add(call);
    const end = (err: WorkloadApiError) => {
      if (!open.delete(call)) return;
      // Closing the handle or the whole client is the caller's choice, not a failure to report.
      if (closedByUs || clientClosed) return finish(undefined);
      onError(err);
      finish(err);
    };
    call.on('data', (msg: unknown) => {
      let value: T;
      try {
        value = convert(msg as never);
      } catch (err) {
        // go-spiffe reports a bad message and keeps the stream: the next update may well be good.
        if (isWorkloadApiError(err)) onError(err);
        else throw err;
        return;
      }
      onUpdate(value);
    });
    call.on('error', (err: grpc.ServiceError) => end(fromServiceError(rpc, err, address)));
    call.on('status', (st: grpc.StatusObject) => st.code === grpc.status.OK && end(streamEnded(rpc)));
    return {
      done,
      close() {
        if (closedByUs) return;
        closedByUs = true;
        if (!open.has(call)) return;
        call.cancel();
      },
    };
  }

  const jwtRequest = (p: JwtSvidParams): JwtSvidRequestMessage => ({ audience: [...p.audience], spiffe_id: p.spiffeId ?? '' });

  return {
    address,
    fetchX509Context: (opts) => first('FetchX509SVID', toX509Context, opts),
    watchX509Context: (onUpdate, onError) => watch('FetchX509SVID', toX509Context, onUpdate, onError),
    fetchX509Bundles: (opts) => first('FetchX509Bundles', toX509Bundles, opts),
    watchX509Bundles: (onUpdate, onError) => watch('FetchX509Bundles', toX509Bundles, onUpdate, onError),
    fetchJwtSvids: (params, opts) => unary('FetchJWTSVID', jwtRequest(params), toJwtSvids, opts),
    fetchJwtSvid: async (params, opts) => (await unary('FetchJWTSVID', jwtRequest(params), toJwtSvids, opts))[0],
    fetchJwtBundles: (opts) => first('FetchJWTBundles', toJwtBundles, opts),
    watchJwtBundles: (onUpdate, onError) => watch('FetchJWTBundles', toJwtBundles, onUpdate, onError),
    validateJwtSvid: (token, audience, opts) => unary('ValidateJWTSVID', { audience, svid: token }, toValidated, opts),
    close() {
      clientClosed = true;
      for (const call of open) call.cancel();
      (stub as unknown as grpc.Client).close();
    },
  };
}
