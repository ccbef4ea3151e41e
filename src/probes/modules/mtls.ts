/**
 * mtls: two identities complete a real TLS 1.3 handshake with each other, each presenting its
 * X509-SVID and verifying the peer the way go-spiffe's tlsconfig does: the TLS library's own
 * verification is off and the SPIFFE rules are applied to the peer chain (bundle of the peer's
 * trust domain, X509-SVID validation, SPIFFE ID allow-list). Node has no in-handshake verify
 * hook, so each side verifies right after the handshake and before any application data, and a
 * ping/pong round trip proves both sides accepted.
 */
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { peerCertificateChain } from '../../common/tls/peer-chain.js';
import type { BundleSet } from '../../identity-plane/spiffe/bundle/index.js';
import { encodePem } from '../../identity-plane/spiffe/x509/index.js';
import type { TrustDomain } from '../../identity-plane/spiffe/id/index.js';
import { verifyX509Svid } from '../../identity-plane/spiffe/x509svid/index.js';
import type { WorkloadX509Svid, X509Context } from '../../identity-plane/workload-api/index.js';
import type { MtlsSettings } from '../config.js';
import { workloadClient, type ProbeContext } from '../context.js';
import { classifyError, ProbeFailure } from '../reasons.js';
import type { ProbeRun } from '../result.js';
import { checkX509Svid, selectSvid } from './x509-checks.js';

type Side = 'client' | 'server';

/** The chain the peer sent, leaf first (what TLS gives without library verification). */
export function peerChain(socket: tls.TLSSocket): X509Certificate[] {
  return peerCertificateChain(socket.getPeerCertificate(true));
}

/** An allow-list entry is a SPIFFE ID or `spiffe://<td>` (any ID of that trust domain); empty = the verifier's own trust domain. */
export function authorized(id: { toString(): string; trustDomain: TrustDomain }, allowed: readonly string[], ownTd: TrustDomain): boolean {
  if (allowed.length === 0) return id.trustDomain.equals(ownTd);
  return allowed.some((a) => a === id.toString() || a === id.trustDomain.idString);
}

/** Verifies a peer as one side would; throws a ProbeFailure(peer_rejected) naming the side and the rule. */
function verifyPeer(side: Side, socket: tls.TLSSocket, bundles: BundleSet, allowed: readonly string[], own: WorkloadX509Svid, now: Date): string {
  const chain = peerChain(socket);
  if (chain.length === 0) throw new ProbeFailure('peer_rejected', `${side} rejected its peer: no certificate presented`);
  let id;
  try {
    id = verifyX509Svid(chain, bundles, { now }).id;
  } catch (err) {
    throw new ProbeFailure('peer_rejected', `${side} rejected its peer: ${(err as Error).message}`, { cause: err });
  }
  if (!authorized(id, allowed, own.id.trustDomain)) throw new ProbeFailure('peer_rejected', `${side} rejected its peer: ${id} is not on the allow-list`);
  return id.toString();
}

