/**
 * The Workload API's gRPC server: gRPC's mapping onto HTTP/2 (unary and server-streaming calls,
 * which is all the Workload API has) written over Node's own HTTP/2, in place of grpc-js's server.
 *
 * Why not grpc-js here, as everywhere else: a measured hot path. With 1,000 callers at once (the
 * `workload-api` bench, callers that cost almost nothing), grpc-js's server spent 0.11–0.21 ms of
 * the agent's one event loop per stream just to answer with bytes already encoded, against
 * 0.04 ms for Node's HTTP/2 alone doing the same; the last of 1,000 simultaneous callers waited
 * 96–158 ms for its first message behind grpc-js alone, 41–104 ms behind Node's HTTP/2. The goal
 * (p99 < 100 ms) is out of reach on top of grpc-js. The HTTP/2 protocol itself (framing, HPACK,
 * flow control, its abuse protections) stays Node's; only the gRPC layer is ours, and it is small:
 *
 * - a request is POST with a gRPC content type (else HTTP 405 / 415, as the gRPC spec says), to a
 *   registered method (else UNIMPLEMENTED); `grpc-timeout` sets a deadline (DEADLINE_EXCEEDED);
 * - its body is exactly one uncompressed message of at most `maxRequestBytes` (else
 *   RESOURCE_EXHAUSTED, or UNIMPLEMENTED for a compressed one: we accept `identity` only and say
 *   so in `grpc-accept-encoding`), read to the end of the stream before the handler runs;
 * - at most `maxStreamsPerConnection` calls are open on one connection (RESOURCE_EXHAUSTED);
 * - responses are length-prefixed messages after `:status 200` and the content type, then
 *   `grpc-status`, `grpc-message` (percent-encoded) and the error's metadata as trailers, or all of
 *   that in one trailers-only HEADERS frame when nothing was sent;
 * - the client cancelling (RST_STREAM, or the connection closing) emits `cancelled` on the call.
 *
 * Handlers are grpc-js handlers: the call objects have the members grpc-js gives them that the
 * Workload API handler uses (`metadata`, `request`, `getPeer()`, `write`, `end`, `cancelled`, and
 * an `error` event that ends the call with that status, as grpc-js's streams do), so the handler,
 * its tests and the service definition (serializers, paths) are the same ones.
 */
import { EventEmitter } from 'node:events';
import http2 from 'node:http2';
import type net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { SvidscopeError } from '../../../common/errors/catalog.js';

/** A place connections are handed to once accepted and vetted (listener.ts); grpc-js's connection injector has the same shape. */
export interface ConnectionSink {
  injectConnection(socket: net.Socket): void;
  /** Closes every connection handed over. */
  destroy(): void;
}

/**
 * Documented defaults (docs/security.md). The request size is grpc-js's default receive limit, which
 * the Workload API had before: an oversized audience or token is then refused by the rule it
 * breaks (`jwt_audience_max_bytes`, INVALID_ARGUMENT), not by the transport.
 */
export const DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024;
export const DEFAULT_MAX_STREAMS_PER_CONNECTION = 100;
/** The names `onLimit` reports (the `limit` label of `svidscope_agent_limit_refusals_total`). */
export const WORKLOAD_API_LIMITS = ['workload_api_max_request_bytes', 'workload_api_max_streams_per_connection'] as const;

export interface H2GrpcServerOptions {
  /** Largest request message accepted, in bytes. */
  readonly maxRequestBytes?: number;
  /** Calls open at once on one connection. */
  readonly maxStreamsPerConnection?: number;
  /** A call reached a registered method (the listener lifts the connection's first-request deadline). */
  readonly onCall?: (call: { getPeer(): string }) => void;
  /** A request refused by one of the limits above: `workload_api_max_request_bytes` or `workload_api_max_streams_per_connection`. */
  readonly onLimit?: (limit: (typeof WORKLOAD_API_LIMITS)[number]) => void;
}

