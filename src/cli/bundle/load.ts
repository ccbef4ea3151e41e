import { SvidscopeError } from '../../common/errors/catalog.js';
import { createSpiffeBundle, parseJwtBundle, parseSpiffeBundle, parseX509Bundle, parseX509BundleRaw, type SpiffeBundle } from '../../identity-plane/spiffe/bundle/index.js';
import { parseTrustDomain, type TrustDomain } from '../../identity-plane/spiffe/id/index.js';
import { certificateFacts, isPem, parseCertificates } from '../../identity-plane/spiffe/x509/index.js';

export type BundleFormat = 'spiffe' | 'jwks' | 'pem' | 'der';
export const BUNDLE_FORMATS: readonly BundleFormat[] = ['spiffe', 'jwks', 'pem', 'der'];

/** Guesses the format: JSON whose keys carry `use` is a SPIFFE bundle, other JSON a JWKS, then PEM, else DER. */
export function detectFormat(data: Buffer): BundleFormat {
  const text = data.subarray(0, 4096).toString('utf8').trimStart();
  if (text.startsWith('{')) {
    try {
      const doc = JSON.parse(data.toString('utf8')) as { keys?: { use?: unknown }[] };
      return Array.isArray(doc.keys) && doc.keys.some((k) => k && typeof k === 'object' && 'use' in k) ? 'spiffe' : 'jwks';
    } catch {
      return 'spiffe'; // let the SPIFFE parser name the JSON problem
    }
  }
  return isPem(data) ? 'pem' : 'der';
}

/** A `--trust-domain` flag, parsed once where it enters (an empty value counts as not given). */
export function trustDomainFlag(value: string | undefined): TrustDomain | undefined {
  return value ? parseTrustDomain(value) : undefined;
}

/**
 * Loads a bundle file in any of the four formats. The trust domain is the caller's, else the one
 * named by the first X.509 authority's URI SAN (CA certificates carry `spiffe://<td>`).
 */
export function loadBundle(data: Buffer, opts: { format?: string; trustDomain?: TrustDomain }): { bundle: SpiffeBundle; format: BundleFormat } {
  const format = (opts.format ?? detectFormat(data)) as BundleFormat;
  if (!BUNDLE_FORMATS.includes(format)) throw new SvidscopeError('usage', `--format must be one of ${BUNDLE_FORMATS.join(', ')}`);
  const td = opts.trustDomain ?? guessTrustDomain(data, format);
  switch (format) {
    case 'spiffe':
      return { bundle: parseSpiffeBundle(td, data), format };
    case 'jwks':
      return { bundle: createSpiffeBundle({ trustDomain: td, jwtAuthorities: parseJwtBundle(td, data).jwtAuthorities }), format };
    case 'pem':
      return { bundle: createSpiffeBundle({ trustDomain: td, x509Authorities: parseX509Bundle(td, data).x509Authorities }), format };
    case 'der':
      return { bundle: createSpiffeBundle({ trustDomain: td, x509Authorities: parseX509BundleRaw(td, data).x509Authorities }), format };
  }
}

function guessTrustDomain(data: Buffer, format: BundleFormat): TrustDomain {
  const missing = () => new SvidscopeError('usage', 'cannot tell which trust domain this bundle belongs to: pass --trust-domain');
  let certs;
  try {
    if (format === 'pem') certs = parseCertificates(data, { format: 'pem' });
    else if (format === 'der') certs = parseCertificates(data, { format: 'der' });
    else {
      const doc = JSON.parse(data.toString('utf8')) as { keys?: { x5c?: string[] }[] };
      const x5c = doc.keys?.find((k) => Array.isArray(k?.x5c) && k.x5c.length > 0)?.x5c?.[0];
      if (!x5c) throw missing();
      certs = parseCertificates(Buffer.from(x5c, 'base64'), { format: 'der' });
    }
  } catch (err) {
    if ((err as SvidscopeError).code === 'usage') throw err;
    return parseTrustDomain('unknown.invalid'); // parsing proper reports the real problem
  }
  const uri = certs.length ? certificateFacts(certs[0]).uriSans.find((u) => u.startsWith('spiffe://')) : undefined;
  if (!uri) throw missing();
  return parseTrustDomain(uri);
}
