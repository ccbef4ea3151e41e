import { X509Certificate } from 'node:crypto';
import { certificateFacts } from '../../spiffe/x509/index.js';
import type { TaintedAuthoritiesMsg } from '../../server-api/messages.js';

/**
 * The key identifiers that name the authorities of a chain (leaf first): the leaf's authority key
 * identifier (its signer) first, then each further certificate's subject and authority key
 * identifiers, so every certificate of the chain and the signer of its last one (an upstream root
 * outside the chain) are named. Computed once per SVID when it is received, so taint checks and the
 * per-authority gauges are set lookups, not certificate parsing. The first element is '' when the
 * leaf names no signer, and a further '' stands for each intermediate that names none (then
 * {@link TaintedAuthorities.chainIsTainted} falls back to the certificates).
 */
export function chainAuthorityIds(chain: readonly X509Certificate[]): string[] {
  const ids = [chain.length ? (certificateFacts(chain[0]).authorityKeyId ?? '') : ''];
  for (const cert of chain.slice(1)) {
    const facts = certificateFacts(cert);
    if (facts.subjectKeyId) ids.push(facts.subjectKeyId);
    ids.push(facts.authorityKeyId ?? '');
  }
  return ids;
}

/**
 * The authorities of the agent's trust domain the server marked tainted, as the agent matches
 * them: X.509 CAs by subject key identifier (the authority key identifier of what they signed),
 * JWT keys by key id. Built from each sync's GetBundles answer; a server that predates the field
 * sends none, which is the same as nothing tainted.
 */
export class TaintedAuthorities {
  static readonly none = new TaintedAuthorities([], []);

  readonly x509KeyIds: ReadonlySet<string>;
  readonly jwtKeyIds: ReadonlySet<string>;

  private constructor(
    private readonly x509: readonly X509Certificate[],
    jwtKeyIds: readonly string[],
  ) {
    this.x509KeyIds = new Set(x509.map((c) => certificateFacts(c).subjectKeyId).filter((id): id is string => id !== undefined));
    this.jwtKeyIds = new Set(jwtKeyIds);
  }

  static fromMessage(msg: TaintedAuthoritiesMsg | null | undefined): TaintedAuthorities {
    const certs: X509Certificate[] = [];
    for (const der of msg?.x509_authorities ?? []) {
      try {
        certs.push(new X509Certificate(der));
      } catch {
        // An unparsable entry names nothing this agent could match; the others still count.
      }
    }
    const jwt = (msg?.jwt_key_ids ?? []).filter((id) => id !== '');
    return certs.length === 0 && jwt.length === 0 ? TaintedAuthorities.none : new TaintedAuthorities(certs, jwt);
  }

  get empty(): boolean {
    return this.x509.length === 0 && this.jwtKeyIds.size === 0;
  }

  /** A stable description for logs and change detection. */
  get description(): string {
    return [...[...this.x509KeyIds].map((id) => `x509:${id}`), ...[...this.jwtKeyIds].map((id) => `jwt:${id}`)].sort().join(',');
  }

  /**
   * Whether a chain (leaf first) was signed by, or passes through, a tainted CA. `ids` are the
   * chain's {@link chainAuthorityIds}. Certificates without key identifiers are compared with the
   * tainted CA certificates directly: byte for byte, or the leaf's signature checked with their keys.
   */
  chainIsTainted(ids: readonly string[], chain: readonly Buffer[]): boolean {
    if (this.x509.length === 0) return false;
    for (const id of ids) if (id && this.x509KeyIds.has(id)) return true;
    // Every certificate named its signer: the ids above are the whole answer.
    if (!ids.includes('') || chain.length === 0) return false;
    if (chain.slice(1).some((der) => this.x509.some((ca) => ca.raw.equals(der)))) return true;
    // Some certificate names no signer: check its signature with each tainted CA's key.
    return chain.some((der) => {
      const cert = new X509Certificate(der);
      return !certificateFacts(cert).authorityKeyId && this.x509.some((ca) => !ca.raw.equals(der) && cert.checkIssued(ca) && cert.verify(ca.publicKey));
    });
  }
}