type Method = grpc.MethodDefinition<unknown, unknown>;
type Handler = (call: ServerCall, callback?: (err: Partial<grpc.ServiceError> | null, value?: unknown) => void) => void;

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH } = http2.constants;
const GRPC_CONTENT_TYPE = 'application/grpc+proto';
const MESSAGE_PREFIX = 5;
/** The response headers every call starts with. */
const RESPONSE_HEADERS = Object.freeze({ [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: GRPC_CONTENT_TYPE, 'grpc-accept-encoding': 'identity', 'grpc-encoding': 'identity' });
/** Metadata keys a handler's error may not set as trailers: they are the protocol's. */
const RESERVED = new Set(['grpc-status', 'grpc-message', 'grpc-status-details-bin', 'content-type', 'grpc-encoding', 'grpc-accept-encoding']);
/** Request headers of HTTP/2 and gRPC themselves, left out of a call's metadata. */
const PROTOCOL_HEADERS = new Set(['content-type', 'te', 'user-agent', 'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'accept-encoding', 'content-length']);
/** `grpc-timeout` units, in milliseconds. */
const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 };

export class H2GrpcServer implements ConnectionSink {
  private readonly http2Server: http2.Http2Server;
  private readonly methods = new Map<string, { definition: Method; handler: Handler }>();
  private readonly sessions = new Map<http2.ServerHttp2Session, { peer: string; open: number }>();
  private readonly maxRequestBytes: number;
  private readonly maxStreams: number;

  constructor(private readonly options: H2GrpcServerOptions = {}) {
    this.maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    this.maxStreams = options.maxStreamsPerConnection ?? DEFAULT_MAX_STREAMS_PER_CONNECTION;
    // Node's per-session memory check is left off, as grpc-js leaves it: the stream and request
    // limits above bound what a connection holds, and Node degrades badly when that check trips.
    this.http2Server = http2.createServer({ maxSessionMemory: Number.MAX_SAFE_INTEGER, maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER });
    this.http2Server.on('session', (session) => {
      // The listener named the socket before handing it over (its remoteAddress): that name is the call's peer.
      this.sessions.set(session, { peer: String(session.socket.remoteAddress), open: 0 });
      session.on('error', () => undefined);
      session.once('close', () => this.sessions.delete(session));
    });
    this.http2Server.on('stream', (stream, headers) => this.dispatch(stream, headers));
  }

  /** Serves every method of `definition` with the grpc-js style handler of the same name. */
  addService(definition: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void {
    for (const [name, method] of Object.entries(definition)) {
      const handler = implementation[name];
      // Programming errors of the composition root, caught by the agent's start in every test.
      if (typeof handler !== 'function') throw new SvidscopeError('internal', `h2-grpc-server: no handler for ${name}`);
      if (method.requestStream) throw new SvidscopeError('internal', `h2-grpc-server: ${name} is client-streaming, which is not supported`);
      this.methods.set(method.path, { definition: method as Method, handler: handler as unknown as Handler });
    }
  }

  injectConnection(socket: net.Socket): void {
    this.http2Server.emit('connection', socket);
  }

  destroy(): void {
    for (const session of this.sessions.keys()) session.destroy();
    this.sessions.clear();
  }

  private dispatch(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    if (headers[HTTP2_HEADER_METHOD] !== 'POST') return void stream.respond({ [HTTP2_HEADER_STATUS]: 405 }, { endStream: true });
    const contentType = headers[HTTP2_HEADER_CONTENT_TYPE];
    if (typeof contentType !== 'string' || !/^application\/grpc(\+|;|$)/.test(contentType)) return void stream.respond({ [HTTP2_HEADER_STATUS]: 415 }, { endStream: true });
    const session = this.sessions.get(stream.session as http2.ServerHttp2Session);
    if (!session) return void stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    const path = String(headers[HTTP2_HEADER_PATH]);
    const method = this.methods.get(path);
    if (!method) return trailersOnly(stream, grpc.status.UNIMPLEMENTED, `unknown method ${path.slice(0, 200)}`);
    if (session.open >= this.maxStreams) {
      this.options.onLimit?.('workload_api_max_streams_per_connection');
      return trailersOnly(stream, grpc.status.RESOURCE_EXHAUSTED, `too many calls open on this connection (at most ${this.maxStreams})`);
    }
    const encoding = headers['grpc-encoding'];
    session.open++;
    stream.once('close', () => session.open--);
    const call = new ServerCall(stream, session.peer, requestMetadata(headers), method.definition.responseSerialize);
    this.options.onCall?.(call);
    const timeout = parseTimeout(headers['grpc-timeout']);
    if (timeout !== undefined) call.setDeadline(timeout);
    readRequest(stream, this.maxRequestBytes, (body) => {
      if (call.cancelled) return;
      if (typeof body === 'string') {
        if (body === 'too-large') this.options.onLimit?.('workload_api_max_request_bytes');
        return call.sendStatus(...requestRefusal(body, this.maxRequestBytes, encoding));
      }
      try {
        call.request = method.definition.requestDeserialize(body);
      } catch {
        return call.sendStatus(grpc.status.INTERNAL, 'request message could not be decoded');
      }
      if (method.definition.responseStream) method.handler(call);
      else method.handler(call, (err, value) => (err ? call.emit('error', err) : call.respondUnary(value)));
    });
  }
}

type RequestProblem = 'too-large' | 'compressed' | 'not-one-message';

function requestRefusal(problem: RequestProblem, max: number, encoding: string | string[] | undefined): [grpc.status, string] {
  if (problem === 'too-large') return [grpc.status.RESOURCE_EXHAUSTED, `request message larger than ${max} bytes`];
  if (problem === 'compressed') return [grpc.status.UNIMPLEMENTED, `compressed request (grpc-encoding ${String(encoding ?? 'none')}); only identity is accepted`];
  return [grpc.status.INTERNAL, 'the request must be exactly one message'];
}

/**
 * Reads the request body to the end of the stream and hands over its one message, or the problem
 * with it. Once the body passes the size limit the call is answered and the rest of it is read and
 * dropped: a hostile caller never makes the agent hold more than the limit per call.
 */
function readRequest(stream: http2.ServerHttp2Stream, maxRequestBytes: number, done: (message: Buffer | RequestProblem) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  stream.on('data', (chunk: Buffer) => {
    if (over) return;
    size += chunk.length;
    if (size > maxRequestBytes + MESSAGE_PREFIX) {
      over = true;
      chunks.length = 0;
      done('too-large');
      return;
    }
    chunks.push(chunk);
  });
  stream.once('end', () => {
    if (over) return;
    const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
    if (body.length < MESSAGE_PREFIX || body.readUInt32BE(1) !== body.length - MESSAGE_PREFIX) return done('not-one-message');
    if (body[0] !== 0) return done('compressed');
    done(body.subarray(MESSAGE_PREFIX));
  });
}

/** Longest delay a Node timer takes; a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `grpc-timeout` in milliseconds (at most 8 digits and a unit, per the spec), or undefined when
 * absent, malformed, or beyond what a timer can wait (up to 99,999,999 hours may be asked: no
 * deadline then, rather than one that fires at once).
 */
function parseTimeout(value: string | string[] | undefined): number | undefined {
  const m = typeof value === 'string' ? /^(\d{1,8})([HMSmun])$/.exec(value) : null;
  const ms = m ? Number(m[1]) * TIMEOUT_UNITS[m[2]] : undefined;
  return ms !== undefined && ms <= MAX_TIMER_MS ? ms : undefined;
}

/** `grpc-message` as the spec encodes it: UTF-8, with `%` and bytes outside printable ASCII percent-encoded. */
function encodeMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message)) out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/**
 * Framed messages by their encoded bytes. The Workload API handler hands every caller with the
 * same identity the same encoded answer (its ResponseCache), so a thousand streams share one framed
 * copy instead of each allocating and copying its own; the entry goes when the answer does.
 */
const framedAnswers = new WeakMap<Buffer, Buffer>();

function frameMessage(body: Buffer): Buffer {
  const known = framedAnswers.get(body);
  if (known) return known;
  const framed = Buffer.allocUnsafeSlow(MESSAGE_PREFIX + body.length);
  framed[0] = 0;
  framed.writeUInt32BE(body.length, 1);
  body.copy(framed, MESSAGE_PREFIX);
  framedAnswers.set(body, framed);
  return framed;
}

/**
 * The request's metadata as grpc-js gives it to handlers (`Metadata.fromHttp2Headers`), less the
 * headers the protocol owns, which handlers never read: that is most of them, and each costs a
 * validated entry per call.
 */
function requestMetadata(headers: http2.IncomingHttpHeaders): grpc.Metadata {
  const custom: http2.IncomingHttpHeaders = {};
  for (const key in headers) if (!PROTOCOL_HEADERS.has(key) && key.charCodeAt(0) !== 0x3a) custom[key] = headers[key];
  return grpc.Metadata.fromHttp2Headers(custom);
}

function statusHeaders(code: grpc.status, details: string, metadata?: grpc.Metadata): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [key, value] of Object.entries(metadata?.getMap() ?? {})) {
    if (!RESERVED.has(key)) out[key] = Buffer.isBuffer(value) ? value.toString('base64') : value;
  }
  out['grpc-status'] = String(code);
  out['grpc-message'] = encodeMessage(details);
  return out;
}

