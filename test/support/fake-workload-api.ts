/**
 * A fake Workload API for tests: a real grpc-js server on a real Unix socket (go-spiffe's
 * `fakeworkloadapi` idea: never mock the client) serving the standard proto with SVIDs minted on
 * the spot. It enforces the security header as SPIRE does and can be told to refuse calls, to
 * stall, or to rotate and push a new X.509 context on every open stream.
 */
import * as grpc from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { createJwtBundle, jwtAuthority, jwtBundleToJson } from '../../src/identity-plane/spiffe/bundle/index.js';
import { parseSpiffeId, mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { mintJwtSvid, verifyJwtSvid } from '../../src/identity-plane/spiffe/jwtsvid/index.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair, type SelfSignedCa } from '../../src/identity-plane/spiffe/mint/index.js';
import { BundleSet } from '../../src/identity-plane/spiffe/bundle/index.js';
import {
  jsonToStruct,
  SECURITY_HEADER,
  workloadApiService,
  type JwtSvidRequestMessage,
  type ValidateJwtSvidRequestMessage,
  type X509SvidResponseMessage,
} from '../../src/identity-plane/workload-api/index.js';
import { removeDir, tempDir } from './server.js';

export interface FakeWorkloadApiOptions {
  readonly trustDomain?: string;
  /** The identities served, first = default; hints are `hint-<n>`. */
  readonly ids?: readonly string[];
  readonly federatedTrustDomain?: string;
}

export interface FakeWorkloadApi {
  readonly dir: string;
  readonly socketPath: string;
  /** `unix:///…` */
  readonly address: string;
  readonly trustDomain: string;
  readonly federatedTrustDomain: string;
  readonly ca: SelfSignedCa;
  readonly federatedCa: SelfSignedCa;
  readonly jwtKeyId: string;
  /** Calls seen per RPC name (header-less ones included). */
  readonly calls: Record<string, number>;
  /** Answer the next `times` calls (any RPC, Infinity = until cleared) with this status. */
  refuse(status: grpc.status, message: string, times?: number): void;
  clearRefusals(): void;
  /** Stall every answer this long. */
  setDelay(ms: number): void;
  /** Mints fresh X509-SVIDs and pushes the new context on every open FetchX509SVID stream. */
  pushX509Update(): void;
  /** Ends every open stream with this status (a live PermissionDenied, an agent going away). */
  failStreams(status: grpc.status, message: string): void;
  /** Ends every open stream with OK, as a server shutting down gracefully does. */
  endStreams(): void;
  /** The serial numbers (hex) of the SVIDs currently served. */
  serials(): string[];
  openStreams(): number;
  stop(): Promise<void>;
}

type Stream = grpc.ServerWritableStream<object, object>;

export async function startFakeWorkloadApi(opts: FakeWorkloadApiOptions = {}): Promise<FakeWorkloadApi> {
  const trustDomain = opts.trustDomain ?? 'example.org';
  const federatedTrustDomain = opts.federatedTrustDomain ?? 'other.org';
  const ids = (opts.ids ?? [`spiffe://${trustDomain}/workload`]).map((s) => parseSpiffeId(s));
  const dir = tempDir('workload-api');
  const socketPath = path.join(dir, 'api.sock');
  const now = () => new Date();
  const ca = createSelfSignedCa({ trustDomain, ttlSeconds: 86400, now: now() });
  const federatedCa = createSelfSignedCa({ trustDomain: federatedTrustDomain, ttlSeconds: 86400, now: now() });
  const minter = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey });
  const jwtKey = generateKeyPair('ec-p256');
  const jwtKeyId = 'fake-jwt-key';
  const jwtBundle = createJwtBundle(mustTrustDomain(trustDomain), [jwtAuthority(jwtKeyId, jwtKey.publicKey)]);
  const calls: Record<string, number> = {};
  const x509Streams = new Set<Stream>();
  const allStreams = new Set<Stream>();
  let refusal: { status: grpc.status; message: string; times: number } | undefined;
  let delayMs = 0;
  let serials: string[] = [];

  const mintContext = (): X509SvidResponseMessage => {
    const minted = ids.map((id, i) => {
      const key = generateKeyPair('ec-p256');
      const svid = minter.mint({ id, publicKey: key.publicKey, ttlSeconds: 3600, now: now() });
      return { svid, message: { spiffe_id: id.toString(), x509_svid: svid.der, x509_svid_key: key.privateKey.export({ type: 'pkcs8', format: 'der' }), bundle: ca.der, hint: `hint-${i}` } };
    });
    serials = minted.map((m) => m.svid.serial.toString(16));
    return { svids: minted.map((m) => m.message), crl: [], federated_bundles: { [`spiffe://${federatedTrustDomain}`]: federatedCa.der } };
  };
  let context = mintContext();

  /** The SPIRE agent's checks, in its order: header first, then the configured refusal, then the delay. */
  async function admit(name: string, call: grpc.ServerUnaryCall<object, object> | Stream): Promise<grpc.StatusObject | undefined> {
    calls[name] = (calls[name] ?? 0) + 1;
    const values = call.metadata.get(SECURITY_HEADER);
    if (values.length !== 1 || values[0] !== 'true') {
      return { code: grpc.status.INVALID_ARGUMENT, details: 'security header missing from request', metadata: new grpc.Metadata() };
    }
    if (delayMs > 0) await sleep(delayMs);
    if (refusal && refusal.times > 0) {
      refusal.times -= 1;
      return { code: refusal.status, details: refusal.message, metadata: new grpc.Metadata() };
    }
    return undefined;
  }

  function stream(name: string, first: () => object, track?: Set<Stream>) {
    return async (call: Stream) => {
      const refused = await admit(name, call);
      if (refused) return void call.emit('error', refused);
      allStreams.add(call);
      track?.add(call);
      call.on('cancelled', () => {
        allStreams.delete(call);
        track?.delete(call);
      });
      call.write(first());
    };
  }

  function unary<Req>(name: string, answer: (req: Req) => Promise<object>) {
    return async (call: grpc.ServerUnaryCall<Req, object>, cb: grpc.sendUnaryData<object>) => {
      const refused = await admit(name, call as grpc.ServerUnaryCall<object, object>);
      if (refused) return cb(refused);
      try {
        cb(null, await answer(call.request));
      } catch (err) {
        // svidscope errors carry string codes; only a numeric code is a gRPC status.
        const e = err as { code?: unknown; details?: string; message: string };
        cb({ code: typeof e.code === 'number' ? e.code : grpc.status.INVALID_ARGUMENT, details: e.details ?? e.message });
      }
    };
  }

  const status = (code: grpc.status, details: string) => Object.assign(new Error(details), { code, details });

  const server = new grpc.Server();
  server.addService(workloadApiService().service, {
    FetchX509SVID: stream('FetchX509SVID', () => context, x509Streams),
    FetchX509Bundles: stream('FetchX509Bundles', () => ({ crl: [], bundles: { [`spiffe://${trustDomain}`]: ca.der, [`spiffe://${federatedTrustDomain}`]: federatedCa.der } })),
    FetchJWTBundles: stream('FetchJWTBundles', () => ({ bundles: { [`spiffe://${trustDomain}`]: Buffer.from(jwtBundleToJson(jwtBundle)) } })),
    FetchJWTSVID: unary<JwtSvidRequestMessage>('FetchJWTSVID', async (req) => {
      if (req.audience.length === 0) throw status(grpc.status.INVALID_ARGUMENT, 'audience must be specified');
      const chosen = req.spiffe_id === '' ? ids : ids.filter((id) => id.toString() === req.spiffe_id);
      if (chosen.length === 0) throw status(grpc.status.PERMISSION_DENIED, 'no identity issued');
      const svids = await Promise.all(chosen.map(async (id) => ({
        spiffe_id: id.toString(),
        svid: await mintJwtSvid({ id, audience: req.audience, ttlSeconds: 300, now: now(), key: { keyId: jwtKeyId, privateKey: jwtKey.privateKey } }),
        hint: `hint-${ids.indexOf(id)}`,
      })));
      return { svids };
    }),
    ValidateJWTSVID: unary<ValidateJwtSvidRequestMessage>('ValidateJWTSVID', async (req) => {
      if (req.audience === '') throw status(grpc.status.INVALID_ARGUMENT, 'audience must be specified');
      if (req.svid === '') throw status(grpc.status.INVALID_ARGUMENT, 'svid must be specified');
      const svid = await verifyJwtSvid(req.svid, new BundleSet([jwtBundle]), { audience: [req.audience], now: now(), leewaySeconds: 60 });
      return { spiffe_id: svid.id.toString(), claims: jsonToStruct(svid.claims) };
    }),
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));

  return {
    dir, socketPath, address: `unix://${socketPath}`, trustDomain, federatedTrustDomain, ca, federatedCa, jwtKeyId, calls,
    refuse: (code, message, times = Infinity) => void (refusal = { status: code, message, times }),
    clearRefusals: () => void (refusal = undefined),
    setDelay: (ms) => void (delayMs = ms),
    pushX509Update() {
      context = mintContext();
      for (const call of x509Streams) call.write(context);
    },
    failStreams(code, message) {
      for (const call of allStreams) call.emit('error', { code, details: message, metadata: new grpc.Metadata() });
      allStreams.clear();
      x509Streams.clear();
    },
    endStreams() {
      for (const call of allStreams) call.end();
      allStreams.clear();
      x509Streams.clear();
    },
    serials: () => [...serials],
    openStreams: () => allStreams.size,
    async stop() {
      server.forceShutdown();
      removeDir(dir);
    },
  };
}
