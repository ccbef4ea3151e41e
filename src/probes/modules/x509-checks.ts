/**
 * The X509-SVID checks shared by x509_svid, rotation_watch and mtls: which SVID to look at, the
 * identity expectations, X509-SVID validation against the bundle (foundation validator) with a
 * clock-skew tolerance, the EKU rule and the remaining-lifetime figures.
 */
import type { X509Certificate } from 'node:crypto';
import type { X509BundleSource } from '../../identity-plane/spiffe/bundle/index.js';
import type { SpiffeId, TrustDomain } from '../../identity-plane/spiffe/id/index.js';
import { certificateFacts } from '../../identity-plane/spiffe/x509/index.js';
import { verifyX509Svid, type VerifiedX509Svid } from '../../identity-plane/spiffe/x509svid/index.js';
import type { WorkloadX509Svid, X509Context } from '../../identity-plane/workload-api/index.js';
import { classifyError, ProbeFailure } from '../reasons.js';
import type { ProbeRun } from '../result.js';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** The SVID with `id` if given (absent → wrong_spiffe_id), else the default (first) one. */
export function selectSvid(ctx: X509Context, id: SpiffeId | undefined, fallbackIndex = 0): WorkloadX509Svid {
  if (id === undefined) return ctx.svids[Math.min(fallbackIndex, ctx.svids.length - 1)];
  const found = ctx.svids.find((s) => s.id.toString() === id.toString());
  if (!found) throw new ProbeFailure('wrong_spiffe_id', `no SVID for ${id} among ${ctx.svids.map((s) => s.id.toString()).join(', ')}`);
  return found;
}

export interface Lifetime {
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly remainingSeconds: number;
  readonly lifetimeSeconds: number;
  /** Remaining lifetime ÷ whole lifetime, clamped to [0, 1]. */
  readonly remainingRatio: number;
}

export function lifetimeOf(leaf: X509Certificate, now: Date): Lifetime {
  const { notBefore, notAfter } = certificateFacts(leaf);
  return lifetimeBetween(notBefore, notAfter, now);
}

export function lifetimeBetween(notBefore: Date, notAfter: Date, now: Date): Lifetime {
  const lifetimeSeconds = Math.max(0, (notAfter.getTime() - notBefore.getTime()) / 1000);
  const remainingSeconds = (notAfter.getTime() - now.getTime()) / 1000;
  const remainingRatio = lifetimeSeconds > 0 ? Math.min(1, Math.max(0, remainingSeconds / lifetimeSeconds)) : 0;
  return { notBefore, notAfter, remainingSeconds, lifetimeSeconds, remainingRatio };
}

/**
 * X509-SVID validation at `now`; a time failure within `skewSeconds` of the bound passes (the
 * verifier's clock may lag or lead the issuer's). Throws what the validator throws.
 */
export function verifyWithSkew(chain: readonly X509Certificate[], bundles: X509BundleSource, now: Date, skewSeconds: number): { verified: VerifiedX509Svid; skewed: boolean } {
  try {
    return { verified: verifyX509Svid(chain, bundles, { now }), skewed: false };
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (skewSeconds <= 0 || (code !== 'expired' && code !== 'not-yet-valid')) throw err;
    const shifted = new Date(now.getTime() + (code === 'expired' ? -1 : 1) * skewSeconds * 1000);
    try {
      return { verified: verifyX509Svid(chain, bundles, { now: shifted }), skewed: true };
    } catch {
      throw err;
    }
  }
}

/** EKU is optional for SVIDs, but when present it must allow both TLS roles (X509-SVID §4.4). */
export function ekuProblem(leaf: X509Certificate): string | undefined {
  const eku = leaf.keyUsage;
  if (!eku || eku.length === 0) return undefined;
  const missing = [SERVER_AUTH, CLIENT_AUTH].filter((oid) => !eku.includes(oid));
  return missing.length === 0 ? undefined : `extended key usage lacks ${missing.map((m) => (m === SERVER_AUTH ? 'serverAuth' : 'clientAuth')).join(' and ')}`;
}

export interface X509Expectations {
  readonly expectedSpiffeId?: SpiffeId;
  readonly expectedTrustDomain?: TrustDomain;
  readonly clockSkewSeconds: number;
  readonly minTtlRatio: number;
}

/**
 * Runs every check on one SVID, recording each in `run`, and the lifetime gauges first (so a
 * failed probe still says when the SVID expires). `label` prefixes check names (mtls: client/server).
 */
export function checkX509Svid(run: ProbeRun, svid: WorkloadX509Svid, bundles: X509BundleSource, now: Date, exp: X509Expectations, label = ''): Lifetime {
  const leaf = svid.certificates[0];
  const life = lifetimeOf(leaf, now);
  const p = label ? `${label}: ` : '';
  run.svid(life.notAfter, life.remainingRatio, life.lifetimeSeconds);
  run.pass(`${p}X509-SVID rules`, `${svid.id} (URI SAN, CA flag, key usage, key matches the leaf)`);
  const eku = ekuProblem(leaf);
  if (eku) run.fail(`${p}extended key usage`, 'invalid_svid', eku);
  if (exp.expectedTrustDomain && !svid.id.trustDomain.equals(exp.expectedTrustDomain)) {
    run.fail(`${p}trust domain`, 'wrong_trust_domain', `${svid.id.trustDomain.name} is not the expected ${exp.expectedTrustDomain.name}`);
  }
  if (exp.expectedSpiffeId && svid.id.toString() !== exp.expectedSpiffeId.toString()) {
    run.fail(`${p}SPIFFE ID`, 'wrong_spiffe_id', `${svid.id} is not the expected ${exp.expectedSpiffeId}`);
  }
  if (exp.expectedTrustDomain || exp.expectedSpiffeId) run.pass(`${p}expected identity`, svid.id.toString());
  let result: ReturnType<typeof verifyWithSkew>;
  try {
    result = verifyWithSkew(svid.certificates, bundles, now, exp.clockSkewSeconds);
  } catch (err) {
    const { reason, message } = classifyError(err);
    run.fail(`${p}chain verifies to the bundle`, reason, message);
  }
  run.pass(`${p}chain verifies to the bundle`, `chain of ${result.verified.verifiedChain.length} to an authority of ${svid.id.trustDomain.name}${result.skewed ? ' (within the clock-skew tolerance)' : ''}`);
  const left = `${life.remainingSeconds.toFixed(1)} s of ${life.lifetimeSeconds.toFixed(0)} s left (${(life.remainingRatio * 100).toFixed(0)} %), expires ${life.notAfter.toISOString()}`;
  if (exp.minTtlRatio > 0 && life.remainingRatio < exp.minTtlRatio) {
    run.fail(`${p}remaining lifetime`, 'rotation_overdue', `${left}: under min_ttl_ratio ${exp.minTtlRatio}`);
  }
  run.pass(`${p}remaining lifetime`, left);
  return life;
}
