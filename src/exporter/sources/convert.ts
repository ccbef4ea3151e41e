/**
 * Turning SPIFFE values into observations, and failures into the fixed error reasons. Shared by
 * every source so that the same certificate reads the same whichever way it arrived.
 */
import { createHash, type X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { errorCatalog, GrpcStatus, isSvidscopeError } from '../../common/errors/catalog.js';
import type { SpiffeBundle } from '../../identity-plane/spiffe/bundle/index.js';
import { isWorkloadApiError } from '../../identity-plane/workload-api/index.js';
import { readCertificateInfo } from '../../identity-plane/spiffe/mint/index.js';
import type { ErrorReason } from '../names.js';
import type { ObservedBundle, ObservedSvid, ObservedX509Authority } from '../state.js';

// The native accessors (OpenSSL) cost a fraction of an ASN.1 decode (certificateFacts), which
// matters for a files source over 100,000 SVIDs; second-granular notAfter is plenty for expiry.
export function notAfterMs(cert: X509Certificate): number {
  return Date.parse(cert.validTo);
}

/** The SPIFFE ID of a certificate: its first spiffe:// URI SAN (SPIFFE IDs cannot hold "," or quotes). */
export function spiffeIdOf(cert: X509Certificate): string | undefined {
  return /(?:^|, )URI:(spiffe:\/\/[^,\s"]+)/.exec(cert.subjectAltName ?? '')?.[1];
}

export function authorityOf(cert: X509Certificate | { der: Buffer; cert: X509Certificate }): ObservedX509Authority {
  const c = 'der' in cert ? cert.cert : cert;
  return { fingerprint: createHash('sha256').update(c.raw).digest('hex'), notAfterMs: notAfterMs(c), subjectKeyId: subjectKeyIdOf(c) };
}

/** A CA's subjectKeyIdentifier, lowercase hex (the key id a revocation names); the same minimal DER walk. */
function subjectKeyIdOf(cert: X509Certificate): string | undefined {
  try {
    return readCertificateInfo(cert.raw).subjectKeyId?.toString('hex');
  } catch {
    return undefined;
  }
}

/** `leaf` as the leaf of an X509-SVID: its SPIFFE ID, serial, validity and issuing authority. */
export function svidOf(key: string, leaf: X509Certificate, spiffeId?: string): ObservedSvid | undefined {
  const id = spiffeId ?? spiffeIdOf(leaf);
  if (!id) return undefined;
  return {
    key, spiffeId: id, trustDomain: trustDomainOf(id), serial: leaf.serialNumber.toLowerCase(), notAfterMs: notAfterMs(leaf),
    notBeforeMs: Date.parse(leaf.validFrom), authorityKeyId: authorityKeyIdOf(leaf),
  };
}

/** The leaf's authorityKeyIdentifier (the issuing CA's subjectKeyIdentifier), lowercase hex; a minimal DER walk, not a full decode. */
export function authorityKeyIdOf(leaf: X509Certificate): string | undefined {
  try {
    return readCertificateInfo(leaf.raw).authorityKeyId?.toString('hex');
  } catch {
    return undefined; // node parsed it, so this is an encoding our walker does not know: counted as "unknown"
  }
}

export function trustDomainOf(spiffeId: string): string {
  return spiffeId.replace(/^spiffe:\/\//, '').split('/')[0];
}

/** A parsed bundle as a source sees it; `parts` says which kinds of authority the source can see at all. */
export function bundleOf(b: SpiffeBundle, parts: { x509: boolean; jwt: boolean }): ObservedBundle {
  return {
    trustDomain: b.trustDomain.name,
    sequence: b.sequenceNumber,
    refreshHintSeconds: b.refreshHintSeconds,
    x509: parts.x509 ? b.x509Authorities.map(authorityOf) : undefined,
    jwtKeyIds: parts.jwt ? [...b.jwtAuthorities.keys()] : undefined,
  };
}

/** Maps any failure to the fixed reason set of `source_errors_total`. */
export function reasonOf(err: unknown): ErrorReason {
  if (isWorkloadApiError(err)) {
    switch (err.status) {
      case grpc.status.PERMISSION_DENIED:
        return 'permission_denied';
      case grpc.status.INVALID_ARGUMENT:
        return 'invalid_argument';
      case grpc.status.DEADLINE_EXCEEDED:
        return 'timeout';
      case grpc.status.UNAVAILABLE:
        // The client's codes: a stream that ended cleanly, or content it discarded (its own code, or the broken rule's).
        if (err.code === 'workload-api-stream-ended') return 'stream_ended';
        if (err.code === 'workload-api-response-invalid') return 'parse';
        return errorCatalog[err.code].grpc === GrpcStatus.UNAVAILABLE ? 'unavailable' : 'parse';
      default:
        return 'other';
    }
  }
  if (isSvidscopeError(err)) {
    switch (err.code) {
      case 'unavailable':
        return 'unavailable';
      case 'permission-denied':
      case 'unauthenticated':
        return 'permission_denied';
      case 'usage':
        return 'invalid_argument';
      case 'io-error':
        return 'io';
      default:
        return 'parse'; // the SPIFFE parsers' codes: malformed documents and certificates
    }
  }
  const code = String((err as { code?: unknown })?.code ?? '');
  if (code === 'ETIMEDOUT' || code === 'ABORT_ERR' || (err as Error)?.name === 'TimeoutError') return 'timeout';
  if (/^(ECONNREFUSED|ECONNRESET|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN)$/.test(code)) return 'unavailable';
  if (/^(ENOENT|EACCES|EISDIR|ENOTDIR|EMFILE|EPERM)$/.test(code)) return 'io';
  if (/CERT|SSL|TLS|ERR_TLS|UNABLE_TO|SELF_SIGNED|HOSTNAME/.test(code)) return 'tls';
  if (err instanceof SyntaxError) return 'parse';
  return 'other';
}
