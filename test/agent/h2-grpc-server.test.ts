// The Workload API's own gRPC server (h2-grpc-server.ts) over a real Unix socket behind the real
// peercred listener: a grpc-js client sees what it saw from grpc-js's server (messages, statuses,
// UTF-8 details, the catalogue trailer, cancellation), and a raw HTTP/2 client gets the gRPC
// spec's answers to what no gRPC client sends: other methods and content types, unknown paths,
// compressed, missing, doubled and oversized messages, too many streams, a server-side deadline.
import * as grpc from '@grpc/grpc-js';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SvidscopeError } from '../../src/common/errors/catalog.js';
import { ERROR_CODE_METADATA, toServiceError } from '../../src/common/errors/grpc.js';
import { H2GrpcServer, type ServerCall } from '../../src/identity-plane/agent/endpoints/h2-grpc-server.js';
import { workloadApiServerDefinition } from '../../src/identity-plane/agent/endpoints/workload-handler.js';
import { listenWorkloadSocket, type WorkloadSocket } from '../../src/identity-plane/agent/peercred/listener.js';
import { SECURITY_HEADER, workloadApiService, type X509SvidResponseMessage } from '../../src/identity-plane/workload-api/proto.js';
import { removeDir, tempDir } from '../support/server.js';

const MAX_REQUEST = 1024;
const MAX_STREAMS = 3;
const dir = tempDir('h2-grpc');
const socketPath = path.join(dir, 'api.sock');
let socket: WorkloadSocket;
let server: H2GrpcServer;
const limits: string[] = [];
const cancelled: string[] = [];
/** What FetchX509SVID does, per test. */
let onStream: (call: ServerCall) => void = () => undefined;

const x509 = (id: string): X509SvidResponseMessage => ({ svids: [{ spiffe_id: id, x509_svid: Buffer.from([1, 2]), x509_svid_key: Buffer.from([3]), bundle: Buffer.from([4]), hint: '' }], crl: [], federated_bundles: {} });

beforeAll(async () => {
  server = new H2GrpcServer({ maxRequestBytes: MAX_REQUEST, maxStreamsPerConnection: MAX_STREAMS, onLimit: (l) => limits.push(l) });
  const unimplemented = (call: ServerCall) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'not here' });
  server.addService(workloadApiServerDefinition(), {
    FetchX509SVID: (call: ServerCall) => {
      call.on('cancelled', (why: string) => cancelled.push(why));
      onStream(call);
    },
    FetchJWTSVID: (call: ServerCall, callback: grpc.sendUnaryData<unknown>) => {
      const req = call.request as { audience: string[]; spiffe_id: string };
      if (req.spiffe_id === 'refuse') return callback(toServiceError(new SvidscopeError('workload-no-identity', 'no identité for “refuse”'), () => undefined), null);
      callback(null, { svids: [{ spiffe_id: `${req.audience.join(',')}|${String(call.metadata.get(SECURITY_HEADER))}|${call.getPeer().startsWith('unix-peercred:')}`, svid: 't', hint: '' }] });
    },
    FetchX509Bundles: unimplemented, FetchJWTBundles: unimplemented, ValidateJWTSVID: unimplemented, FetchWITSVID: unimplemented, FetchWITBundles: unimplemented,
  } as unknown as grpc.UntypedServiceImplementation);
  socket = await listenWorkloadSocket({ socketPath, server });
});

afterAll(async () => {
  await socket?.close();
  removeDir(dir);
});

afterEach(() => {
  limits.length = 0;
  cancelled.length = 0;
  onStream = () => undefined;
});

type Stub = grpc.Client & {
  FetchX509SVID(req: object, md: grpc.Metadata, opts?: grpc.CallOptions): grpc.ClientReadableStream<X509SvidResponseMessage>;
  FetchJWTSVID(req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res?: { svids: { spiffe_id: string }[] }) => void): void;
};

function client(): Stub {
  const Service = workloadApiService();
  return new Service(`unix://${socketPath}`, grpc.credentials.createInsecure()) as unknown as Stub;
}

function header(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(SECURITY_HEADER, 'true');
  return md;
}

/** A gRPC length-prefixed message: compressed flag, 4-byte length, body. */
function grpcFrame(body: Buffer, flag = 0): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = flag;
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
}

interface RawAnswer {
  status: number;
  grpcStatus?: string;
  grpcMessage?: string;
  acceptEncoding?: string;
  data: Buffer;
}

