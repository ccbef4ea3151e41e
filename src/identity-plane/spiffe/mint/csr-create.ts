/**
 * Creates PKCS#10 certification requests (RFC 2986). Agents send one per SVID: the key stays on
 * the agent and only the CSR crosses the wire. Node has no CSR builder, so it is encoded here
 * from the same DER parts as the certificate minter.
 */
import { sign, type KeyObject } from 'node:crypto';
import { bitString, integer, sequence, tlv } from './der.js';
import { EMPTY_NAME, spkiOf } from './cert-parts.js';
import { signatureAlgorithmFor } from './keys.js';

/** DER of a CSR for `publicKey`, signed with `privateKey`; the subject is empty (SPIFFE IDs come from the entry, not the CSR). */
export function createCsr(privateKey: KeyObject, publicKey: KeyObject): Buffer {
  const info = sequence(integer(0), EMPTY_NAME, spkiOf(publicKey).spki, tlv(0xa0));
  const alg = signatureAlgorithmFor(privateKey);
  return sequence(info, alg.algorithmIdentifier, bitString(sign(alg.hash, info, privateKey)));
}