function credentials(svid: WorkloadX509Svid) {
  return {
    cert: svid.certificates.map((c) => encodePem('CERTIFICATE', c.raw)).join(''),
    key: svid.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
}

async function fetchContext(run: ProbeRun, phase: string, label: string, target: string, ctx: ProbeContext): Promise<X509Context> {
  const client = workloadClient(target, ctx);
  const context = await run.phase(phase, () =>
    run.check(`${label}: fetch X509-SVID`, () => client.fetchX509Context({ deadlineMs: ctx.remainingMs() }), (c) => c.svids.map((s) => s.id.toString()).join(', '), classifyError),
  );
  client.close();
  return context;
}

function pick(run: ProbeRun, label: string, context: X509Context, id: MtlsSettings['clientSpiffeId'], fallbackIndex: number): WorkloadX509Svid {
  try {
    return selectSvid(context, id, fallbackIndex);
  } catch (err) {
    const { reason, message } = classifyError(err);
    return run.fail(`${label}: select SVID`, reason, message);
  }
}

export async function probeMtls(run: ProbeRun, target: string, settings: MtlsSettings, ctx: ProbeContext): Promise<void> {
  const clientCtx = await fetchContext(run, 'fetch_client', 'client', target, ctx);
  const sameSocket = settings.serverTarget === undefined || settings.serverTarget === target;
  const serverCtx = sameSocket ? clientCtx : await fetchContext(run, 'fetch_server', 'server', settings.serverTarget!, ctx);
  const clientSvid = pick(run, 'client', clientCtx, settings.clientSpiffeId, 0);
  // Two entries of one caller: the second SVID serves, unless chosen explicitly.
  const serverSvid = pick(run, 'server', serverCtx, settings.serverSpiffeId, sameSocket ? 1 : 0);
  run.fact('client', clientSvid.id.toString());
  run.fact('server', serverSvid.id.toString());
  const now = ctx.clock.now();
  const noExpectations = { clockSkewSeconds: settings.clockSkewSeconds, minTtlRatio: 0 };
  checkX509Svid(run, clientSvid, clientCtx.bundles, now, noExpectations, 'client');
  checkX509Svid(run, serverSvid, serverCtx.bundles, now, noExpectations, 'server');

  // The server side: verifies the client, then answers one ping.
  let serverVerdict: ProbeFailure | undefined;
  let serverSawClient: string | undefined;
  const server = tls.createServer({
    ...credentials(serverSvid), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3',
  });
  const accepted = new Set<tls.TLSSocket>();
  server.on('secureConnection', (socket) => {
    accepted.add(socket);
    socket.on('error', () => undefined);
    try {
      serverSawClient = verifyPeer('server', socket, serverCtx.bundles, settings.allowedClientIds, serverSvid, now);
    } catch (err) {
      serverVerdict = err as ProbeFailure;
      socket.destroy();
      return;
    }
    socket.once('data', (d) => socket.end(d.toString() === 'ping\n' ? 'pong\n' : 'what?\n'));
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve, reject) => server.listen(0, '127.0.0.1', resolve).once('error', reject));
  ctx.defer(() => new Promise<void>((resolve) => {
    for (const s of accepted) s.destroy();
    server.close(() => resolve());
  }));
  const port = (server.address() as AddressInfo).port;

  const started = performance.now();
  const socket = tls.connect({ host: '127.0.0.1', port, ...credentials(clientSvid), rejectUnauthorized: false, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
  ctx.defer(() => void socket.destroy());
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', (err) => reject(new ProbeFailure('handshake_failed', `TLS handshake failed: ${err.message}`, { cause: err })));
  }).catch((err: ProbeFailure) => run.fail('TLS 1.3 handshake', err.reason, err.message));
  run.addPhase('handshake', (performance.now() - started) / 1000);
  const protocol = socket.getProtocol() ?? 'unknown';
  if (protocol !== 'TLSv1.3') run.fail('TLS 1.3 handshake', 'handshake_failed', `negotiated ${protocol}`);
  run.pass('TLS 1.3 handshake', `${protocol}, ${socket.getCipher().name}`);
  run.gauge('probe_tls_version_info', 'The TLS version the mTLS handshake negotiated.', 1, { version: 'TLS 1.3' });

  const clientSawServer = await run.phase('verify', () =>
    run.check('client verifies the server', () => verifyPeer('client', socket, clientCtx.bundles, settings.allowedServerIds, clientSvid, now), (id) => `${id} is allowed`, classifyError),
  );
  const reply = await run.phase('round_trip', () => new Promise<string>((resolve) => {
    let data = '';
    socket.on('data', (d: Buffer) => (data += d.toString()));
    socket.on('close', () => resolve(data));
    socket.on('error', () => undefined);
    socket.write('ping\n');
  }));
  if (serverVerdict) run.fail('server verifies the client', serverVerdict.reason, serverVerdict.message);
  run.pass('server verifies the client', `${serverSawClient ?? '?'} is allowed`);
  if (reply !== 'pong\n') run.fail('round trip', 'handshake_failed', `expected pong, got ${JSON.stringify(reply.slice(0, 20))}`);
  run.pass('round trip', `ping/pong between ${clientSawServer} and ${serverSawClient}`);
}
