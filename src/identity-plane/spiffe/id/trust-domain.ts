import { isTrustDomainChar } from './charset.js';
import { errorFactory } from '../../../common/errors/catalog.js';
import { messages, spiffeIdError } from './errors.js';
import { parseSpiffeId, parseSpiffeIdBounded } from './spiffe-id.js';

/** The RFC 3986 host limit the SPIFFE-ID standard applies to trust domain names. */
export const MAX_TRUST_DOMAIN_BYTES = 255;

/** A trust domain name, validated. Compare with `equals` or by `name`. */
export class TrustDomain {
  /** @internal use parseTrustDomain */
  constructor(readonly name: string) {}
  /** The trust domain's own SPIFFE ID, `spiffe://<name>`. */
  get idString(): string {
    return 'spiffe://' + this.name;
  }
  equals(other: TrustDomain | undefined): boolean {
    return other !== undefined && other.name === this.name;
  }
  toString(): string {
    return this.name;
  }
  toJSON(): string {
    return this.name;
  }
}

/**
 * Parses a trust domain from its bare name ("example.org") or, when the input holds ":/",
 * from a SPIFFE ID string ("spiffe://example.org/path"), as SPIFFE libraries do.
 */
export function parseTrustDomain(input: string): TrustDomain {
  if (input.includes(':/')) return parseSpiffeId(input).trustDomain;
  validateTrustDomainName(input);
  return new TrustDomain(input);
}

export function validateTrustDomainName(name: string): void {
  if (name === '') throw spiffeIdError('missing-trust-domain', messages.missingTrustDomain);
  for (let i = 0; i < name.length; i++) {
    if (!isTrustDomainChar(name.charCodeAt(i))) throw spiffeIdError('bad-trust-domain-char', messages.badTrustDomainChar);
  }
}

/** For constants and tests only: throws on an invalid name. */
export function mustTrustDomain(input: string): TrustDomain {
  return parseTrustDomain(input);
}

/**
 * A trust domain that enters svidscope from outside (config, admin API, command line), held to the
 * standard's limit of 255 bytes (checked first, so an oversized input costs no parsing).
 */
export function parseTrustDomainBounded(input: string): TrustDomain {
  if (input.includes(':/')) return parseSpiffeIdBounded(input).trustDomain;
  const bytes = Buffer.byteLength(input);
  if (bytes > MAX_TRUST_DOMAIN_BYTES) throw errorFactory('spiffeid')('id-too-long', `trust domain is ${bytes} bytes; the limit is ${MAX_TRUST_DOMAIN_BYTES}`);
  return parseTrustDomain(input);
}
