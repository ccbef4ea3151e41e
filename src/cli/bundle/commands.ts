import type { Command } from 'commander';
import { spiffeBundleToJson, x509BundleToPem, parseSpiffeBundle, type SpiffeBundle } from '../../identity-plane/spiffe/bundle/index.js';
import { parseTrustDomain } from '../../identity-plane/spiffe/id/index.js';
import { certificateFacts } from '../../identity-plane/spiffe/x509/index.js';
import { printResult, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { withAdmin } from '../admin/client.js';
import { socketOption } from '../admin/entry.js';
import { readInput } from '../files.js';
import { BUNDLE_FORMATS, loadBundle, trustDomainFlag } from './load.js';

interface BundleMsg { trust_domain: string; document: Buffer; sequence_number: string }

export function describeBundle(bundle: SpiffeBundle) {
  return {
    trustDomain: bundle.trustDomain.name,
    sequenceNumber: bundle.sequenceNumber === undefined ? null : bundle.sequenceNumber.toString(),
    refreshHintSeconds: bundle.refreshHintSeconds ?? null,
    x509Authorities: bundle.x509Authorities.map((a) => {
      const facts = certificateFacts(a.cert);
      return { subject: a.cert.subject.replace(/\n/g, ', '), spiffeId: facts.uriSans[0] ?? null, notBefore: facts.notBefore.toISOString(), notAfter: facts.notAfter.toISOString(), sha256: a.cert.fingerprint256 };
    }),
    jwtAuthorities: [...bundle.jwtAuthorities.values()].map((a) => ({ keyId: a.keyId, keyType: a.publicKey.asymmetricKeyType ?? 'unknown' })),
  };
}

function readable(view: ReturnType<typeof describeBundle>): string[] {
  return [
    `Trust domain     : ${view.trustDomain}`,
    `Sequence number  : ${view.sequenceNumber ?? '(none)'}`,
    `Refresh hint     : ${view.refreshHintSeconds === null ? '(none)' : `${view.refreshHintSeconds}s`}`,
    `X.509 authorities: ${view.x509Authorities.length}`,
    ...view.x509Authorities.map((a) => `  - ${a.spiffeId ?? a.subject}  expires ${a.notAfter}  sha256 ${a.sha256.slice(0, 23)}…`),
    `JWT authorities  : ${view.jwtAuthorities.length}`,
    ...view.jwtAuthorities.map((a) => `  - kid ${a.keyId} (${a.keyType})`),
  ];
}

export function registerBundleCommands(program: Command, io: Io): void {
  const bundle = program.command('bundle').description('inspect trust bundles (files, or the server\'s)');
  bundle.command('show').description('show a bundle file, or the server\'s bundle when no file is given')
    .argument('[file]', 'bundle file: SPIFFE bundle (JWKS), plain JWKS, PEM or DER')
    .option('--format <format>', `input format: ${BUNDLE_FORMATS.join('|')} (default: detected)`)
    .option('--trust-domain <td>', 'the trust domain the bundle belongs to (default: from the CA certificates; for the server: its own)')
    .option('--output <format>', 'with no --json: print the bundle itself as spiffe or pem instead of a summary')
    .addOption(socketOption())
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (file: string | undefined, f: { format?: string; trustDomain?: string; output?: string; adminSocket?: string; json?: boolean }) => {
      let parsed: SpiffeBundle;
      let format = 'spiffe';
      if (file) {
        ({ bundle: parsed, format } = loadBundle(readInput(file, 'bundle'), { format: f.format, trustDomain: trustDomainFlag(f.trustDomain) }));
      } else {
        const msg = await withAdmin(f.adminSocket, (a) => a.call<BundleMsg>('GetBundle', { trust_domain: f.trustDomain ?? '' }));
        parsed = parseSpiffeBundle(parseTrustDomain(msg.trust_domain), msg.document);
      }
      if (f.output === 'spiffe' && !f.json) return io.out(spiffeBundleToJson(parsed, { space: 2 }));
      if (f.output === 'pem' && !f.json) return io.out(x509BundleToPem(parsed).trimEnd());
      const view = describeBundle(parsed);
      printResult(io, f, { format, ...view }, () => readable(view));
    }));
  bundle.command('list').description('list the bundles the server holds (its own and federated)')
    .addOption(socketOption())
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: { adminSocket?: string; json?: boolean }) => {
      const res = await withAdmin(f.adminSocket, (a) => a.call<{ bundles: BundleMsg[] }>('ListBundles', {}));
      const views = res.bundles.map((b) => describeBundle(parseSpiffeBundle(parseTrustDomain(b.trust_domain), b.document)));
      printResult(io, f, { bundles: views }, () => views.flatMap((v, i) => [...(i ? [''] : []), ...readable(v)]));
    }));
}