/** One request from a plain HTTP/2 client, answered in full (headers, data, trailers). */
function raw(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': '/SpiffeWorkloadAPI/FetchJWTSVID', 'content-type': 'application/grpc', te: 'trailers', [SECURITY_HEADER]: 'true', ...headers });
    const chunks: Buffer[] = [];
    let response: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (response = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('close', () => resolve({
      status: Number(response[':status']),
      grpcStatus: (trailers['grpc-status'] ?? response['grpc-status']) as string | undefined,
      grpcMessage: (trailers['grpc-message'] ?? response['grpc-message']) as string | undefined,
      acceptEncoding: response['grpc-accept-encoding'] as string | undefined,
      data: Buffer.concat(chunks),
    }));
    req.end(body);
  });
}

function rawSession(): http2.ClientHttp2Session {
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
  session.on('error', () => undefined);
  return session;
}

const jwtRequest = (audience: string[]) => {
  const encoded = workloadApiService().service.FetchJWTSVID.requestSerialize({ audience, spiffe_id: '' });
  return grpcFrame(encoded);
};

describe('the Workload API gRPC server with a grpc-js client', () => {
  it('answers a unary call with its message, the handler seeing the request, the security header and the pinned peer', async () => {
    const c = client();
    try {
      const res = await new Promise<{ svids: { spiffe_id: string }[] }>((resolve, reject) => c.FetchJWTSVID({ audience: ['a', 'b'], spiffe_id: '' }, header(), (err, r) => (err ? reject(err) : resolve(r!))));
      expect(res.svids[0].spiffe_id).toBe('a,b|true|true');
    } finally {
      c.close();
    }
  });

  it('carries a refusal\'s status, its UTF-8 message and the catalogue trailer', async () => {
    const c = client();
    try {
      const err = await new Promise<grpc.ServiceError>((resolve) => c.FetchJWTSVID({ audience: ['a'], spiffe_id: 'refuse' }, header(), (e) => resolve(e!)));
      expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(err.details).toBe('no identité for “refuse”');
      expect(err.metadata.get(ERROR_CODE_METADATA)).toEqual(['workload-no-identity']);
    } finally {
      c.close();
    }
  });

  it('streams messages (encoded and not), ends with a status after them, and tells the handler when the client cancels', async () => {
    const c = client();
    try {
      const encoded = workloadApiServerDefinition().FetchX509SVID.responseSerialize(x509('spiffe://example.org/one'));
      onStream = (call) => {
        call.write(encoded);
        call.write(x509('spiffe://example.org/two'));
        if (call.metadata.get('x-end').length) call.emit('error', toServiceError(new SvidscopeError('workload-svid-expired', 'expired'), () => undefined));
      };
      const got: string[] = [];
      const md = header();
      md.set('x-end', '1');
      const ended = c.FetchX509SVID({}, md);
      ended.on('data', (m: X509SvidResponseMessage) => got.push(m.svids[0].spiffe_id));
      const err = await new Promise<grpc.ServiceError>((resolve) => ended.on('error', resolve));
      expect(got).toEqual(['spiffe://example.org/one', 'spiffe://example.org/two']);
      expect(err.code).toBe(grpc.status.UNAVAILABLE);
      expect(err.metadata.get(ERROR_CODE_METADATA)).toEqual(['workload-svid-expired']);

      const held = c.FetchX509SVID({}, header());
      await new Promise((resolve) => held.once('data', resolve));
      held.on('error', () => undefined); // CANCELLED, ours
      held.cancel();
      await expect.poll(() => cancelled).toEqual(['cancelled']);
    } finally {
      c.close();
    }
  });
});

