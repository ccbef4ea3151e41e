/**
 * X509-SVID minting against the signature it must make.
 *
 * Baseline: raw ECDSA P-256 `crypto.sign` over a 300-byte buffer (about a TBSCertificate's size),
 * measured in the same process and interleaved with the minting rounds, so CPU frequency drift
 * hits both sides alike. The ratio minted/raw is the figure that matters (target ≥ 0.5).
 * A general-purpose generator (@peculiar/x509) is measured too, to show what templating saves.
 *
 * Everything runs synchronously on the main thread, i.e. on one core; pin with
 * `taskset -c 0 npm run bench -- mint` to rule out migration noise.
 */
import { randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { parseSpiffeId, type SpiffeId } from '../src/identity-plane/spiffe/id/index.js';
import { createCsr } from '../src/identity-plane/spiffe/mint/csr-create.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair, parseCsr } from '../src/identity-plane/spiffe/mint/index.js';
import type { BenchContext, BenchFigures } from './run.js';
import { ecdsaKeyPair } from '../test/support/webcrypto-keys.js';

// Short alternating rounds: a burst of load from another process lands on one pair, and the
// median of the per-round ratios discards it. 6 × 0.5 s = 3 s per series.
const ROUND_SECONDS = 0.5;
const ROUNDS = 6;
const BASELINE_ITERATIONS = 300;

/** Runs `fn` in batches until `seconds` have passed; returns operations per second. */
function opsPerSecond(fn: () => void, seconds: number): number {
  const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  const start = process.hrtime.bigint();
  let ops = 0;
  let now = start;
  while (now < deadline) {
    for (let i = 0; i < 64; i++) fn();
    ops += 64;
    now = process.hrtime.bigint();
  }
  return ops / (Number(now - start) / 1e9);
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export default async function mintBench({ log }: BenchContext): Promise<BenchFigures> {
  const now = new Date();
  const ca = createSelfSignedCa({ trustDomain: 'example.org', keyType: 'ec-p256', ttlSeconds: 86_400, now });
  const minter = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey });

  // Distinct workload keys and IDs, so no per-key work can be cached between calls unnoticed.
  const keys: KeyObject[] = Array.from({ length: 64 }, () => generateKeyPair('ec-p256').publicKey);
  const ids: SpiffeId[] = Array.from({ length: 16 }, (_, i) => parseSpiffeId(`spiffe://example.org/ns/bench/sa/workload-${i}`));
  let k = 0;
  const mintOne = () => {
    k++;
    return minter.mint({ id: ids[k & 15], publicKey: keys[k & 63], ttlSeconds: 3600, now: new Date() });
  };
  // The server's path: keys that came out of parseCsr, whose SPKI bytes are already known.
  const csrKeys: KeyObject[] = Array.from({ length: 64 }, () => {
    const pair = generateKeyPair('ec-p256');
    return parseCsr(createCsr(pair.privateKey, pair.publicKey)).publicKey;
  });
  const mintFromCsrKey = () => {
    k++;
    return minter.mint({ id: ids[k & 15], publicKey: csrKeys[k & 63], ttlSeconds: 3600, now: new Date() });
  };

  // The figures mean nothing if the output is wrong: check one SVID before timing.
  const sample = mintOne();
  if (!new X509Certificate(sample.der).verify(ca.publicKey)) throw new Error('minted SVID does not verify against the CA');
  log(`minted SVID size: ${sample.der.length} bytes (TBS signed once per SVID)`);

  const tbsSized = randomBytes(300);
  const rawSign = () => sign('sha256', tbsSized, ca.privateKey);

  // Warm up both paths so the JIT and OpenSSL's caches are settled before timing.
  opsPerSecond(rawSign, 0.3);
  opsPerSecond(mintOne, 0.3);
  opsPerSecond(mintFromCsrKey, 0.3);

  const raw: number[] = [];
  const minted: number[] = [];
  const mintedCsr: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    raw.push(opsPerSecond(rawSign, ROUND_SECONDS));
    minted.push(opsPerSecond(mintOne, ROUND_SECONDS));
    mintedCsr.push(opsPerSecond(mintFromCsrKey, ROUND_SECONDS));
    log(`round ${r + 1}: raw ECDSA P-256 ${raw[r].toFixed(0)} signs/s, minted ${minted[r].toFixed(0)} SVIDs/s (${mintedCsr[r].toFixed(0)} from CSR keys)`);
  }
  const rawSignsPerSecond = median(raw);
  const mintedSvidsPerSecond = median(minted);
  const mintedFromCsrKeysPerSecond = median(mintedCsr);
  const ratio = median(minted.map((m, i) => m / raw[i]));
  const ratioCsrKeys = median(mintedCsr.map((m, i) => m / raw[i]));

  const generatorPerSecond = await generalPurposeBaseline();

  log('');
  log(`raw ECDSA P-256 sign:            ${rawSignsPerSecond.toFixed(0).padStart(8)} signs/s`);
  log(`templated X509-SVID mint:        ${mintedSvidsPerSecond.toFixed(0).padStart(8)} SVIDs/s`);
  log(`ratio minted / raw:              ${ratio.toFixed(3).padStart(8)}   (target >= 0.5; median of paired rounds)`);
  log(`  same, keys from parsed CSRs:     ${mintedFromCsrKeysPerSecond.toFixed(0).padStart(8)} SVIDs/s, ratio ${ratioCsrKeys.toFixed(3)}`);
  log(`@peculiar/x509 generator:        ${generatorPerSecond.toFixed(0).padStart(8)} certs/s`);
  log(`speedup over the generator:      ${(mintedSvidsPerSecond / generatorPerSecond).toFixed(1).padStart(8)}x`);

  return {
    rawEcdsaP256SignsPerSecond: Math.round(rawSignsPerSecond),
    mintedSvidsPerSecond: Math.round(mintedSvidsPerSecond),
    ratio: Math.round(ratio * 1000) / 1000,
    mintedFromCsrKeysPerSecond: Math.round(mintedFromCsrKeysPerSecond),
    ratioCsrKeys: Math.round(ratioCsrKeys * 1000) / 1000,
    targetRatio: 0.5,
    meetsTarget: ratio >= 0.5,
    generalPurposeCertsPerSecond: Math.round(generatorPerSecond),
    speedupOverGenerator: Math.round((mintedSvidsPerSecond / generatorPerSecond) * 10) / 10,
    svidBytes: sample.der.length,
  };
}


