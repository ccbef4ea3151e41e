/**
 * A SPIFFE bundle endpoint (SPIFFE Federation): HTTPS GET of the trust domain's SPIFFE bundle,
 * polled on the Clock. Both profiles: `https_web` (Web PKI, system roots plus an optional private
 * CA file) and `https_spiffe` (the server must present an X509-SVID with the configured endpoint
 * SPIFFE ID, verified against the bootstrap bundle — and, when the endpoint serves its own trust
 * domain, against the latest bundle fetched, as the standard says). No client authentication;
 * redirects are not followed (reported as http_status).
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { rootCertificates, type PeerCertificate } from 'node:tls';
import { parseSpiffeBundle, x509BundleToPem, type SpiffeBundle } from '../../identity-plane/spiffe/bundle/index.js';
import { parseTrustDomain, type TrustDomain } from '../../identity-plane/spiffe/id/index.js';
import { encodePem, parseCertificates } from '../../identity-plane/spiffe/x509/index.js';
import type { BundleEndpointSourceConfig } from '../config.js';
import { bundleOf, reasonOf, trustDomainOf } from './convert.js';
import { polledSource } from './poller.js';
import type { Source, SourceContext } from './types.js';

const MAX_BODY = 1 << 20;

class HttpStatusError extends Error {
  readonly reason = 'http_status';
}
class TooLargeError extends Error {
  readonly reason = 'limit';
}

/** The endpoint's trust anchors for https_spiffe, from the bootstrap file (PEM, DER or SPIFFE JSON). */
function loadBootstrap(file: string, td: TrustDomain): string {
  const data = readFileSync(file);
  if (data.subarray(0, 64).toString('utf8').trimStart().startsWith('{')) return x509BundleToPem(parseSpiffeBundle(td, data));
  return parseCertificates(data).map((c) => encodePem('CERTIFICATE', c.raw)).join('');
}

function sanUris(cert: PeerCertificate): string[] {
  return String(cert.subjectaltname ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
}

export function fetchBundleDocument(url: string, opts: { ca?: string | string[]; endpointSpiffeId?: string; timeoutMs: number }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: 'GET',
      headers: { accept: 'application/json' },
      ca: opts.ca,
      ...(opts.endpointSpiffeId
        ? {
          checkServerIdentity: (_host: string, cert: PeerCertificate) => (sanUris(cert).includes(opts.endpointSpiffeId!)
            ? undefined
            : Object.assign(new Error(`bundle endpoint presented ${sanUris(cert).join(', ') || 'no SPIFFE ID'}, expected ${opts.endpointSpiffeId}`), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' })),
        }
        : {}),
    }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return reject(new HttpStatusError(`bundle endpoint answered HTTP ${res.statusCode}`));
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) {
          req.destroy(new TooLargeError(`bundle document larger than ${MAX_BODY} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    });
    req.setTimeout(opts.timeoutMs, () => req.destroy(Object.assign(new Error(`no answer within ${opts.timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end();
  });
}

export function createBundleEndpointSource(config: BundleEndpointSourceConfig, ctx: SourceContext): Source {
  let latest: SpiffeBundle | undefined;
  const selfServing = config.profile === 'https_spiffe' && trustDomainOf(config.endpointSpiffeId!) === config.trustDomain.name;
  let bootstrap: string | undefined;
  let privateRoots: string[] | undefined;

  const trust = (): string | string[] | undefined => {
    if (config.profile === 'https_web') return privateRoots;
    // Self-serving: the first fetch is checked with the operator's bundle, later ones with the latest fetched.
    if (selfServing && latest && latest.x509Authorities.length > 0) return x509BundleToPem(latest);
    return bootstrap;
  };

  async function poll(): Promise<void> {
    try {
      if (config.profile === 'https_spiffe') bootstrap ??= loadBootstrap(config.bundleFile!, parseTrustDomain(trustDomainOf(config.endpointSpiffeId!)));
      else if (config.caFile && !privateRoots) privateRoots = [...rootCertificates, readFileSync(config.caFile, 'utf8')];
      const body = await fetchBundleDocument(config.url, { ca: trust(), endpointSpiffeId: config.endpointSpiffeId, timeoutMs: config.timeoutSeconds * 1000 });
      const bundle = parseSpiffeBundle(config.trustDomain, body);
      latest = bundle;
      ctx.logger.debug({ source: config.name, url: config.url, sequence: bundle.sequenceNumber?.toString() }, 'bundle fetched');
      ctx.observe({ bundles: [bundleOf(bundle, { x509: true, jwt: true })] });
    } catch (err) {
      const reason = err instanceof HttpStatusError || err instanceof TooLargeError ? err.reason : reasonOf(err);
      ctx.fail(reason, err);
      ctx.logger.warn({ source: config.name, url: config.url, reason, err: (err as Error).message }, 'bundle endpoint fetch failed');
    }
  }

  return polledSource(config.name, ctx.clock, config.intervalSeconds, poll);
}
