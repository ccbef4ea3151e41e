/**
 * Chains built to make X.509 path building expensive, as a hostile peer would serve them. Made with
 * @peculiar/x509 because they need what the project's minter never produces: many CA certificates
 * with one subject, chosen keys and issuers, and expired copies.
 */
import { KeyObject, webcrypto, X509Certificate } from 'node:crypto';
import { createSpiffeBundle, spiffeBundleToJson } from '../../../src/identity-plane/spiffe/bundle/index.js';
import { encodePem } from '../../../src/identity-plane/spiffe/x509/index.js';
import { mustTrustDomain } from '../../../src/identity-plane/spiffe/id/index.js';
import { ecdsaKeyPair } from '../../support/webcrypto-keys.js';

await import('reflect-metadata'); // @peculiar/x509 2.x needs the Reflect metadata polyfill
const x509 = await import('@peculiar/x509');
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;
const SUBJECT = 'CN=loop';

type Keys = webcrypto.CryptoKeyPair;

export interface HostileChain {
  /** Leaf first, then the intermediates in the order they are presented. */
  readonly chain: X509Certificate[];
  /** The bundle authority (`CN=root`), also the only way any path can end. */
  readonly root: X509Certificate;
  readonly leafKeyPem: string;
  /** PEM of the presented chain, for a TLS server or a file. */
  readonly chainPem: string;
  /** A SPIFFE bundle document of `trustDomain` holding only the root. */
  readonly bundleJson: string;
  readonly bundlePem: string;
}

const newKeys = () => ecdsaKeyPair() as Promise<Keys>;
let serial = 1;

async function caCert(subject: string, issuer: string, keys: Keys, signer: Keys, from: Date, to: Date): Promise<X509Certificate> {
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16).padStart(2, '0'),
    subject, issuer, notBefore: from, notAfter: to, signingAlgorithm: ALG, publicKey: keys.publicKey, signingKey: signer.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  return new X509Certificate(Buffer.from(cert.rawData));
}

async function leafCert(id: string, keys: Keys, signer: Keys, now: Date): Promise<X509Certificate> {
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (serial++).toString(16).padStart(2, '0'),
    subject: 'CN=leaf', issuer: SUBJECT, notBefore: new Date(now.getTime() - DAY), notAfter: new Date(now.getTime() + DAY),
    signingAlgorithm: ALG, publicKey: keys.publicKey, signingKey: signer.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id }]),
    ],
  });
  return new X509Certificate(Buffer.from(cert.rawData));
}

async function finish(trustDomain: string, leaf: X509Certificate, leafKeys: Keys, intermediates: X509Certificate[], root: X509Certificate): Promise<HostileChain> {
  const chain = [leaf, ...intermediates];
  const bundle = createSpiffeBundle({ trustDomain: mustTrustDomain(trustDomain), x509Authorities: [root] });
  return {
    chain, root,
    leafKeyPem: KeyObject.from(leafKeys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string,
    chainPem: chain.map((c) => encodePem('CERTIFICATE', c.raw)).join(''),
    bundleJson: spiffeBundleToJson(bundle),
    bundlePem: encodePem('CERTIFICATE', root.raw),
  };
}

/**
 * The chain of the report: a leaf and 11 intermediates with one subject and one key, each signed
 * by that key, so each can sign every other and the paths through them number 11!. With
 * `reachable`, the last copy is signed by the root instead and the other ten are expired: a
 * validator that tries every path meets a valid one only after all the expired ones.
 */
export async function loopChain(opts: { id: string; trustDomain: string; now: Date; reachable: boolean }): Promise<HostileChain> {
  const { now } = opts;
  const [rootKeys, loopKeys, leafKeys] = await Promise.all([newKeys(), newKeys(), newKeys()]);
  const root = await caCert('CN=root', 'CN=root', rootKeys, rootKeys, new Date(now.getTime() - 10 * DAY), new Date(now.getTime() + 10 * DAY));
  const copies: X509Certificate[] = [];
  for (let i = 0; i < 11; i++) {
    const last = i === 10;
    const expired = opts.reachable && !last;
    const from = new Date(now.getTime() - (expired ? 9 : 2) * DAY);
    const to = new Date(now.getTime() + (expired ? -8 : 2) * DAY);
    copies.push(opts.reachable && last
      ? await caCert(SUBJECT, 'CN=root', loopKeys, rootKeys, from, to)
      : await caCert(SUBJECT, SUBJECT, loopKeys, loopKeys, from, to));
  }
  return finish(opts.trustDomain, await leafCert(opts.id, leafKeys, loopKeys, now), leafKeys, copies, root);
}

/**
 * A chain that stays within the chain-length limit (16) and defeats the collapsing of copies:
 * 14 expired intermediates with one subject and 14 different keys, each signed by the next one's
 * key, then one valid intermediate signed by the root with the first one's key. Every intermediate
 * is a candidate issuer of every certificate (one subject), so building the path costs about 105
 * signature checks before the valid one is tried. TLS (OpenSSL) picks the valid intermediate at
 * once, so the chain passes the handshake and reaches svidscope's own verification.
 */
export async function signatureBudgetChain(opts: { id: string; trustDomain: string; now: Date }): Promise<HostileChain> {
  const { now } = opts;
  const keys = await Promise.all(Array.from({ length: 16 }, () => newKeys()));
  const [rootKeys, leafKeys, ...k] = keys; // k[0..13]: the intermediates' keys
  const root = await caCert('CN=root', 'CN=root', rootKeys, rootKeys, new Date(now.getTime() - 10 * DAY), new Date(now.getTime() + 10 * DAY));
  const expiredFrom = new Date(now.getTime() - 9 * DAY);
  const expiredTo = new Date(now.getTime() - 8 * DAY);
  const extra = await newKeys(); // signs the last expired copy: a key nobody presents
  const ys: X509Certificate[] = [];
  for (let i = 0; i < 14; i++) ys.push(await caCert(SUBJECT, SUBJECT, k[i], i < 13 ? k[i + 1] : extra, expiredFrom, expiredTo));
  const valid = await caCert(SUBJECT, 'CN=root', k[0], rootKeys, new Date(now.getTime() - 2 * DAY), new Date(now.getTime() + 2 * DAY));
  return finish(opts.trustDomain, await leafCert(opts.id, leafKeys, k[0], now), leafKeys, [...ys, valid], root);
}
