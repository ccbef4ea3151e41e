import type { X509Certificate } from 'node:crypto';
import type { SpiffeId } from '../id/index.js';
import { certificateFacts, parseCertificates } from '../internal/x509.js';
import type { X509Authority, X509BundleSource } from '../bundle/types.js';
import { canSignCertificates, checkLeaf, fail } from './leaf.js';

export interface VerifyOptions {
  /** The verification time; there is no implicit clock. Validity bounds are inclusive. */
  readonly now: Date;
}

export interface VerifiedX509Svid {
  readonly id: SpiffeId;
  /** Leaf first, ending with the bundle authority the chain was built to. */
  readonly verifiedChain: X509Certificate[];
}

const MAX_DEPTH = 16;
// Signature checks dominate verification cost; a parent that verified a child once always will.
const verifiedBy = new WeakMap<X509Certificate, WeakSet<X509Certificate>>();

/**
 * Verifies an X509-SVID chain (leaf first, then untrusted intermediates in any order) against the
 * bundle of the leaf's trust domain: leaf rules, then RFC 5280-style path building to any bundle
 * authority (an intermediate placed in the bundle is an anchor too, as in Go), then validity dates.
 */
export function verifyX509Svid(chain: readonly X509Certificate[], bundles: X509BundleSource | undefined, opts: VerifyOptions): VerifiedX509Svid {
  if (chain.length === 0) throw fail('empty-chain', 'empty certificates chain');
  if (bundles === undefined || bundles === null) throw fail('bundle-required', 'bundleSource is required');
  const id = checkLeaf(chain[0]);
  const bundle = bundles.getX509BundleForTrustDomain(id.trustDomain);
  if (bundle === undefined) throw fail('no-bundle-for-trust-domain', `could not get X509 bundle: no X.509 bundle found for trust domain "${id.trustDomain.name}"`);
  const paths = buildPaths(chain[0], chain.slice(1), bundle.x509Authorities);
  let timeError: Error | undefined;
  for (const path of paths) {
    const err = validityError(path, opts.now);
    if (err === undefined) return { id, verifiedChain: path };
    timeError ??= err;
  }
  throw timeError ?? fail('unknown-authority', 'could not verify leaf certificate: x509: certificate signed by unknown authority');
}

/** Parses concatenated DER (or a list of DER certificates) and verifies the chain. */
export function parseAndVerifyX509Svid(rawCerts: Buffer | readonly Buffer[], bundles: X509BundleSource | undefined, opts: VerifyOptions): VerifiedX509Svid {
  const ders = Buffer.isBuffer(rawCerts) ? [rawCerts] : rawCerts;
  const chain = ders.flatMap((der) => parseCertificates(der, { format: 'der', area: 'x509svid' }));
  return verifyX509Svid(chain, bundles, opts);
}

function issuedBy(child: X509Certificate, parent: X509Certificate): boolean {
  if (!certificateFacts(child).issuer.equals(certificateFacts(parent).subject)) return false;
  let set = verifiedBy.get(child);
  if (set?.has(parent)) return true;
  let ok: boolean;
  try {
    ok = child.verify(parent.publicKey);
  } catch {
    ok = false; // an unsupported signature algorithm is a parent that cannot be used
  }
  if (ok) {
    set ??= new WeakSet();
    set.add(parent);
    verifiedBy.set(child, set);
  }
  return ok;
}

/** A signer must be a CA with keyCertSign and respect its pathLenConstraint (intermediates below it). */
function mayIssue(parent: X509Certificate, intermediatesBelow: number): boolean {
  if (!canSignCertificates(parent)) return false;
  const pathLen = certificateFacts(parent).pathLenConstraint;
  return pathLen === undefined || intermediatesBelow <= pathLen;
}

/** Every path from the leaf to an anchor, depth first, anchors preferred over further intermediates. */
function* buildPaths(leaf: X509Certificate, intermediates: readonly X509Certificate[], anchors: readonly X509Authority[]): Generator<X509Certificate[]> {
  if (anchors.some((a) => a.der.equals(leaf.raw))) yield [leaf];
  function* extend(path: X509Certificate[]): Generator<X509Certificate[]> {
    const cur = path[path.length - 1];
    const below = path.length - 1;
    for (const a of anchors) {
      if (mayIssue(a.cert, below) && issuedBy(cur, a.cert)) yield [...path, a.cert];
    }
    if (path.length >= MAX_DEPTH) return;
    for (const next of intermediates) {
      if (path.includes(next) || !mayIssue(next, below) || !issuedBy(cur, next)) continue;
      yield* extend([...path, next]);
    }
  }
  yield* extend([leaf]);
}

function validityError(path: readonly X509Certificate[], now: Date): Error | undefined {
  const t = now.getTime();
  for (const cert of path) {
    const { notBefore, notAfter } = certificateFacts(cert);
    const which = cert === path[0] ? 'leaf certificate' : 'certificate in the chain';
    if (t > notAfter.getTime()) return fail('expired', `could not verify leaf certificate: x509: ${which} has expired (not after ${notAfter.toISOString()})`);
    if (t < notBefore.getTime()) return fail('not-yet-valid', `could not verify leaf certificate: x509: ${which} is not yet valid (not before ${notBefore.toISOString()})`);
  }
  return undefined;
}
