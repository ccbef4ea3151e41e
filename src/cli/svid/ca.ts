import type { Command } from 'commander';
import path from 'node:path';
import { parseDurationSeconds } from '../../common/duration.js';
import { writeFileAtomic } from '../../common/fs/atomic.js';
import { createSpiffeBundle, spiffeBundleToJson } from '../../identity-plane/spiffe/bundle/index.js';
import { parseTrustDomainBounded } from '../../identity-plane/spiffe/id/index.js';
import { encodePem } from '../../identity-plane/spiffe/x509/index.js';
import { createSelfSignedCa, generateKeyPair, isKeyType } from '../../identity-plane/spiffe/mint/index.js';
import { randomBytes } from 'node:crypto';
import { printResult, usageError, type Io } from '../output.js';
import { withErrors } from '../run.js';

export function registerCaCommands(program: Command, io: Io): void {
  const ca = program.command('ca').description('stand-alone CA material for minting test SVIDs by hand');
  ca.command('init').description('create a self-signed X.509 CA and a JWT signing key, plus their SPIFFE bundle')
    .requiredOption('--trust-domain <td>', 'trust domain of the CA')
    .requiredOption('--out-dir <dir>', 'directory for ca.pem, ca.key.pem, jwt.key.pem and bundle.json')
    .option('--key-type <type>', 'ec-p256|ec-p384|rsa-2048', 'ec-p256')
    .option('--ttl <duration>', 'CA lifetime', '24h')
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: { trustDomain: string; outDir: string; keyType: string; ttl: string; json?: boolean }) => {
      if (!isKeyType(f.keyType)) throw usageError('--key-type must be ec-p256, ec-p384 or rsa-2048');
      const td = parseTrustDomainBounded(f.trustDomain);
      const ttlSeconds = parseDurationSeconds(f.ttl, '--ttl');
      const root = createSelfSignedCa({ trustDomain: td, keyType: f.keyType, ttlSeconds, now: new Date() });
      const jwtKey = generateKeyPair(f.keyType);
      const keyId = randomBytes(16).toString('hex');
      const dir = path.resolve(f.outDir);
      const files = { caCert: path.join(dir, 'ca.pem'), caKey: path.join(dir, 'ca.key.pem'), jwtKey: path.join(dir, 'jwt.key.pem'), bundle: path.join(dir, 'bundle.json') };
      writeFileAtomic(files.caKey, root.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
      writeFileAtomic(files.jwtKey, jwtKey.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
      writeFileAtomic(files.caCert, encodePem('CERTIFICATE', root.der), 0o644);
      const bundle = createSpiffeBundle({ trustDomain: td, x509Authorities: [root.certificate], jwtAuthorities: [{ keyId, publicKey: jwtKey.publicKey }], sequenceNumber: 1 });
      writeFileAtomic(files.bundle, spiffeBundleToJson(bundle, { space: 2 }) + '\n', 0o644);
      printResult(io, f, { trustDomain: td.name, jwtKeyId: keyId, notAfter: new Date(root.certificate.validTo).toISOString(), files }, () => [
        `created CA for ${td.name}, expires ${new Date(root.certificate.validTo).toISOString()}`,
        `  ${files.caCert}`, `  ${files.caKey} (0600)`, `  ${files.jwtKey} (0600, kid ${keyId})`, `  ${files.bundle}`,
      ]);
    }));
}
