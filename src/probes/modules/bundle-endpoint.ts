/**
 * bundle_endpoint: fetch a SPIFFE bundle endpoint as a federating server would (SPIFFE
 * Federation): HTTPS GET, profile `https_web` (server certificate checked against a CA file or
 * Node's bundled roots, with the host name) or `https_spiffe` (the endpoint's X509-SVID checked
 * against a bundle of its trust domain we already hold, and its SPIFFE ID). Then the document is
 * parsed as a bundle of the configured trust domain and its freshness reported.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { SvidscopeError } from '../../common/errors/catalog.js';
import { BundleSet, parseSpiffeBundle, parseX509Bundle, type SpiffeBundle, type X509Bundle } from '../../identity-plane/spiffe/bundle/index.js';
import type { TrustDomain } from '../../identity-plane/spiffe/id/index.js';
import { certificateFacts } from '../../identity-plane/spiffe/x509/index.js';
import { verifyX509Svid } from '../../identity-plane/spiffe/x509svid/index.js';
import type { BundleEndpointSettings } from '../config.js';
import { workloadClient, type ProbeContext } from '../context.js';
import { classifyError, ProbeFailure, type FailureReason } from '../reasons.js';
import type { ProbeRun } from '../result.js';
import { peerChain } from './mtls.js';

const MAX_BODY_BYTES = 1 << 20;
const DOWN = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ETIMEDOUT']);

function tlsReason(err: NodeJS.ErrnoException): FailureReason {
  const code = err.code ?? '';
  if (DOWN.has(code)) return 'endpoint_down';
  if (code === 'CERT_HAS_EXPIRED') return 'expired';
  if (code === 'CERT_NOT_YET_VALID') return 'not_yet_valid';
  if (/CERT|SELF_SIGNED|ISSUER|VERIFY/.test(code)) return 'untrusted_authority';
  return 'handshake_failed';
}

function parseTarget(target: string): URL {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    throw new SvidscopeError('config-invalid', `bundle endpoint target ${JSON.stringify(target)} is not a URL`);
  }
  if (url.protocol !== 'https:') throw new SvidscopeError('config-invalid', 'bundle endpoint URLs use https (SPIFFE Federation)');
  if (url.username || url.password) throw new SvidscopeError('config-invalid', 'bundle endpoint URLs must not carry user info');
  return url;
}

/** The bundle of the endpoint's own trust domain (https_spiffe), from a file or a Workload API. */
async function endpointBundle(settings: BundleEndpointSettings, td: TrustDomain, ctx: ProbeContext): Promise<X509Bundle> {
  if (settings.bundleFile) {
    const data = readFileSync(settings.bundleFile);
    return data.toString('utf8').trimStart().startsWith('{') ? parseSpiffeBundle(td, data) : parseX509Bundle(td, data);
  }
  const client = workloadClient(settings.bundleSource!, ctx);
  const set = await client.fetchX509Bundles({ deadlineMs: ctx.remainingMs() });
  const bundle = set.get(td);
  if (!bundle) throw new ProbeFailure('untrusted_authority', `the Workload API at ${settings.bundleSource} holds no bundle for ${td.name}`);
  return bundle;
}

