/**
 * jwt_svid: fetch a JWT-SVID for the configured audience, validate it locally against the JWT
 * bundle of its trust domain (foundation verifier: signature, kid, audience, exp/nbf with the
 * clock-skew leeway) and then through the agent's ValidateJWTSVID, as a relying party would.
 */
import * as grpc from '@grpc/grpc-js';
import { verifyJwtSvid } from '../../identity-plane/spiffe/jwtsvid/index.js';
import { isWorkloadApiError } from '../../identity-plane/workload-api/index.js';
import type { JwtSvidSettings } from '../config.js';
import { workloadClient, type ProbeContext } from '../context.js';
import { classifyError, reasonForCode, type FailureReason } from '../reasons.js';
import type { ProbeRun } from '../result.js';
import { lifetimeBetween } from './x509-checks.js';

/**
 * ValidateJWTSVID answers InvalidArgument with the broken rule. svidscope's agent names it in the
 * code trailer; another SPIFFE agent (SPIRE) only in its message, so for those (code `usage`, the
 * status alone) the message is read: classification of a foreign error, not of ours.
 */
function classifyValidateError(err: unknown): { reason: FailureReason; message: string } {
  if (isWorkloadApiError(err) && err.status === grpc.status.INVALID_ARGUMENT) {
    if (err.code !== 'usage') {
      const reason = reasonForCode(err.code);
      return { reason: reason === 'internal' ? 'jwt_invalid' : reason, message: err.message };
    }
    if (/audience/i.test(err.message)) return { reason: 'audience_mismatch', message: err.message };
    if (/expired/i.test(err.message)) return { reason: 'expired', message: err.message };
    if (/not valid yet|not yet valid|future/i.test(err.message)) return { reason: 'not_yet_valid', message: err.message };
    return { reason: 'jwt_invalid', message: err.message };
  }
  return classifyError(err);
}

export async function probeJwtSvid(run: ProbeRun, target: string, settings: JwtSvidSettings, ctx: ProbeContext): Promise<void> {
  const client = workloadClient(target, ctx);
  const svid = await run.phase('fetch_svid', () =>
    run.check(`fetch JWT-SVID for ${settings.audience.join(', ')}`, () => client.fetchJwtSvid({ audience: settings.audience, spiffeId: settings.spiffeId?.toString() }, { deadlineMs: ctx.remainingMs() }), (s) => `${s.id}, expires ${s.expiry.toISOString()}`, classifyError),
  );
  run.fact('spiffeId', svid.id.toString());
  run.fact('expiresAt', svid.expiry.toISOString());
  const now = ctx.clock.now();
  const iat = typeof svid.claims.iat === 'number' ? new Date(svid.claims.iat * 1000) : undefined;
  const life = lifetimeBetween(iat ?? now, svid.expiry, now);
  run.svid(svid.expiry, life.remainingRatio, life.lifetimeSeconds);
  run.fact('remainingSeconds', Math.round(life.remainingSeconds * 10) / 10);

  if (settings.expectedTrustDomain && !svid.id.trustDomain.equals(settings.expectedTrustDomain)) {
    run.fail('trust domain', 'wrong_trust_domain', `${svid.id.trustDomain.name} is not the expected ${settings.expectedTrustDomain.name}`);
  }
  if (settings.spiffeId && !svid.id.equals(settings.spiffeId)) run.fail('SPIFFE ID', 'wrong_spiffe_id', `${svid.id} is not the requested ${settings.spiffeId}`);

  const bundles = await run.phase('fetch_bundles', () =>
    run.check('fetch JWT bundles', () => client.fetchJwtBundles({ deadlineMs: ctx.remainingMs() }), (b) => b.bundles().map((x) => `${x.trustDomain.name} (${x.jwtAuthorities.size} keys)`).join(', '), classifyError),
  );
  if (settings.validateLocally) {
    await run.phase('validate_local', () =>
      run.check(`validates locally for audience ${settings.validateAudience}`, () => verifyJwtSvid(svid.token, bundles, { audience: [settings.validateAudience], now, leewaySeconds: settings.clockSkewSeconds }), (v) => `signed by ${String(v.header.kid)}, ${v.header.alg}`, classifyError),
    );
  }
  if (settings.validateViaApi) {
    const validated = await run.phase('validate_api', () =>
      run.check(`ValidateJWTSVID for audience ${settings.validateAudience}`, () => client.validateJwtSvid(svid.token, settings.validateAudience, { deadlineMs: ctx.remainingMs() }), (v) => v.id.toString(), classifyValidateError),
    );
    if (!validated.id.equals(svid.id)) run.fail('ValidateJWTSVID subject', 'jwt_invalid', `the agent says ${validated.id}, the token says ${svid.id}`);
  }
  const left = `${life.remainingSeconds.toFixed(1)} s left (${(life.remainingRatio * 100).toFixed(0)} %)`;
  if (settings.minTtlRatio > 0 && iat && life.remainingRatio < settings.minTtlRatio) run.fail('remaining lifetime', 'rotation_overdue', `${left}: under min_ttl_ratio ${settings.minTtlRatio}`);
  run.pass('remaining lifetime', left);
}
