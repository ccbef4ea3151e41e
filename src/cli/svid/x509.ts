import type { Command } from 'commander';
import { SvidscopeError } from '../../common/errors/catalog.js';
import { writeFileAtomic } from '../../common/fs/atomic.js';
import { parseDurationSeconds } from '../../common/duration.js';
import { BundleSet } from '../../identity-plane/spiffe/bundle/index.js';
import { parseSpiffeId, parseSpiffeIdBounded, type TrustDomain } from '../../identity-plane/spiffe/id/index.js';
import { encodePem, certificateFacts, parseCertificates, parsePrivateKey } from '../../identity-plane/spiffe/x509/index.js';
import { parseCsr, generateKeyPair, isKeyType, createX509SvidMinter } from '../../identity-plane/spiffe/mint/index.js';
import { newX509Svid, verifyX509Svid } from '../../identity-plane/spiffe/x509svid/index.js';
import { loadBundle, trustDomainFlag } from '../bundle/load.js';
import { parseAt, readInput } from '../files.js';
import { printResult, usageError, type Io } from '../output.js';
import { withErrors } from '../run.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

function certView(cert: import('node:crypto').X509Certificate) {
  const f = certificateFacts(cert);
  return { spiffeId: f.uriSans[0] ?? null, dnsNames: f.dnsSans, serial: cert.serialNumber, notBefore: f.notBefore.toISOString(), notAfter: f.notAfter.toISOString(), isCA: f.isCA };
}

export function registerX509SvidCommands(program: Command, io: Io): void {
  const x509 = program.command('x509-svid').description('parse, verify and mint X509-SVIDs');

  x509.command('parse').description('load an X509-SVID with its private key, checking every SVID rule as a holder would')
    .requiredOption('--chain <file>', 'certificate chain, leaf first (PEM or DER)')
    .requiredOption('--key <file>', 'private key (PEM or DER PKCS#8); may be the chain file itself')
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: { chain: string; key: string; json?: boolean }) => {
      // PEM or DER, told apart per file as `verify` does; the SVID rules are the library's.
      const certificates = parseCertificates(readInput(f.chain, 'chain'), { area: 'x509svid' });
      const svid = newX509Svid(certificates, parsePrivateKey(readInput(f.key, 'key'), { area: 'x509svid' }));
      const chain = svid.certificates.map(certView);
      printResult(io, f, { spiffeId: svid.id.toString(), trustDomain: svid.id.trustDomain.name, numCerts: chain.length, keyType: svid.privateKey.asymmetricKeyType, chain }, () => [
        `SPIFFE ID : ${svid.id}`,
        `Chain     : ${chain.length} certificate(s)`,
        `Expires   : ${chain[0].notAfter}`,
        `Key       : ${svid.privateKey.asymmetricKeyType} (matches the leaf)`,
      ]);
    }));

  x509.command('verify').description('verify an X509-SVID chain against trust bundles at a given time')
    .requiredOption('--chain <file>', 'certificate chain, leaf first (PEM or DER)')
    .requiredOption('--bundle <file...>', 'bundle file(s): PEM, DER or SPIFFE bundle JSON')
    .option('--trust-domain <td>', 'the trust domain the bundle belongs to (default: the SVID\'s own)')
    .option('--at <rfc3339>', 'verification time (default: now)')
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: { chain: string; bundle: string[]; trustDomain?: string; at?: string; json?: boolean }) => {
      const chain = parseCertificates(readInput(f.chain, 'chain'));
      if (chain.length === 0) throw new SvidscopeError('empty-chain', 'x509svid: the chain holds no certificate');
      const leafUri = certificateFacts(chain[0]).uriSans[0];
      let td: TrustDomain | undefined = trustDomainFlag(f.trustDomain);
      if (!td && leafUri) {
        try {
          td = parseSpiffeId(leafUri).trustDomain;
        } catch {
          td = undefined; // verification reports the bad ID
        }
      }
      const set = new BundleSet();
      for (const file of f.bundle) {
        const { bundle } = loadBundle(readInput(file, 'bundle'), { trustDomain: td });
        const existing = set.get(bundle.trustDomain);
        set.set(existing ? { ...bundle, x509Authorities: [...existing.x509Authorities, ...bundle.x509Authorities] } : bundle);
      }
      const now = parseAt(f.at);
      const result = verifyX509Svid(chain, set, { now });
      printResult(io, f, { spiffeId: result.id.toString(), trustDomain: result.id.trustDomain.name, verifiedAt: now.toISOString(), chainLength: result.verifiedChain.length }, () => [
        `valid: ${result.id} (chain of ${result.verifiedChain.length} to a ${result.id.trustDomain.name} authority, at ${now.toISOString()})`,
      ]);
    }));

  x509.command('mint').description('mint an X509-SVID from a CA (for tests and by-hand use)')
    .requiredOption('--ca-cert <file>', 'CA certificate (from `svidscope ca init`)')
    .requiredOption('--ca-key <file>', 'CA private key')
    .requiredOption('--spiffe-id <id>', 'the SVID\'s SPIFFE ID')
    .option('--csr <file>', 'a PKCS#10 CSR to take the public key from (its signature must verify); default: generate a key')
    .option('--key-type <type>', 'key to generate when no CSR is given: ec-p256|ec-p384|rsa-2048', 'ec-p256')
    .option('--ttl <duration>', 'lifetime, e.g. 1h, 30m (capped at the CA\'s expiry)', '1h')
    .option('--dns-name <name>', 'a DNS SAN (repeatable)', collect)
    .requiredOption('--out <prefix>', 'write <prefix>.pem (chain) and, when a key was generated, <prefix>.key.pem')
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: { caCert: string; caKey: string; spiffeId: string; csr?: string; keyType: string; ttl: string; dnsName?: string[]; out: string; json?: boolean }) => {
      const caCertificate = parseCertificates(readInput(f.caCert, 'CA certificate'))[0];
      const caPrivateKey = parsePrivateKey(readInput(f.caKey, 'CA key'));
      const id = parseSpiffeIdBounded(f.spiffeId);
      const ttlSeconds = parseDurationSeconds(f.ttl, '--ttl');
      let publicKey;
      let privateKeyPem: string | undefined;
      if (f.csr) {
        publicKey = parseCsr(readInput(f.csr, 'CSR')).publicKey;
      } else {
        if (!isKeyType(f.keyType)) throw usageError('--key-type must be ec-p256, ec-p384 or rsa-2048');
        const pair = generateKeyPair(f.keyType);
        publicKey = pair.publicKey;
        privateKeyPem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
      }
      const minted = createX509SvidMinter({ caCertificate, caPrivateKey }).mint({ id, publicKey, ttlSeconds, now: new Date(), dnsNames: f.dnsName ?? [] });
      const chainFile = `${f.out}.pem`;
      writeFileAtomic(chainFile, encodePem('CERTIFICATE', minted.der), 0o644);
      const keyFile = privateKeyPem ? `${f.out}.key.pem` : undefined;
      if (keyFile && privateKeyPem) writeFileAtomic(keyFile, privateKeyPem);
      printResult(io, f, { spiffeId: id.toString(), serial: minted.serial.toString(16), notAfter: minted.notAfter.toISOString(), chainFile, keyFile: keyFile ?? null }, () => [
        `minted ${id}, serial ${minted.serial.toString(16)}, expires ${minted.notAfter.toISOString()}`,
        `wrote ${chainFile}${keyFile ? ` and ${keyFile} (0600)` : ''}`,
      ]);
    }));
}