function trailersOnly(stream: http2.ServerHttp2Stream, code: grpc.status, details: string, metadata?: grpc.Metadata): void {
  if (stream.closed || stream.destroyed) return;
  stream.respond({ ...RESPONSE_HEADERS, ...statusHeaders(code, details, metadata) }, { endStream: true });
}

/**
 * One call, as a grpc-js handler sees a ServerWritableStream or ServerUnaryCall (the members the
 * Workload API handler uses). Emitting `error` with a ServiceError ends the call with its status.
 */
export class ServerCall extends EventEmitter {
  request: unknown = undefined;
  cancelled = false;
  private headersSent = false;
  private finished = false;
  private deadline: NodeJS.Timeout | undefined;

  constructor(private readonly stream: http2.ServerHttp2Stream, private readonly peer: string, readonly metadata: grpc.Metadata, private readonly serialize: (value: unknown) => Buffer) {
    super();
    this.on('error', (err: Partial<grpc.ServiceError>) => this.sendStatus(err.code ?? grpc.status.UNKNOWN, err.details ?? err.message ?? 'unknown error', err.metadata));
    stream.once('close', () => {
      if (this.deadline) clearTimeout(this.deadline);
      if (!this.finished) {
        // The client reset the stream or the connection went away before the call ended.
        this.finished = true;
        this.cancelled = true;
        this.emit('cancelled', 'cancelled');
      }
      this.emit('close');
    });
  }

