/**
 * A Workload API that serves exactly the FetchX509SVID message it is given (and pushes a new one
 * on demand): for SVIDs no real agent hands out — signed by an authority missing from the bundle,
 * expired, not yet valid. The other RPCs answer Unimplemented. Complements
 * test/support/fake-workload-api.ts, which mints well-formed SVIDs only.
 */
import * as grpc from '@grpc/grpc-js';
import path from 'node:path';
import { parseSpiffeId } from '../../../src/identity-plane/spiffe/id/index.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair, type SelfSignedCa } from '../../../src/identity-plane/spiffe/mint/index.js';
import { workloadApiService, type X509SvidResponseMessage } from '../../../src/identity-plane/workload-api/index.js';
import { removeDir, tempDir } from '../../support/server.js';

export interface StaticWorkloadApi {
  readonly address: string;
  set(message: X509SvidResponseMessage): void;
  /** Sets the message and writes it on every open FetchX509SVID stream. */
  push(message: X509SvidResponseMessage): void;
  stop(): Promise<void>;
}

export async function startStaticWorkloadApi(message: X509SvidResponseMessage): Promise<StaticWorkloadApi> {
  const dir = tempDir('static-wlapi');
  const socketPath = path.join(dir, 'api.sock');
  let current = message;
  const streams = new Set<grpc.ServerWritableStream<object, object>>();
  const unimplemented = (call: { emit?: (e: string, v: object) => void }, cb?: grpc.sendUnaryData<object>) => {
    const status = { code: grpc.status.UNIMPLEMENTED, details: 'not served by this fake', metadata: new grpc.Metadata() };
    if (cb) cb(status);
    else call.emit?.('error', status);
  };
  const server = new grpc.Server();
  server.addService(workloadApiService().service, {
    FetchX509SVID: (call: grpc.ServerWritableStream<object, object>) => {
      streams.add(call);
      call.on('cancelled', () => streams.delete(call));
      call.write(current);
    },
    FetchX509Bundles: unimplemented, FetchJWTBundles: unimplemented, FetchJWTSVID: unimplemented, ValidateJWTSVID: unimplemented,
    FetchWITSVID: unimplemented, FetchWITBundles: unimplemented,
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return {
    address: `unix://${socketPath}`,
    set: (m) => void (current = m),
    push(m) {
      current = m;
      for (const s of streams) s.write(m);
    },
    async stop() {
      server.forceShutdown();
      removeDir(dir);
    },
  };
}

export function ca(trustDomain = 'example.org', now = new Date()): SelfSignedCa {
  return createSelfSignedCa({ trustDomain, ttlSeconds: 86400 * 2, now: new Date(now.getTime() - 86400_000) });
}

/** One FetchX509SVID message: an SVID for `id` signed by `signer`, served with `bundle` as its trust domain's bundle. */
export function svidMessage(opts: { signer: SelfSignedCa; bundle?: SelfSignedCa; id?: string; issuedAt?: Date; ttlSeconds?: number }): X509SvidResponseMessage {
  const id = parseSpiffeId(opts.id ?? 'spiffe://example.org/workload');
  const key = generateKeyPair('ec-p256');
  const minted = createX509SvidMinter({ caCertificate: opts.signer.certificate, caPrivateKey: opts.signer.privateKey })
    .mint({ id, publicKey: key.publicKey, ttlSeconds: opts.ttlSeconds ?? 3600, now: opts.issuedAt ?? new Date() });
  return {
    svids: [{ spiffe_id: id.toString(), x509_svid: minted.der, x509_svid_key: key.privateKey.export({ type: 'pkcs8', format: 'der' }), bundle: (opts.bundle ?? opts.signer).der, hint: '' }],
    crl: [],
    federated_bundles: {},
  };
}
