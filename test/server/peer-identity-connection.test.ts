import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { createSecureContext } from 'node:tls';
import { PeerIdentityCache } from '../../src/identity-plane/server/api/peer-identity.js';
import { parseSpiffeId, parseTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair } from '../../src/identity-plane/spiffe/mint/index.js';
import { encodePem } from '../../src/identity-plane/spiffe/x509/index.js';
import { InMemoryCertificateProvider } from '../../src/common/tls/certificate-provider.js';

/**
 * The per-connection identity of PeerIdentityCache.resolveCall against real grpc-js over real TLS:
 * it reaches the connection through grpc-js internals, so a grpc-js upgrade that moves them must
 * fail here (the fast path would silently stop), and the identity must never cross connections.
 */
const now = new Date();
const ca = createSelfSignedCa({ trustDomain: 'example.org', ttlSeconds: 3600, now });
const minter = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey });
const caPem = Buffer.from(encodePem('CERTIFICATE', ca.der));

function identity(id: string) {
  const key = generateKeyPair();
  const { der } = minter.mint({ id: parseSpiffeId(id), publicKey: key.publicKey, ttlSeconds: 600, now });
  return { cert: Buffer.from(encodePem('CERTIFICATE', der)), key: Buffer.from(key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string) };
}

const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const service = { WhoAmI: { path: '/test.Peer/WhoAmI', requestStream: false, responseStream: false, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize } };
const Client = grpc.makeGenericClientConstructor(service, 'Peer');

describe('PeerIdentityCache.resolveCall over a real TLS connection', () => {
  const peers = new PeerIdentityCache(parseTrustDomain('example.org'));
  const server = new grpc.Server();
  let address = '';

  beforeAll(async () => {
    server.addService(service, {
      WhoAmI: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        try {
          cb(null, Buffer.from(peers.resolveCall(call).id.toString()));
        } catch (err) {
          cb({ code: grpc.status.UNAUTHENTICATED, details: (err as Error).message });
        }
      },
    });
    const own = identity('spiffe://example.org/spire/server');
    // Credentials as the server builds them (certificate provider, client certificate requested, not required).
    const provider = new InMemoryCertificateProvider();
    provider.setIdentity(own.cert.toString(), own.key.toString());
    provider.setTrustAnchors(caPem.toString());
    const credentials = grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))));
    address = `127.0.0.1:${port}`;
  });
  afterAll(() => server.forceShutdown());

  const call = (client: grpc.Client) => new Promise<string>((resolve, reject) => {
    (client as unknown as { WhoAmI: (req: Buffer, cb: (err: grpc.ServiceError | null, res: Buffer) => void) => void }).WhoAmI(Buffer.alloc(0), (err, res) => (err ? reject(err) : resolve(res.toString())));
  });
  const tls13Client = (id: string) => {
    const me = identity(id);
    return new Client(address, grpc.credentials.createSsl(caPem, me.key, me.cert, { checkServerIdentity: () => undefined }));
  };

  it('decodes a connection\'s certificate once and answers its later calls from the connection', async () => {
    const a = tls13Client('spiffe://example.org/spire/agent/join_token/a');
    try {
      const hits = peers.connectionHits;
      expect(await call(a)).toBe('spiffe://example.org/spire/agent/join_token/a');
      expect(await call(a)).toBe('spiffe://example.org/spire/agent/join_token/a');
      expect(await call(a)).toBe('spiffe://example.org/spire/agent/join_token/a');
      expect(peers.connectionHits - hits).toBe(2);
    } finally {
      a.close();
    }
  });

  it('keeps each connection\'s own identity: two agents side by side never see each other\'s', async () => {
    const a = tls13Client('spiffe://example.org/spire/agent/join_token/a2');
    const b = tls13Client('spiffe://example.org/spire/agent/join_token/b2');
    try {
      const answers = await Promise.all([call(a), call(b), call(a), call(b), call(b), call(a)]);
      expect(answers).toEqual(['a2', 'b2', 'a2', 'b2', 'b2', 'a2'].map((n) => `spiffe://example.org/spire/agent/join_token/${n}`));
    } finally {
      a.close();
      b.close();
    }
  });

  it('asks TLS on every call of a TLS 1.2 connection (renegotiation could change its certificate)', async () => {
    const me = identity('spiffe://example.org/spire/agent/join_token/old-tls');
    const context = createSecureContext({ ca: caPem, cert: me.cert, key: me.key, maxVersion: 'TLSv1.2' });
    const c = new Client(address, grpc.credentials.createFromSecureContext(context, { checkServerIdentity: () => undefined }));
    try {
      const hits = peers.connectionHits;
      expect(await call(c)).toBe('spiffe://example.org/spire/agent/join_token/old-tls');
      expect(await call(c)).toBe('spiffe://example.org/spire/agent/join_token/old-tls');
      expect(peers.connectionHits).toBe(hits);
    } finally {
      c.close();
    }
  });

  it('refuses a connection without a client certificate, every call', async () => {
    const c = new Client(address, grpc.credentials.createSsl(caPem, null, null, { checkServerIdentity: () => undefined }));
    try {
      await expect(call(c)).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: expect.stringContaining('X.509-SVID signed by this trust domain is required') as string });
      await expect(call(c)).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    } finally {
      c.close();
    }
  });
});