describe('the Workload API gRPC server with a raw HTTP/2 client', () => {
  it('answers other methods 405, other content types 415, and unknown paths UNIMPLEMENTED', async () => {
    const s = rawSession();
    try {
      expect((await raw(s, { ':method': 'GET' })).status).toBe(405);
      expect((await raw(s, { 'content-type': 'text/plain' }, jwtRequest(['a']))).status).toBe(415);
      const unknown = await raw(s, { ':path': '/SpiffeWorkloadAPI/Nope' }, jwtRequest(['a']));
      expect(unknown).toMatchObject({ status: 200, grpcStatus: String(grpc.status.UNIMPLEMENTED), grpcMessage: 'unknown method /SpiffeWorkloadAPI/Nope' });
      // The connection is still usable.
      expect((await raw(s, {}, jwtRequest(['a']))).grpcStatus).toBe('0');
    } finally {
      s.close();
    }
  });

  it('refuses a compressed message, a missing or doubled one, and one over the size limit, naming the problem', async () => {
    const s = rawSession();
    try {
      const compressed = await raw(s, { 'grpc-encoding': 'gzip' }, grpcFrame(Buffer.from('x'), 1));
      expect(compressed).toMatchObject({ grpcStatus: String(grpc.status.UNIMPLEMENTED), acceptEncoding: 'identity' });
      expect(compressed.grpcMessage).toMatch(/compressed request \(grpc-encoding gzip\)/);
      for (const body of [undefined, Buffer.concat([jwtRequest(['a']), jwtRequest(['b'])]), jwtRequest(['a']).subarray(0, 7)]) {
        expect(await raw(s, {}, body)).toMatchObject({ grpcStatus: String(grpc.status.INTERNAL), grpcMessage: 'the request must be exactly one message' });
      }
      const big = await raw(s, {}, jwtRequest(['x'.repeat(MAX_REQUEST)]));
      expect(big).toMatchObject({ grpcStatus: String(grpc.status.RESOURCE_EXHAUSTED), grpcMessage: `request message larger than ${MAX_REQUEST} bytes` });
      expect(limits).toEqual(['workload_api_max_request_bytes']);
      expect((await raw(s, {}, jwtRequest(['x'.repeat(MAX_REQUEST - 20)]))).grpcStatus).toBe('0');
    } finally {
      s.close();
    }
  });

  it('holds at most the limit of calls on one connection, and takes new ones as calls end', async () => {
    onStream = (call) => call.write(x509('spiffe://example.org/held'));
    const s = rawSession();
    try {
      const open = (): http2.ClientHttp2Stream => s.request({ ':method': 'POST', ':path': '/SpiffeWorkloadAPI/FetchX509SVID', 'content-type': 'application/grpc', [SECURITY_HEADER]: 'true' });
      const held = Array.from({ length: MAX_STREAMS }, () => {
        const r = open();
        r.end(grpcFrame(Buffer.alloc(0)));
        return r;
      });
      await Promise.all(held.map((r) => new Promise((resolve) => r.once('data', resolve))));
      const refused = await raw(s, { ':path': '/SpiffeWorkloadAPI/FetchX509SVID' }, grpcFrame(Buffer.alloc(0)));
      expect(refused).toMatchObject({ grpcStatus: String(grpc.status.RESOURCE_EXHAUSTED), grpcMessage: `too many calls open on this connection (at most ${MAX_STREAMS})` });
      expect(limits).toEqual(['workload_api_max_streams_per_connection']);
      // Another connection is not affected.
      const other = rawSession();
      expect((await raw(other, {}, jwtRequest(['a']))).grpcStatus).toBe('0');
      other.close();
      held[0].close(http2.constants.NGHTTP2_CANCEL);
      await expect.poll(() => cancelled.length).toBe(1);
      const after = open();
      after.end(grpcFrame(Buffer.alloc(0)));
      await new Promise((resolve) => after.once('data', resolve));
      for (const r of [...held, after]) r.close(http2.constants.NGHTTP2_CANCEL);
      await expect.poll(() => cancelled.length).toBe(MAX_STREAMS + 1);
    } finally {
      s.close();
    }
  });

  it('ends a call at its grpc-timeout with DEADLINE_EXCEEDED and tells the handler', async () => {
    const s = rawSession();
    try {
      const started = Date.now();
      const answer = await raw(s, { ':path': '/SpiffeWorkloadAPI/FetchX509SVID', 'grpc-timeout': '200m' }, grpcFrame(Buffer.alloc(0)));
      expect(answer).toMatchObject({ grpcStatus: String(grpc.status.DEADLINE_EXCEEDED), grpcMessage: 'deadline exceeded' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(190);
      expect(cancelled).toEqual(['deadline']);
      // A deadline beyond what a timer can wait is no deadline, not one that fires at once.
      onStream = (call) => call.write(x509('spiffe://example.org/far'));
      const far = s.request({ ':method': 'POST', ':path': '/SpiffeWorkloadAPI/FetchX509SVID', 'content-type': 'application/grpc', [SECURITY_HEADER]: 'true', 'grpc-timeout': '99999999H' });
      far.end(grpcFrame(Buffer.alloc(0)));
      await new Promise((resolve) => far.once('data', resolve));
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(cancelled).toEqual(['deadline']);
      far.close(http2.constants.NGHTTP2_CANCEL);
    } finally {
      s.close();
    }
  });
});
