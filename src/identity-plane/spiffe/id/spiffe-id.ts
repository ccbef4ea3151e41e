import { errorFactory } from '../../../common/errors/catalog.js';
import { isTrustDomainChar } from './charset.js';
import { messages, spiffeIdError } from './errors.js';
import { joinPathSegments, validatePath } from './path.js';
import { MAX_TRUST_DOMAIN_BYTES, TrustDomain } from './trust-domain.js';

const SCHEME_PREFIX = 'spiffe://';
/** Implementations must accept IDs up to this many bytes and should not generate longer ones. */
export const MAX_SPIFFE_ID_BYTES = 2048;

/**
 * A SPIFFE ID: the original string and where its path starts. Parsing is strict in the way
 * go-spiffe and SPIRE are: lowercase scheme and trust domain, no percent-encoding, no query,
 * fragment, port or userinfo (they fail as bad characters).
 */
export class SpiffeId {
  private td: TrustDomain | undefined;
  /** @internal use parseSpiffeId */
  constructor(
    private readonly value: string,
    private readonly pathIndex: number,
  ) {}
  get trustDomain(): TrustDomain {
    this.td ??= new TrustDomain(this.value.slice(SCHEME_PREFIX.length, this.pathIndex));
    return this.td;
  }
  get path(): string {
    return this.value.slice(this.pathIndex);
  }
  /** True for the trust domain's own ID, which has no path. */
  get isRoot(): boolean {
    return this.pathIndex === this.value.length;
  }
  memberOf(td: TrustDomain): boolean {
    return this.trustDomain.name === td.name;
  }
  equals(other: SpiffeId | undefined): boolean {
    return other !== undefined && other.value === this.value;
  }
  toString(): string {
    return this.value;
  }
  toJSON(): string {
    return this.value;
  }
}

export function parseSpiffeId(input: string): SpiffeId {
  if (input === '') throw spiffeIdError('empty', messages.empty);
  if (!input.startsWith(SCHEME_PREFIX)) throw spiffeIdError('wrong-scheme', messages.wrongScheme);
  let pathIndex = SCHEME_PREFIX.length;
  for (; pathIndex < input.length; pathIndex++) {
    const c = input.charCodeAt(pathIndex);
    if (c === 0x2f) break;
    if (!isTrustDomainChar(c)) throw spiffeIdError('bad-trust-domain-char', messages.badTrustDomainChar);
  }
  if (pathIndex === SCHEME_PREFIX.length) throw spiffeIdError('missing-trust-domain', messages.missingTrustDomain);
  validatePath(input.slice(pathIndex));
  return new SpiffeId(input, pathIndex);
}

/** For constants and tests only: throws on an invalid ID. */
export function mustSpiffeId(input: string): SpiffeId {
  return parseSpiffeId(input);
}

/** Builds `spiffe://<td><path>` from a trust domain and a path that is validated. */
export function spiffeIdFromPath(td: TrustDomain, path: string): SpiffeId {
  validatePath(path);
  return new SpiffeId(SCHEME_PREFIX + td.name + path, SCHEME_PREFIX.length + td.name.length);
}

/** Builds `spiffe://<td>/<seg1>/<seg2>…`, validating each segment. */
export function spiffeIdFromSegments(td: TrustDomain, segments: readonly string[]): SpiffeId {
  const path = joinPathSegments(segments);
  return new SpiffeId(SCHEME_PREFIX + td.name + path, SCHEME_PREFIX.length + td.name.length);
}

const generationError = errorFactory('spiffeid');

/**
 * The stricter check for IDs this project creates (entries, agents): parsing accepts any length,
 * as the standard requires of readers, but the standard's size limits apply to what we generate.
 */
export function assertGeneratable(id: SpiffeId): void {
  const bytes = Buffer.byteLength(id.toString());
  if (bytes > MAX_SPIFFE_ID_BYTES) throw generationError('id-too-long', `SPIFFE ID is ${bytes} bytes; the limit is ${MAX_SPIFFE_ID_BYTES}`);
  if (id.trustDomain.name.length > MAX_TRUST_DOMAIN_BYTES) {
    throw generationError('id-too-long', `trust domain is ${id.trustDomain.name.length} bytes; the limit is ${MAX_TRUST_DOMAIN_BYTES}`);
  }
}

/**
 * Parses an ID that enters svidscope from outside (admin API, config, command line, Workload API
 * requests) and holds it to the standard's size limits: 2048 bytes, trust domain 255. Readers of
 * SVIDs and tokens use `parseSpiffeId`, which accepts any length as the standard asks of them.
 * The length is checked before the characters, so an oversized input costs no parsing.
 */
export function parseSpiffeIdBounded(input: string): SpiffeId {
  const bytes = Buffer.byteLength(input);
  if (bytes > MAX_SPIFFE_ID_BYTES) throw generationError('id-too-long', `SPIFFE ID is ${bytes} bytes; the limit is ${MAX_SPIFFE_ID_BYTES}`);
  const id = parseSpiffeId(input);
  assertGeneratable(id);
  return id;
}
