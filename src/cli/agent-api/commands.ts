/**
 * `svidscope agent api …`: the Workload API seen from a workload's seat, like SPIRE's
 * `spire-agent api fetch x509|jwt|bundles` and `api validate`. These commands speak only the
 * standard Workload API, so they work against svidscope's agent and SPIRE's alike. Addressing,
 * the client's lifetime, views and the file layout live in common.ts.
 */
import type { Command } from 'commander';
import path from 'node:path';
import { writeFileAtomic } from '../../common/fs/atomic.js';
import { jwtBundleToJson, x509BundleToPem, type SpiffeBundle } from '../../identity-plane/spiffe/bundle/index.js';
import { printResult, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { apiOptions, bundleView, byTrustDomain, certificateView, count, withApiClient, writeX509Files, type ApiFlags, type Env } from './common.js';

interface X509Flags extends ApiFlags {
  write?: string;
}
interface JwtFlags extends ApiFlags {
  audience: string[];
  spiffeId?: string;
  write?: string;
}
interface ValidateFlags extends ApiFlags {
  audience: string;
  svid: string;
}

/**
 * Adds `api fetch x509|jwt|bundles` and `api validate` under `agent`. `env` is where the
 * SPIFFE_ENDPOINT_SOCKET fallback is read: the process environment unless a caller (a test)
 * provides its own.
 */
export function registerAgentApiCommands(agent: Command, io: Io, env: Env = process.env): void {
  const api = agent.command('api').description('call the Workload API as the calling workload (like spire-agent api)');
  const fetch = api.command('fetch').description('fetch SVIDs or bundles from the Workload API');
  const wrote = (files: string[], dir: string | undefined) => (files.length > 0 ? ['', `Wrote ${count(files.length, 'file')} to ${path.resolve(dir ?? '.')}`] : []);

  apiOptions(fetch.command('x509').description('fetch the X509-SVIDs and bundles of the calling workload'))
    .option('--write <dir>', 'write svid.<n>.pem, svid.<n>.key (0600), bundle.<n>.pem and federated_bundle.<n>.<m>.pem into <dir>')
    .action(withErrors(io, async (f: X509Flags) => {
      const ctx = await withApiClient(f, env, (client) => client.fetchX509Context());
      const files = f.write === undefined ? [] : writeX509Files(path.resolve(f.write), ctx);
      const svids = ctx.svids.map((s) => {
        const { serial, notBefore, notAfter } = certificateView(s.certificates[0]);
        return { spiffeId: s.id.toString(), hint: s.hint, serial, notBefore, notAfter, chainLength: s.certificates.length };
      });
      const bundles = ctx.bundles.bundles().sort(byTrustDomain).map(bundleView);
      printResult(io, f, { svids, bundles, files }, () => [
        `Received ${count(svids.length, 'svid')}`,
        ...svids.flatMap((s) => [
          '',
          `SPIFFE ID         : ${s.spiffeId}`,
          `Hint              : ${s.hint || '(none)'}`,
          `SVID valid after  : ${s.notBefore}`,
          `SVID valid until  : ${s.notAfter}`,
          `Chain             : ${count(s.chainLength, 'certificate')}`,
        ]),
        '',
        `Bundles           : ${bundles.map((b) => `${b.trustDomain} (${count(b.x509Authorities.length, 'authority', 'authorities')})`).join(', ')}`,
        ...wrote(files, f.write),
      ]);
    }));

  apiOptions(fetch.command('jwt').description('fetch JWT-SVIDs of the calling workload for the given audience(s)'))
    .requiredOption('--audience <aud...>', 'audience(s) the token is for')
    .option('--spiffe-id <id>', 'only this identity (default: every identity the workload is entitled to)')
    .option('--write <dir>', 'write each token to <dir>/svid.<n>.token (0600)')
    .action(withErrors(io, async (f: JwtFlags) => {
      const found = await withApiClient(f, env, (c) => c.fetchJwtSvids({ audience: f.audience, spiffeId: f.spiffeId }));
      const svids = found.map((s) => ({ spiffeId: s.id.toString(), hint: s.hint, audience: s.audience, expiresAt: s.expiry.toISOString(), token: s.token }));
      const files = svids.map((s, n) => {
        if (f.write === undefined) return '';
        const file = path.join(path.resolve(f.write), `svid.${n}.token`);
        // A bearer token is as good as a key until it expires: owner-only.
        writeFileAtomic(file, `${s.token}\n`, 0o600);
        return file;
      }).filter((file) => file !== '');
      printResult(io, f, { svids, files }, () => [
        `Received ${count(svids.length, 'svid')}`,
        ...svids.flatMap((s) => ['', `SPIFFE ID : ${s.spiffeId}`, `Hint      : ${s.hint || '(none)'}`, `Audience  : ${s.audience.join(', ')}`, `Expires   : ${s.expiresAt}`, `Token     : ${s.token}`]),
        ...wrote(files, f.write),
      ]);
    }));

  apiOptions(fetch.command('bundles').description('fetch the X.509 and JWT bundles the calling workload may verify against'))
    .action(withErrors(io, async (f: ApiFlags) => {
      const [x509, jwt] = await withApiClient(f, env, (c) => Promise.all([c.fetchX509Bundles(), c.fetchJwtBundles()]));
      // Shown side by side per trust domain; the two kinds stay separate trust decisions.
      const names = [...new Set([...x509.bundles(), ...jwt.bundles()].map((b) => b.trustDomain.name))].sort();
      const rows = names.map((name) => {
        const x = x509.bundles().find((b) => b.trustDomain.name === name);
        const j = jwt.bundles().find((b) => b.trustDomain.name === name);
        const merged = { trustDomain: (x ?? j)!.trustDomain, x509Authorities: x?.x509Authorities ?? [], jwtAuthorities: j?.jwtAuthorities ?? new Map() } as SpiffeBundle;
        return { ...bundleView(merged), x509Pem: x ? x509BundleToPem(x) : '', jwks: JSON.parse(j ? jwtBundleToJson(j) : '{"keys":[]}') as unknown };
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

  apiOptions(api.command('validate').description('have the Workload API validate a JWT-SVID for an audience'))
    .requiredOption('--audience <aud>', 'the audience the token must be for')
    .requiredOption('--svid <token>', 'the JWT-SVID (compact form)')
    .action(withErrors(io, async (f: ValidateFlags) => {
      const result = await withApiClient(f, env, (c) => c.validateJwtSvid(f.svid.trim(), f.audience));
      const spiffeId = result.id.toString();
      printResult(io, f, { spiffeId, claims: result.claims }, () => ['SVID is valid.', `SPIFFE ID : ${spiffeId}`, `Claims    : ${JSON.stringify(result.claims)}`]);
    }));
}
