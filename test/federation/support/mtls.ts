import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type PeerCertificate, type TLSSocket } from 'node:tls';
import type { X509BundleSource } from '../../../src/identity-plane/spiffe/bundle/index.js';
import { encodePem } from '../../../src/identity-plane/spiffe/x509/index.js';
import { verifyX509Svid, type X509Svid } from '../../../src/identity-plane/spiffe/x509svid/index.js';

export interface MtlsParty {
  svid: X509Svid;
  /** Every bundle the party trusts (own and federated), from its Workload API stream. */
  bundles: X509BundleSource;
  /** The SPIFFE ID it accepts on the other side. */
  expectPeer: string;
}

const tlsIdentity = (svid: X509Svid) => ({
  cert: svid.certificates.map((c) => encodePem('CERTIFICATE', c.raw)).join(''),
  key: svid.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
});

function peerChain(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  let cur: (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined = socket.getPeerCertificate(true);
  while (cur?.raw && !seen.has(cur.fingerprint256)) {
    seen.add(cur.fingerprint256);
    chain.push(new X509Certificate(cur.raw));
    cur = cur.issuerCertificate;
  }
  return chain;
}

/** SPIFFE authentication of the peer (go-spiffe tlsconfig.AuthorizeID): chain to its trust domain's bundle, then the exact ID. */
function authorize(socket: TLSSocket, party: MtlsParty): string {
  const { id } = verifyX509Svid(peerChain(socket), party.bundles, { now: new Date() });
  if (id.toString() !== party.expectPeer) throw new Error(`unexpected peer ${id}, want ${party.expectPeer}`);
  return id.toString();
}

/**
 * One mutual-TLS exchange between two workloads: each presents its X509-SVID and verifies the
 * other's against its own bundle set. Resolves with the SPIFFE ID each side authenticated, or
 * rejects with the first side's refusal.
 */
export async function mtlsExchange(server: MtlsParty, client: MtlsParty): Promise<{ serverSaw: string; clientSaw: string }> {
  const tlsServer = createServer({ ...tlsIdentity(server.svid), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
  const serverSaw = new Promise<string>((resolve, reject) => {
    tlsServer.on('secureConnection', (socket) => {
      try {
        const id = authorize(socket, server);
        socket.end(`hello ${id}\n`);
        resolve(id);
      } catch (err) {
        socket.destroy();
        reject(err as Error);
      }
    });
    tlsServer.on('tlsClientError', reject);
  });
  serverSaw.catch(() => undefined); // awaited below; a client-side failure may come first
  await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', () => resolve()));
  try {
    const port = (tlsServer.address() as AddressInfo).port;
    const clientSaw = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, ...tlsIdentity(client.svid), rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => {
        let id: string;
        try {
          id = authorize(socket, client);
        } catch (err) {
          socket.destroy();
          reject(err as Error);
          return;
        }
        let data = '';
        socket.on('data', (d: Buffer) => (data += d.toString()));
        socket.on('end', () => (data.startsWith('hello ') ? resolve(id) : reject(new Error(`server refused: ${data}`))));
      });
      socket.on('error', reject);
      socket.on('close', () => reject(new Error('connection closed before the exchange ended')));
    });
    return { serverSaw: await serverSaw, clientSaw };
  } finally {
    tlsServer.close();
  }
}
