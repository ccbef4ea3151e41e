import { describe, expect, it } from 'vitest';
import { parseJwtBundle, parseSpiffeBundle, type JwtBundle, type JwtBundleSource } from '../../src/identity-plane/spiffe/bundle/index.js';
import { parseJwtSvidInsecure, verifyJwtSvid, type JwtSvid } from '../../src/identity-plane/spiffe/jwtsvid/index.js';
import { loadCases, readFixture } from '../support/conformance.js';
import { parseTrustDomain, type TrustDomain } from '../../src/identity-plane/spiffe/id/index.js';

interface JwtSvidCase {
  id: string;
  token: string;
  bundleFile: string | null;
  bundleTrustDomain: string | null;
  expectedAudience: string[];
  at: string;
  leewaySeconds: number;
  expect: { valid: true; spiffeId: string } | { valid: false; error: string };
}

/**
 * A document whose keys carry the SPIFFE `use` member (or that has `spiffe_*` members) is a SPIFFE
 * bundle: entries it cannot use are skipped. Anything else is a plain JWKS JWT bundle.
 */
function loadBundle(file: string, trustDomain: TrustDomain): JwtBundle {
  const bytes = readFixture(file);
  const doc = JSON.parse(bytes.toString('utf8')) as { keys?: { use?: unknown }[]; spiffe_sequence?: unknown; spiffe_refresh_hint?: unknown };
  const spiffeForm =
    doc.spiffe_sequence !== undefined || doc.spiffe_refresh_hint !== undefined || (doc.keys ?? []).some((k) => k.use !== undefined);
  return spiffeForm ? parseSpiffeBundle(trustDomain, bytes) : parseJwtBundle(trustDomain, bytes);
}

function sourceOf(bundle: JwtBundle): JwtBundleSource {
  return { getJwtBundleForTrustDomain: (td) => (td.name === bundle.trustDomain.name ? bundle : undefined) };
}

/** With a bundle the token is verified (ParseAndValidate); a case without one (`bundleFile: null`) is a ParseInsecure case. */
async function run(c: JwtSvidCase): Promise<JwtSvid> {
  const opts = { audience: c.expectedAudience, now: new Date(c.at), leewaySeconds: c.leewaySeconds };
  if (c.bundleFile === null) return parseJwtSvidInsecure(c.token, opts);
  return verifyJwtSvid(c.token, sourceOf(loadBundle(c.bundleFile, parseTrustDomain(c.bundleTrustDomain as string))), opts);
}

describe('conformance: jwt-svid.json', () => {
  const cases = loadCases<JwtSvidCase>('jwt-svid.json');
  it('holds the expected number of cases', () => expect(cases.length).toBeGreaterThanOrEqual(54));

  it.each(cases.map((c) => [`${c.id} -> ${c.expect.valid ? 'valid' : c.expect.error}`, c] as const))('%s', async (_name, c) => {
    const outcome = await run(c).then(
      (svid) => ({ valid: true as const, svid }),
      (err: unknown) => {
        const code = (err as { code?: unknown }).code;
        if (typeof code !== 'string') throw err;
        return { valid: false as const, code, message: (err as Error).message };
      },
    );
    if (c.expect.valid) {
      expect(outcome).toMatchObject({ valid: true });
      if (!outcome.valid) return;
      expect(outcome.svid.id.toString()).toBe(c.expect.spiffeId);
      expect(outcome.svid.audience.some((a) => c.expectedAudience.includes(a))).toBe(true);
    } else {
      expect(outcome).toMatchObject({ valid: false, code: c.expect.error });
      if (outcome.valid) return;
      expect(outcome.message).toMatch(/^jwtsvid: [a-z]/);
    }
  });
});
