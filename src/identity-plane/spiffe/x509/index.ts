// PEM and X.509 decoding shared by the identity plane and by the tools around it (probes, exporter,
// chaos, CLI): certificates and keys in PEM or DER, and the facts of a certificate decoded once.
export { decodePem, encodePem, isPem, scanPem, type PemBlock } from './pem.js';
export { certificateFacts, parseCertificates, parsePrivateKey, samePublicKey, splitDer, type CertificateFacts, type InputFormat, type KeyUsageBits, type ParseOptions } from './parse.js';
