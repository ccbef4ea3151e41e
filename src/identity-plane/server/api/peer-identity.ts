import { X509Certificate } from 'node:crypto';
import { TLSSocket, type PeerCertificate } from 'node:tls';
import { parseSpiffeId, type SpiffeId, type TrustDomain } from '../../spiffe/id/index.js';
import { certificateFacts } from '../../spiffe/x509/index.js';
import { SvidscopeError } from '../../../common/errors/catalog.js';

/** What an agent call's client certificate says: its agent SPIFFE ID, serial and expiry. */
export interface PeerAgent {
  readonly id: SpiffeId;
  /** Lowercase hex without leading zeros. */
  readonly serial: string;
  /** The certificate's notAfter (epoch ms). */
  readonly notAfterMs: number;
}

/** Default bound of PeerIdentityCache: one entry per live agent SVID of a large fleet, plus renewals. */
export const DEFAULT_PEER_IDENTITY_CACHE_SIZE = 32_768;

/**
 * The agent identity in a verified client certificate, decoded once per certificate rather than
 * once per call. An agent keeps one connection and one SVID for many calls, and decoding the
 * certificate (X509Certificate plus an ASN.1 walk for the SAN) cost as much server CPU as a
 * signature on every sync and issuance call. Keyed by the certificate's SHA-256 fingerprint,
 * which TLS already computed; bounded, oldest first out. Only the decoding is cached: whether
 * the agent is still attested, banned, or on this serial is decided per call from the agent view.
 */
export class PeerIdentityCache {
  private readonly byFingerprint = new Map<string, PeerAgent>();
  /** Per TLS connection: dies with the socket (a WeakMap), never outlives or crosses a connection. */
  private readonly byConnection = new WeakMap<TLSSocket, PeerAgent>();
  /** Calls answered from the connection's identity without asking TLS for the certificate (test and bench visibility). */
  connectionHits = 0;

  constructor(
    private readonly trustDomain: TrustDomain,
    private readonly maxSize = DEFAULT_PEER_IDENTITY_CACHE_SIZE,
  ) {}

  get size(): number {
    return this.byFingerprint.size;
  }

  /**
   * The identity of a gRPC call's caller. grpc-js's `getAuthContext()` asks TLS for the peer
   * certificate as an object on every call (Node's getPeerCertificate: ≈ 100 µs, a fifth of the
   * server's work per sync at fleet size), though a connection's client certificate cannot change:
   * TLS 1.3 has no renegotiation. So the identity is kept per TLS 1.3 connection. grpc-js does
   * not expose the connection; `connectionOf` reaches it through the call's HTTP/2 stream
   * (grpc-js 1.14 internals, checked by test/server/peer-identity-connection.test.ts) and falls
   * back to the auth context, per call, when it cannot.
   */
  resolveCall(call: { getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null }): PeerAgent {
    const socket = connectionOf(call);
    if (socket?.authorized && socket.getProtocol() === 'TLSv1.3') {
      const known = this.byConnection.get(socket);
      if (known) {
        this.connectionHits++;
        return known;
      }
      const agent = this.resolve(socket.getPeerCertificate());
      this.byConnection.set(socket, agent);
      return agent;
    }
    return this.resolve(call.getAuthContext()?.sslPeerCertificate ?? undefined);
  }

  /** The caller's agent identity; UNAUTHENTICATED when the certificate names no agent of this trust domain. */
  resolve(peer: PeerCertificate | undefined): PeerAgent {
    if (!peer?.raw) throw new SvidscopeError('unauthenticated', 'an agent X.509-SVID signed by this trust domain is required');
    const key = peer.fingerprint256;
    const known = key ? this.byFingerprint.get(key) : undefined;
    if (known) return known;
    const agent = this.decode(peer.raw);
    if (key) {
      if (this.byFingerprint.size >= this.maxSize) this.byFingerprint.delete(this.byFingerprint.keys().next().value as string);
      this.byFingerprint.set(key, agent);
    }
    return agent;
  }

  private decode(der: Buffer): PeerAgent {
    const cert = new X509Certificate(der);
    const uris = singleUriSan(cert.subjectAltName) ?? certificateFacts(cert).uriSans;
    let id: SpiffeId;
    try {
      id = parseSpiffeId(uris[0] ?? '');
    } catch {
      throw new SvidscopeError('unauthenticated', 'the client certificate holds no valid SPIFFE ID');
    }
    if (uris.length !== 1 || !id.memberOf(this.trustDomain) || !id.path.startsWith('/spire/agent/')) {
      throw new SvidscopeError('unauthenticated', `${id} is not an agent of trust domain ${this.trustDomain.name}`);
    }
    return { id, serial: normalSerial(cert.serialNumber), notAfterMs: Date.parse(cert.validTo) };
  }
}

/**
 * The one URI SAN of an agent SVID read from OpenSSL's SAN text, when that text is exactly one
 * unquoted URI entry; undefined otherwise, and the ASN.1 walk decides. Node quotes an entry that
 * holds a comma, quote or other special character, and a SPIFFE ID has none of them, so the text
 * cannot hide a second entry. The walk cost ≈ 1 ms per certificate: 10 s of the server's event
 * loop when 10,000 agents connect together.
 */
function singleUriSan(text: string | undefined): string[] | undefined {
  const m = /^URI:(spiffe:\/\/[A-Za-z0-9._\-/]+)$/.exec(text ?? '');
  return m ? [m[1]] : undefined;
}

/** A certificate serial as lowercase hex without leading zeros, however it was written. */
export function normalSerial(hex: string): string {
  return /^[0-9a-fA-F]+$/.test(hex) ? BigInt(`0x${hex}`).toString(16) : hex.toLowerCase();
}

/** The TLS connection a grpc-js server call arrived on, when grpc-js's shape allows reaching it. */
function connectionOf(call: object): TLSSocket | undefined {
  const socket = (call as { call?: { stream?: { session?: { socket?: unknown } } } }).call?.stream?.session?.socket;
  return socket instanceof TLSSocket ? socket : undefined;
}
