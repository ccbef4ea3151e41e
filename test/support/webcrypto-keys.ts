import { generateKeyPairSync, webcrypto } from 'node:crypto';

/**
 * An ECDSA key pair as WebCrypto keys, generated synchronously and imported, for the tests that
 * build certificates with @peculiar/x509.
 *
 * Not `subtle.generateKey`: on Node.js 20 its key generation job can be collected by a GC that
 * runs while the same key is exported to JWK (as @peculiar/x509 does), and the job's destructor
 * then waits for the key's lock, which the export holds: the thread deadlocks. A vitest worker
 * hung so in `KeyGenJob::~KeyGenJob` under `KeyObjectHandle::ExportJWK` (gdb), holding CI until
 * its limit. Keys that were imported never had a generation job.
 */
export async function ecdsaKeyPair(namedCurve: 'P-256' | 'P-384' = 'P-256', extractable = true): Promise<webcrypto.CryptoKeyPair> {
  const curve = namedCurve === 'P-256' ? 'prime256v1' : 'secp384r1';
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
  const alg = { name: 'ECDSA', namedCurve };
  return {
    privateKey: await webcrypto.subtle.importKey('pkcs8', privateKey.export({ type: 'pkcs8', format: 'der' }), alg, extractable, ['sign']),
    // A public key is always extractable in WebCrypto.
    publicKey: await webcrypto.subtle.importKey('spki', publicKey.export({ type: 'spki', format: 'der' }), alg, true, ['verify']),
  };
}
