/**
 * `svidscope agent api fetch x509`: what a workload would get from FetchX509SVID, printed or
 * written out in SPIRE's file layout (`spire-agent api fetch x509 -write`) so the same scripts
 * and openssl invocations work against either.
 */
import type { Command } from 'commander';
import path from 'node:path';
import { writeFileAtomic } from '../../common/fs/atomic.js';
import { x509BundleToPem } from '../../identity-plane/spiffe/bundle/index.js';
import { encodePem } from '../../identity-plane/spiffe/internal/pem.js';
import type { X509Context } from '../../identity-plane/workload-api/index.js';
import { printResult, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { apiOptions, bundleView, byTrustDomain, certificateView, count, withApiClient, type ApiFlags, type Env } from './common.js';

interface Flags extends ApiFlags {
  write?: string;
}

// Certificates are public; the key is a credential and stays owner-only.
const PUBLIC_MODE = 0o644;
const SECRET_MODE = 0o600;

export function registerFetchX509(fetch: Command, io: Io, env: Env): void {
  apiOptions(fetch.command('x509').description('fetch the X509-SVIDs and bundles of the calling workload'))
    .option('--write <dir>', 'write svid.<n>.pem, svid.<n>.key (0600), bundle.<n>.pem and federated_bundle.<n>.<m>.pem into <dir>')
    .action(withErrors(io, async (f: Flags) => {
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
        ...(files.length > 0 ? ['', `Wrote ${count(files.length, 'file')} to ${path.resolve(f.write ?? '.')}`] : []),
      ]);
    }));
}

/**
 * SPIRE's layout: per SVID n its chain, its key, its own trust domain's bundle, and every other
 * trust domain's bundle as federated_bundle.n.m (m in trust-domain order, so names are stable).
 */
function writeX509Files(dir: string, ctx: X509Context): string[] {
  const written: string[] = [];
  const write = (name: string, data: string, mode: number) => {
    const file = path.join(dir, name);
    writeFileAtomic(file, data, mode);
    written.push(file);
  };
  const bundles = ctx.bundles.bundles().sort(byTrustDomain);
  ctx.svids.forEach((svid, n) => {
    write(`svid.${n}.pem`, svid.certificates.map((c) => encodePem('CERTIFICATE', c.raw)).join(''), PUBLIC_MODE);
    write(`svid.${n}.key`, svid.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, SECRET_MODE);
    const own = ctx.bundles.get(svid.id.trustDomain);
    if (own) write(`bundle.${n}.pem`, x509BundleToPem(own), PUBLIC_MODE);
    bundles
      .filter((b) => b.trustDomain.name !== svid.id.trustDomain.name)
      .forEach((b, m) => write(`federated_bundle.${n}.${m}.pem`, x509BundleToPem(b), PUBLIC_MODE));
  });
  return written;
}
