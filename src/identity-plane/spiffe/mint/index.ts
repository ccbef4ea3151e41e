export {
  createX509SvidMinter,
  DEFAULT_SVID_SUBJECT,
  NOT_BEFORE_BACKDATE_SECONDS,
  type MintRequest,
  type MintedX509Svid,
  type X509SvidMinter,
  type X509SvidMinterConfig,
} from './x509svid-template.js';
export { parseCsr, type ParsedCsr } from './csr.js';
export {
  createSelfSignedCa,
  signIntermediateCa,
  DEFAULT_CA_SUBJECT,
  type CaCertificate,
  type SelfSignedCa,
  type SelfSignedCaOptions,
  type IntermediateCaOptions,
} from './ca.js';
export { generateKeyPair, generateWorkloadKey, privateKeyPkcs8, keyTypeOf, isKeyType, keyTypes, DEFAULT_KEY_TYPE, type KeyType, type KeyPair, type WorkloadKey } from './keys.js';
export type { DistinguishedName, NameAttribute } from './cert-parts.js';
export { createCsr } from './csr-create.js';
export { readCertificateInfo, type CertificateInfo } from './cert-parts.js';
