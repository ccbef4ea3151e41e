import type { Command } from 'commander';
import { parseDurationSeconds } from '../../common/duration.js';
import { writeFileAtomic } from '../../common/fs/atomic.js';
import { BundleSet } from '../../identity-plane/spiffe/bundle/index.js';
import { parseSpiffeIdBounded } from '../../identity-plane/spiffe/id/index.js';
import { parsePrivateKey } from '../../identity-plane/spiffe/x509/index.js';
import { mintJwtSvid, verifyJwtSvid } from '../../identity-plane/spiffe/jwtsvid/index.js';
import { loadBundle, trustDomainFlag } from '../bundle/load.js';
import { parseAt, readInput } from '../files.js';
import { printResult, usageError, type Io } from '../output.js';
import { withErrors } from '../run.js';

export function registerJwtSvidCommands(program: Command, io: Io): void {
  const jwt = program.command('jwt-svid').description('verify and mint JWT-SVIDs');

  jwt.command('verify').description('verify a JWT-SVID against a JWT bundle for an audience')
    .requiredOption('--token <file>', 'file holding the compact JWS (surrounding whitespace ignored)')
    .requiredOption('--bundle <file>', 'SPIFFE bundle or plain JWKS of the token\'s trust domain')
    .requiredOption('--trust-domain <td>', 'the trust domain the bundle belongs to')
    .requiredOption('--audience <aud...>', 'expected audience(s); at least one must be in the token')
    .option('--at <rfc3339>', 'verification time (default: now)')
    .option('--leeway <seconds>', 'clock-skew tolerance for exp/nbf/iat', '0')
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: { token: string; bundle: string; trustDomain: string; audience: string[]; at?: string; leeway: string; json?: boolean }) => {
      if (!/^\d+$/.test(f.leeway)) throw usageError(`--leeway must be a whole number of seconds, got "${f.leeway}"`);
      const { bundle } = loadBundle(readInput(f.bundle, 'bundle'), { trustDomain: trustDomainFlag(f.trustDomain) });
      const token = readInput(f.token, 'token').toString('utf8').trim();
      const now = parseAt(f.at);
      const svid = await verifyJwtSvid(token, new BundleSet([bundle]), { audience: f.audience, now, leewaySeconds: Number(f.leeway) });
      printResult(io, f, { spiffeId: svid.id.toString(), audience: svid.audience, expiry: svid.expiry.toISOString(), keyId: svid.header.kid, alg: svid.header.alg, claims: svid.claims }, () => [
        `valid: ${svid.id} for ${svid.audience.join(', ')}, expires ${svid.expiry.toISOString()} (kid ${svid.header.kid}, ${svid.header.alg})`,
      ]);
    }));

  jwt.command('mint').description('mint a JWT-SVID with a signing key (for tests and by-hand use)')
    .requiredOption('--key <file>', 'signing private key (PEM or DER PKCS#8)')
    .requiredOption('--key-id <kid>', 'the key id published in the bundle')
    .requiredOption('--spiffe-id <id>', 'the subject')
    .requiredOption('--audience <aud...>', 'audience(s)')
    .option('--ttl <duration>', 'lifetime, e.g. 5m', '5m')
    .option('--out <file>', 'write the token here instead of stdout')
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: { key: string; keyId: string; spiffeId: string; audience: string[]; ttl: string; out?: string; json?: boolean }) => {
      const privateKey = parsePrivateKey(readInput(f.key, 'key'));
      const token = await mintJwtSvid({ id: parseSpiffeIdBounded(f.spiffeId), audience: f.audience, ttlSeconds: parseDurationSeconds(f.ttl, '--ttl'), now: new Date(), key: { keyId: f.keyId, privateKey } });
      // A bearer token: a fresh 0600 file renamed over the target, so a planted symlink is replaced, not followed.
      if (f.out) writeFileAtomic(f.out, token + '\n');
      printResult(io, f, { token, spiffeId: f.spiffeId, file: f.out ?? null }, () => [f.out ? `wrote ${f.out}` : token]);
    }));
}