  getPeer(): string {
    return this.peer;
  }

  setDeadline(ms: number): void {
    this.deadline = setTimeout(() => {
      this.sendStatus(grpc.status.DEADLINE_EXCEEDED, 'deadline exceeded');
      this.cancelled = true;
      this.emit('cancelled', 'deadline');
    }, ms);
    this.deadline.unref();
  }

  /** Sends one message (framed here); false once the call has ended. */
  write(message: unknown): boolean {
    if (this.finished || this.stream.closed || this.stream.destroyed) return false;
    const framed = frameMessage(this.serialize(message));
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    }
    return this.stream.write(framed);
  }

  /** Ends the call with OK. */
  end(): void {
    this.sendStatus(grpc.status.OK, 'OK');
  }

  respondUnary(value: unknown): void {
    let ok = true;
    try {
      this.write(value);
    } catch {
      ok = false;
    }
    if (ok) this.end();
    else this.sendStatus(grpc.status.INTERNAL, 'response could not be encoded');
  }

  sendStatus(code: grpc.status, details: string, metadata?: grpc.Metadata): void {
    if (this.finished) return;
    this.finished = true;
    if (this.deadline) clearTimeout(this.deadline);
    const stream = this.stream;
    if (stream.closed || stream.destroyed) return;
    if (!this.headersSent) return trailersOnly(stream, code, details, metadata);
    stream.once('wantTrailers', () => stream.sendTrailers(statusHeaders(code, details, metadata)));
    stream.end();
  }
}
