import type { X509Certificate } from 'node:crypto';
import type { SpiffeId } from '../id/index.js';
import { certificateFacts, parseCertificates } from '../x509/index.js';
import type { X509Authority, X509BundleSource } from '../bundle/index.js';
import { SvidscopeError } from '../../../common/errors/catalog.js';
import { canSignCertificates, checkLeaf, fail } from './leaf.js';

export interface VerifyOptions {
  /** The verification time; there is no implicit clock. Validity bounds are inclusive. */
  readonly now: Date;
  /** Bounds on the work one verification may do; each unset field takes its default. */
  readonly limits?: Partial<PathLimits>;
}

/**
 * Bounds on path building, per verification. A chain comes from whoever presents it (a federated
 * peer, a probed endpoint), and the number of candidate paths grows factorially with intermediates
 * that can sign one another, so the search stops at these limits instead of trying them all.
 */
export interface PathLimits {
  /** Signature verifications (the costly step); Go's crypto/x509 allows 100 per chain build. */
  readonly maxSignatureChecks: number;
  /** Certificates placed on a candidate path, counted over the whole search. */
  readonly maxVisitedCertificates: number;
  /** Leaf plus intermediates presented (bundle authorities among them not counted). */
  readonly maxChainLength: number;
}

export const DEFAULT_PATH_LIMITS: PathLimits = { maxSignatureChecks: 100, maxVisitedCertificates: 256, maxChainLength: 16 };

/** The label (`limit`) a refusal is counted under in the limit-refusal metrics. */
export const PATH_LIMIT_NAMES = ['x509_path_signature_checks', 'x509_path_visited_certificates', 'x509_path_chain_length'] as const;
export type PathLimitName = (typeof PATH_LIMIT_NAMES)[number];

/** Verification stopped at a path-building limit; `limit` names it (also in the message). */
export class PathBudgetError extends SvidscopeError {
  constructor(
    readonly limit: PathLimitName,
    message: string,
  ) {
    super('x509-path-budget', `x509svid: could not verify leaf certificate: ${message}`);
  }
}

/** The path-building limit behind an error, looking through `cause`s (wrapped by callers). */
export function pathLimitOf(err: unknown): PathLimitName | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof PathBudgetError) return e.limit;
  }
  return undefined;
}

export interface VerifiedX509Svid {
  readonly id: SpiffeId;
  /** Leaf first, ending with the bundle authority the chain was built to. */
  readonly verifiedChain: X509Certificate[];
}

// A parent that verified a child once always will (across verifications of the same objects).
const verifiedBy = new WeakMap<X509Certificate, WeakSet<X509Certificate>>();
// Subject and public key, the identity of a CA for loop detection (two certificates with both
// equal are the same CA as far as any child can tell).
const caIdentity = new WeakMap<X509Certificate, string>();

/**
 * Verifies an X509-SVID chain (leaf first, then untrusted intermediates in any order) against the
 * bundle of the leaf's trust domain: leaf rules, then RFC 5280-style path building to any bundle
 * authority (an intermediate placed in the bundle is an anchor too, as in Go), then validity dates.
 * Path building is bounded by `opts.limits` (see PathLimits); hitting a bound is `x509-path-budget`.
 */
