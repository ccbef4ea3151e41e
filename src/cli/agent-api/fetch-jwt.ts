/**
 * `svidscope agent api fetch jwt` and `fetch bundles`: JWT-SVIDs for given audiences, and every
 * trust bundle the workload may use, X.509 and JWT side by side per trust domain (the Workload
 * API serves them on separate RPCs; an operator wants to see them together).
 */
import type { Command } from 'commander';
import path from 'node:path';
import { writeFileAtomic } from '../../common/fs/atomic.js';
import { jwtBundleToJson, x509BundleToPem, type SpiffeBundle } from '../../identity-plane/spiffe/bundle/index.js';
import { printResult, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { apiOptions, bundleView, count, withApiClient, type ApiFlags, type Env } from './common.js';

interface JwtFlags extends ApiFlags {
  audience: string[];
  spiffeId?: string;
  write?: string;
}

export function registerFetchJwt(fetch: Command, io: Io, env: Env): void {
  apiOptions(fetch.command('jwt').description('fetch JWT-SVIDs of the calling workload for the given audience(s)'))
    .requiredOption('--audience <aud...>', 'audience(s) the token is for')
    .option('--spiffe-id <id>', 'only this identity (default: every identity the workload is entitled to)')
    .option('--write <dir>', 'write each token to <dir>/svid.<n>.token (0600)')
    .action(withErrors(io, async (f: JwtFlags) => {
      const found = await withApiClient(f, env, (c) => c.fetchJwtSvids({ audience: f.audience, spiffeId: f.spiffeId }));
      const svids = found.map((s) => ({ spiffeId: s.id.toString(), hint: s.hint, audience: s.audience, expiresAt: s.expiry.toISOString(), token: s.token }));
      const files: string[] = [];
      if (f.write !== undefined) {
        const dir = path.resolve(f.write);
        svids.forEach((s, n) => {
          const file = path.join(dir, `svid.${n}.token`);
          // A bearer token is as good as a key until it expires: owner-only.
          writeFileAtomic(file, `${s.token}\n`, 0o600);
          files.push(file);
        });
      }
      printResult(io, f, { svids, files }, () => [
        `Received ${count(svids.length, 'svid')}`,
        ...svids.flatMap((s) => ['', `SPIFFE ID : ${s.spiffeId}`, `Hint      : ${s.hint || '(none)'}`, `Audience  : ${s.audience.join(', ')}`, `Expires   : ${s.expiresAt}`, `Token     : ${s.token}`]),
        ...(files.length > 0 ? ['', `Wrote ${count(files.length, 'file')} to ${path.resolve(f.write ?? '.')}`] : []),
      ]);
    }));
}

export function registerFetchBundles(fetch: Command, io: Io, env: Env): void {
  apiOptions(fetch.command('bundles').description('fetch the X.509 and JWT bundles the calling workload may verify against'))
    .action(withErrors(io, async (f: ApiFlags) => {
      const [x509, jwt] = await withApiClient(f, env, (c) => Promise.all([c.fetchX509Bundles(), c.fetchJwtBundles()]));
      // Merge per trust domain for display only: the two kinds stay separate trust decisions.
      const names = [...new Set([...x509.bundles(), ...jwt.bundles()].map((b) => b.trustDomain.name))].sort();
      const rows = names.map((name) => {
        const x = x509.bundles().find((b) => b.trustDomain.name === name);
        const j = jwt.bundles().find((b) => b.trustDomain.name === name);
        const view = bundleView({ trustDomain: (x ?? j)!.trustDomain, x509Authorities: x?.x509Authorities ?? [], jwtAuthorities: j?.jwtAuthorities ?? new Map() } as SpiffeBundle);
        return { ...view, x509Pem: x ? x509BundleToPem(x) : '', jwks: j ? JSON.parse(jwtBundleToJson(j)) as unknown : { keys: [] } };
      });
      printResult(io, f, { bundles: rows }, () => [
        `Received bundles for ${count(rows.length, 'trust domain')}`,
        ...rows.flatMap((b) => [
          '',
          `Trust domain      : ${b.trustDomain}`,
          `X.509 authorities : ${b.x509Authorities.length}`,
          ...b.x509Authorities.map((a) => `  ${a.subject} (valid until ${a.notAfter})`),
          `JWT authorities   : ${b.jwtAuthorities.length}${b.jwtAuthorities.length > 0 ? ` (${b.jwtAuthorities.map((a) => a.keyId).join(', ')})` : ''}`,
        ]),
      ]);
    }));
}