export async function probeBundleEndpoint(run: ProbeRun, target: string, settings: BundleEndpointSettings, ctx: ProbeContext): Promise<void> {
  const url = parseTarget(target);
  const td = settings.trustDomain;
  if (!td) throw new SvidscopeError('config-invalid', 'bundle_endpoint needs trust_domain: the trust domain of the bundle is never guessed from the URL');
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || 443);
  const spiffe = settings.profile === 'https_spiffe';
  let trusted: X509Bundle | undefined;
  if (spiffe) {
    trusted = await run.check(`bundle of ${settings.endpointSpiffeId!.trustDomain.name} to verify the endpoint`, () => endpointBundle(settings, settings.endpointSpiffeId!.trustDomain, ctx), (b) => `${b.x509Authorities.length} authorities`, classifyError);
  }
  const ca = !spiffe && settings.caFile ? readFileSync(settings.caFile) : undefined;

  const started = performance.now();
  const socket = tls.connect({
    host, port, servername: isIP(host) ? undefined : host, ALPNProtocols: ['http/1.1'], minVersion: 'TLSv1.2',
    ...(spiffe ? { rejectUnauthorized: false } : { rejectUnauthorized: true, ...(ca ? { ca } : {}) }),
  });
  ctx.defer(() => void socket.destroy());
  socket.once('connect', () => run.addPhase('connect', (performance.now() - started) / 1000));
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  }).catch((err: NodeJS.ErrnoException) => {
    const reason = tlsReason(err);
    run.fail(reason === 'endpoint_down' ? 'connect' : 'TLS handshake', reason, `${url.origin}: ${err.message}`);
  });
  const connectPhase = run.phases.find((p) => p[0] === 'connect')?.[1] ?? 0;
  run.addPhase('tls', (performance.now() - started) / 1000 - connectPhase);
  if (spiffe) {
    const now = ctx.clock.now();
    let id;
    try {
      // The endpoint chooses the chain: path building runs with the default budget, so a hostile
      // one costs a bounded number of signature checks instead of stalling the prober.
      id = verifyX509Svid(peerChain(socket), new BundleSet([trusted!]), { now }).id;
    } catch (err) {
      const { reason, message } = classifyError(err);
      run.fail('endpoint X509-SVID', reason, message, err);
    }
    if (!id.equals(settings.endpointSpiffeId)) run.fail('endpoint SPIFFE ID', 'wrong_spiffe_id', `the endpoint presented ${id}, expected ${settings.endpointSpiffeId}`);
    run.pass('endpoint X509-SVID', `${id} (${socket.getProtocol()})`);
  } else {
    run.pass('endpoint certificate', `verified for ${host} against ${settings.caFile ?? 'the bundled web roots'} (${socket.getProtocol()})`);
  }

  const requested = performance.now();
  const { status, body } = await new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
    const req = http.request({ createConnection: () => socket, method: 'GET', path: url.pathname + url.search, headers: { host: url.host, accept: 'application/json' } }, (res) => {
      run.addPhase('processing', (performance.now() - requested) / 1000);
      const received = performance.now();
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (d: Buffer) => {
        size += d.length;
        if (size > MAX_BODY_BYTES) req.destroy(new ProbeFailure('malformed_bundle', `the document exceeds ${MAX_BODY_BYTES} bytes`));
        else chunks.push(d);
      });
      res.on('end', () => {
        run.addPhase('transfer', (performance.now() - received) / 1000);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  }).catch((err: Error) => {
    const reason = err instanceof ProbeFailure ? err.reason : 'endpoint_down';
    return run.fail('GET bundle', reason, `${url.href}: ${err.message}`);
  });
  run.gauge('probe_http_status_code', 'HTTP status code of the bundle endpoint\'s answer.', status);
  if (status < 200 || status > 299) run.fail('GET bundle', 'endpoint_down', `${url.href} answered ${status}${status >= 300 && status < 400 ? ' (redirects are not followed)' : ''}`);
  run.pass('GET bundle', `${status}, ${body.length} bytes`);
  run.gauge('probe_http_content_length', 'Length of the bundle document in bytes.', body.length);

  const bundle = await run.phase('validate', () =>
    run.check(`SPIFFE bundle of ${td.name}`, () => parseSpiffeBundle(td, body), (b) => `${b.x509Authorities.length} X.509 and ${b.jwtAuthorities.size} JWT authorities`, (err) => ({ reason: 'malformed_bundle', message: (err as Error).message })),
  );
  reportFreshness(run, bundle, ctx.clock.now(), settings.maxAgeSeconds);
}

function reportFreshness(run: ProbeRun, bundle: SpiffeBundle, now: Date, maxAgeSeconds: number): void {
  const x509 = bundle.x509Authorities.map((a) => certificateFacts(a.cert));
  run.gauge('probe_svid_bundle_x509_authorities', 'X.509 authorities in the bundle.', x509.length);
  run.gauge('probe_svid_bundle_jwt_authorities', 'JWT authorities in the bundle.', bundle.jwtAuthorities.size);
  if (bundle.sequenceNumber !== undefined) run.gauge('probe_svid_bundle_sequence', 'spiffe_sequence of the bundle document.', Number(bundle.sequenceNumber));
  if (bundle.refreshHintSeconds !== undefined) run.gauge('probe_svid_bundle_refresh_hint_seconds', 'spiffe_refresh_hint of the bundle document.', bundle.refreshHintSeconds);
  run.fact('sequence', bundle.sequenceNumber);
  run.fact('refreshHintSeconds', bundle.refreshHintSeconds);
  if (x509.length === 0 && bundle.jwtAuthorities.size === 0) run.fail('usable authorities', 'stale_bundle', 'the bundle holds no authority: every SVID of the trust domain is invalid');
  if (x509.length === 0) {
    run.pass('usable authorities', 'JWT authorities only');
    return;
  }
  const earliest = new Date(Math.min(...x509.map((f) => f.notAfter.getTime())));
  const latest = new Date(Math.max(...x509.map((f) => f.notAfter.getTime())));
  const newest = new Date(Math.max(...x509.map((f) => f.notBefore.getTime())));
  const ageSeconds = Math.max(0, (now.getTime() - newest.getTime()) / 1000);
  run.gauge('probe_svid_bundle_authority_expiry_timestamp_seconds', 'Earliest notAfter among the bundle\'s X.509 authorities (Unix time).', earliest.getTime() / 1000);
  run.gauge('probe_svid_bundle_last_authority_expiry_timestamp_seconds', 'Latest notAfter among the bundle\'s X.509 authorities: when the last one dies (Unix time).', latest.getTime() / 1000);
  run.gauge('probe_svid_bundle_age_seconds', 'Seconds since the newest X.509 authority of the bundle became valid.', ageSeconds);
  run.fact('authorityExpiry', earliest.toISOString());
  run.fact('ageSeconds', Math.round(ageSeconds));
  const valid = x509.filter((f) => f.notBefore <= now && now <= f.notAfter).length;
  if (valid === 0) run.fail('usable authorities', 'stale_bundle', `none of the ${x509.length} X.509 authorities is valid now (latest expiry ${latest.toISOString()})`);
  run.pass('usable authorities', `${valid} of ${x509.length} X.509 authorities valid now; earliest expiry ${earliest.toISOString()}`);
  if (maxAgeSeconds > 0 && ageSeconds > maxAgeSeconds) run.fail('bundle age', 'stale_bundle', `the newest authority is ${Math.round(ageSeconds)} s old, over max_age ${maxAgeSeconds} s`);
  run.pass('bundle age', `newest authority valid since ${newest.toISOString()} (${Math.round(ageSeconds)} s)`);
}