export function verifyX509Svid(chain: readonly X509Certificate[], bundles: X509BundleSource | undefined, opts: VerifyOptions): VerifiedX509Svid {
  if (chain.length === 0) throw fail('empty-chain', 'empty certificates chain');
  if (bundles === undefined || bundles === null) throw fail('bundle-required', 'bundleSource is required');
  const id = checkLeaf(chain[0]);
  const bundle = bundles.getX509BundleForTrustDomain(id.trustDomain);
  if (bundle === undefined) throw fail('no-bundle-for-trust-domain', `could not get X509 bundle: no X.509 bundle found for trust domain "${id.trustDomain.name}"`);
  const limits = { ...DEFAULT_PATH_LIMITS, ...opts.limits };
  const anchors = bundle.x509Authorities;
  // Byte-identical copies and the bundle's own authorities add no path: drop them before counting.
  const intermediates: X509Certificate[] = [];
  for (const cert of chain.slice(1)) {
    if (anchors.some((a) => a.der.equals(cert.raw)) || intermediates.some((c) => c.raw.equals(cert.raw))) continue;
    intermediates.push(cert);
  }
  if (intermediates.length + 1 > limits.maxChainLength) {
    throw new PathBudgetError('x509_path_chain_length', `the chain has ${intermediates.length + 1} certificates, over the limit of ${limits.maxChainLength} (x509_path_chain_length)`);
  }
  let timeError: Error | undefined;
  for (const path of buildPaths(chain[0], intermediates, anchors, limits)) {
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

function identityOf(cert: X509Certificate): string {
  let key = caIdentity.get(cert);
  if (key === undefined) {
    key = `${certificateFacts(cert).subject.toString('base64')}/${cert.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;
    caIdentity.set(cert, key);
  }
  return key;
}

/** The per-verification budget; every check and placement is charged before it is done. */
class Budget {
  private signatureChecks = 0;
  private visited = 0;
  // Results per child and parent key: duplicates of one CA (same subject and key) cost one check.
  private readonly results = new Map<X509Certificate, Map<string, boolean>>();

  constructor(private readonly limits: PathLimits) {}

  visit(): void {
    if (++this.visited > this.limits.maxVisitedCertificates) {
      throw new PathBudgetError('x509_path_visited_certificates', `path building visited more than ${this.limits.maxVisitedCertificates} certificates (x509_path_visited_certificates)`);
    }
  }

  issuedBy(child: X509Certificate, parent: X509Certificate): boolean {
    if (!certificateFacts(child).issuer.equals(certificateFacts(parent).subject)) return false;
    if (verifiedBy.get(child)?.has(parent)) return true;
    const key = identityOf(parent);
    let known = this.results.get(child);
    const cached = known?.get(key);
    if (cached !== undefined) return cached;
    if (++this.signatureChecks > this.limits.maxSignatureChecks) {
      throw new PathBudgetError('x509_path_signature_checks', `path building needed more than ${this.limits.maxSignatureChecks} signature checks (x509_path_signature_checks)`);
    }
    let ok: boolean;
    try {
      ok = child.verify(parent.publicKey);
    } catch {
      ok = false; // an unsupported signature algorithm is a parent that cannot be used
    }
    if (!known) this.results.set(child, (known = new Map()));
    known.set(key, ok);
    if (ok) {
      const set = verifiedBy.get(child) ?? new WeakSet();
      set.add(parent);
      verifiedBy.set(child, set);
    }
    return ok;
  }
}

/** A signer must be a CA with keyCertSign and respect its pathLenConstraint (intermediates below it). */
function mayIssue(parent: X509Certificate, intermediatesBelow: number): boolean {
  if (!canSignCertificates(parent)) return false;
  const pathLen = certificateFacts(parent).pathLenConstraint;
  return pathLen === undefined || intermediatesBelow <= pathLen;
}

/**
 * Every path from the leaf to an anchor, depth first, anchors preferred over further intermediates.
 * A candidate with the subject and key of a certificate already on the path is skipped (as Go's
 * alreadyInChain does): it can only close a loop, and mutual cross-signatures among copies of one
 * CA would otherwise multiply the paths. Copies still compete as siblings, so a valid copy behind
 * an expired one is found.
 */
function* buildPaths(leaf: X509Certificate, intermediates: readonly X509Certificate[], anchors: readonly X509Authority[], limits: PathLimits): Generator<X509Certificate[]> {
  const budget = new Budget(limits);
  if (anchors.some((a) => a.der.equals(leaf.raw))) yield [leaf];
  function* extend(path: X509Certificate[], onPath: ReadonlySet<string>): Generator<X509Certificate[]> {
    const cur = path[path.length - 1];
    const below = path.length - 1;
    for (const a of anchors) {
      if (mayIssue(a.cert, below) && budget.issuedBy(cur, a.cert)) yield [...path, a.cert];
    }
    for (const next of intermediates) {
      if (onPath.has(identityOf(next)) || !mayIssue(next, below) || !budget.issuedBy(cur, next)) continue;
      budget.visit();
      yield* extend([...path, next], new Set(onPath).add(identityOf(next)));
    }
  }
  budget.visit();
  yield* extend([leaf], new Set());
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
