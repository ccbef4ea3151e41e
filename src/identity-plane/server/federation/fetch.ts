import { request } from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { peerCertificateChain } from '../../../common/tls/peer-chain.js';
import { SvidscopeError } from '../../../common/errors/catalog.js';
import { BundleSet, x509BundleToPem, type SpiffeBundle } from '../../spiffe/bundle/index.js';
import { parseSpiffeId } from '../../spiffe/id/index.js';
import { verifyX509Svid, type PathLimits } from '../../spiffe/x509svid/index.js';

/**
 * Why a fetch failed, as a bounded label for `svidscope_federation_bundle_refresh_errors_total`:
 * - `connect`: the endpoint is unreachable (refused, DNS, reset);
 * - `timeout`: no complete answer within the fetch timeout;
 * - `tls`: the handshake failed or the certificate is not trusted (https_web);
 * - `authentication`: the endpoint's X509-SVID does not verify against the bundle, or names another SPIFFE ID (https_spiffe);
 * - `no_trust_bundle`: https_spiffe without any bundle of the endpoint's trust domain to authenticate it with;
 * - `http_status`: an answer other than 200;
 * - `too_large`: a document over the size limit;
 * - `malformed`: the document is not a SPIFFE bundle;
 * - `sequence_regressed`: the document's `spiffe_sequence` is lower than the stored one;
 * - `datastore`: the bundle could not be stored.
 */
export type FetchFailureReason =
  | 'connect' | 'timeout' | 'tls' | 'authentication' | 'no_trust_bundle' | 'http_status' | 'too_large' | 'malformed' | 'sequence_regressed' | 'datastore';

export const FETCH_FAILURE_REASONS: readonly FetchFailureReason[] = [
  'connect', 'timeout', 'tls', 'authentication', 'no_trust_bundle', 'http_status', 'too_large', 'malformed', 'sequence_regressed', 'datastore',
];

/** A failed federation refresh: `unavailable` to callers, with the bounded reason beside it. */
export class FederationFetchError extends SvidscopeError {
  constructor(
    readonly reason: FetchFailureReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('unavailable', `federation: ${message}`, options);
  }
}

/** How to authenticate the endpoint: Web PKI (system roots or operator roots) or the endpoint's X509-SVID. */
export type EndpointAuth =
  | { profile: 'https_web'; rootsPem?: string }
  | { profile: 'https_spiffe'; endpointSpiffeId: string; trustBundle: SpiffeBundle | undefined };

export interface FetchOptions {
  url: string;
  auth: EndpointAuth;
  timeoutMs: number;
  now: Date;
  /** Largest document accepted; bundles are a few KiB, so 1 MiB is generous. */
  maxBytes?: number;
  /** Path-building limits for the endpoint's X509-SVID (https_spiffe); the library defaults otherwise. */
  pathLimits?: Partial<PathLimits>;
}

const DEFAULT_MAX_BYTES = 1 << 20;

/**
 * One HTTPS GET of a bundle endpoint (SPIFFE Federation §5), authenticated per profile. Returns the
 * raw document; parsing and the sequence check belong to the caller. Redirects are not followed:
 * a 3xx is reported as `http_status` (the standard lets clients follow them; svidscope's
 * endpoints never redirect, and not following keeps the authenticated origin fixed).
 */
export function fetchBundleDocument(opts: FetchOptions): Promise<Buffer> {
  const url = new URL(opts.url);
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  let authFailure: FederationFetchError | undefined;
  let tlsOptions: ReturnType<typeof tlsOptionsFor>;
  try {
    tlsOptions = tlsOptionsFor(opts.auth, opts.now, opts.pathLimits, (err) => {
      authFailure = err;
    });
  } catch (err) {
    return Promise.reject(err as Error);
  }
  const classify = (err: Error & { code?: string }) => classifyError(err, opts.url, opts.auth.profile, authFailure);
  return new Promise<Buffer>((resolve, reject) => {
    let settled = false;
    const finish = (err: FederationFetchError | undefined, body?: Buffer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(body!);
    };
    const req = request(url, { method: 'GET', agent: false, headers: { accept: 'application/json' }, ...tlsOptions }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        finish(new FederationFetchError('http_status', `bundle endpoint ${opts.url} answered HTTP ${res.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) {
          finish(new FederationFetchError('too_large', `bundle endpoint ${opts.url} sent more than ${maxBytes} bytes`));
          req.destroy();
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => finish(undefined, Buffer.concat(chunks)));
      res.on('error', (err) => finish(classify(err)));
    });
    const timer = setTimeout(() => {
      finish(new FederationFetchError('timeout', `bundle endpoint ${opts.url} did not answer within ${opts.timeoutMs} ms`));
      req.destroy();
    }, opts.timeoutMs);
    timer.unref?.();
    req.on('error', (err) => finish(classify(err)));
    req.end();
  });
}

function tlsOptionsFor(auth: EndpointAuth, now: Date, limits: Partial<PathLimits> | undefined, onAuthFailure: (err: FederationFetchError) => void) {
  if (auth.profile === 'https_web') {
    // RFC 6125 host name check and chain validation by Node's TLS: the system roots, or the operator's.
    return auth.rootsPem ? { ca: auth.rootsPem } : {};
  }
  const expected = parseSpiffeId(auth.endpointSpiffeId);
  const bundle = auth.trustBundle;
  if (!bundle || bundle.x509Authorities.length === 0) {
    const err = new FederationFetchError('no_trust_bundle', `no X.509 authorities of ${expected.trustDomain.name} to authenticate the bundle endpoint ${expected} with`);
    onAuthFailure(err);
    throw err;
  }
  const bundles = new BundleSet([bundle]);
  return {
    // OpenSSL builds the chain to the bundle's authorities; the SPIFFE rules and the ID check follow below.
    ca: x509BundleToPem(bundle),
    checkServerIdentity: (_host: string, cert: PeerCertificate): Error | undefined => {
      try {
        // Bounded path building: the chain is the peer's to choose, and runs on the event loop.
        const verified = verifyX509Svid(peerCertificateChain(cert), bundles, { now, limits });
        if (verified.id.toString() !== expected.toString()) {
          throw new SvidscopeError('unauthenticated', `the endpoint presented ${verified.id}, not ${expected}`);
        }
        return undefined;
      } catch (cause) {
        const err = new FederationFetchError('authentication', `bundle endpoint X509-SVID refused: ${(cause as Error).message}`, { cause });
        onAuthFailure(err);
        return err;
      }
    },
  };
}

function classifyError(err: Error & { code?: string }, url: string, profile: EndpointAuth['profile'], authFailure: FederationFetchError | undefined): FederationFetchError {
  if (authFailure) return authFailure;
  if (err instanceof FederationFetchError) return err;
  const code = err.code ?? '';
  // Node's TLS and socket errors (foreign: ours return above); some handshake failures carry only text.
  if (/CERT|SSL|TLS|ALT_NAME|SELF_SIGNED|UNABLE_TO|ERR_OSSL|HOSTNAME|DEPTH_ZERO/.test(code) || /certificate|handshake|alert/i.test(err.message)) {
    // With https_spiffe the chain is checked against the trust bundle: a failure is an authentication failure.
    if (profile === 'https_spiffe') return new FederationFetchError('authentication', `bundle endpoint ${url} X509-SVID refused: ${err.message}`, { cause: err });
    return new FederationFetchError('tls', `bundle endpoint ${url} failed TLS verification: ${err.message}`, { cause: err });
  }
  return new FederationFetchError('connect', `cannot reach bundle endpoint ${url}: ${err.message}`, { cause: err });
}