/** The same leaf built by @peculiar/x509's X509CertificateGenerator (async, WebCrypto). */
async function generalPurposeBaseline(): Promise<number> {
  await import('reflect-metadata'); // @peculiar/x509 2.x needs the Reflect metadata polyfill
  const x509 = await import('@peculiar/x509');
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const caKeys = await ecdsaKeyPair('P-256', false);
  const leafKeys = await ecdsaKeyPair();
  const usages = x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.keyAgreement;
  const createOne = async () => {
    const notBefore = new Date(Date.now() - 10_000);
    return x509.X509CertificateGenerator.create({
      serialNumber: randomBytes(16).toString('hex').replace(/^[89a-f]/, '1'),
      issuer: 'C=US, O=SPIFFE',
      subject: 'C=US, O=SPIRE',
      notBefore,
      notAfter: new Date(notBefore.getTime() + 3_600_000),
      signingAlgorithm: alg,
      publicKey: leafKeys.publicKey,
      signingKey: caKeys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(usages, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        await x509.SubjectKeyIdentifierExtension.create(leafKeys.publicKey),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://example.org/ns/bench/sa/workload' }]),
      ],
    });
  };
  for (let i = 0; i < 20; i++) await createOne(); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < BASELINE_ITERATIONS; i++) await createOne();
  return BASELINE_ITERATIONS / (Number(process.hrtime.bigint() - start) / 1e9);
}
