import { errorFactory, isSvidscopeError } from '../../../common/errors/catalog.js';
import { assertGeneratable, MAX_SPIFFE_ID_BYTES, parseSpiffeId, parseTrustDomainBounded, type SpiffeId, type TrustDomain } from '../../spiffe/id/index.js';

const fail = errorFactory('entry');

/** The fields an operator sets on a registration entry (the rest are set by the server). */
export interface EntryFields {
  spiffeId: string;
  parentId: string;
  selectors: { type: string; value: string }[];
  x509SvidTtl: number;
  jwtSvidTtl: number;
  dnsNames: string[];
  federatesWith: string[];
  admin: boolean;
  downstream: boolean;
  expiresAt: number;
  hint: string;
}

export interface EntryLimits {
  trustDomain: TrustDomain;
  /** The longest SVID TTL an entry may ask for, in seconds (the CA cannot sign past its own expiry anyway). */
  maxSvidTtlSeconds: number;
  /** Whether a bundle for this foreign trust domain is known (federates_with must name one). */
  hasFederatedBundle(td: string): boolean;
}

const SELECTOR_TYPE = /^[a-z0-9][a-z0-9_-]*$/;
const DNS_LABEL = /^(\*|[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)$/;
export const MAX_HINT_BYTES = 1024;

/** Parses "type:value" (the value may itself hold colons, e.g. `unix:path:/usr/bin/x` is type unix, value path:/usr/bin/x). */
export function parseSelector(text: string): { type: string; value: string } {
  const i = text.indexOf(':');
  if (i <= 0 || i === text.length - 1) throw fail('usage', `selector "${text}" must have the form type:value`);
  return { type: text.slice(0, i), value: text.slice(i + 1) };
}

/**
 * Checks an entry before it is written, naming the first broken rule. Storage-level rules
 * (duplicates, unknown ids) are the datastore's.
 */
export function validateEntry(e: EntryFields, limits: EntryLimits): { spiffeId: SpiffeId; parentId: SpiffeId } {
  const spiffeId = parseId(e.spiffeId, 'spiffe_id');
  const parentId = parseId(e.parentId, 'parent_id');
  for (const [name, id] of [['spiffe_id', spiffeId], ['parent_id', parentId]] as const) {
    if (!id.memberOf(limits.trustDomain)) throw fail('invalid-spiffe-id', `${name} ${id} is not in trust domain ${limits.trustDomain.name}`);
    assertGeneratable(id);
  }
  if (spiffeId.isRoot) throw fail('invalid-spiffe-id', 'spiffe_id must have a path (the trust domain ID is not a workload identity)');
  if (spiffeId.path === '/spire' || spiffeId.path.startsWith('/spire/')) {
    throw fail('invalid-spiffe-id', `spiffe_id ${spiffeId} is in the reserved /spire namespace`);
  }
  if (e.selectors.length === 0) throw fail('usage', 'an entry needs at least one selector');
  for (const s of e.selectors) {
    if (!SELECTOR_TYPE.test(s.type)) throw fail('usage', `selector type "${s.type}" must be lowercase letters, digits, "_" or "-"`);
    if (s.value === '') throw fail('usage', `selector ${s.type}: has an empty value`);
  }
  checkTtl(e.x509SvidTtl, 'x509_svid_ttl', limits.maxSvidTtlSeconds);
  checkTtl(e.jwtSvidTtl, 'jwt_svid_ttl', limits.maxSvidTtlSeconds);
  for (const name of e.dnsNames) {
    if (name.length > 253 || !name.split('.').every((label) => DNS_LABEL.test(label))) throw fail('usage', `dns name "${name}" is not a valid DNS name`);
  }
  for (const td of e.federatesWith) {
    let parsed: TrustDomain;
    try {
      parsed = parseTrustDomainBounded(td);
    } catch (err) {
      if (isSvidscopeError(err) && err.code === 'id-too-long') throw fail('id-too-long', `federates_with: ${err.message}`);
      throw fail('usage', `federates_with "${td}" is not a trust domain: ${(err as Error).message}`);
    }
    if (parsed.equals(limits.trustDomain)) throw fail('usage', `federates_with names the server's own trust domain ${td}`);
    if (!limits.hasFederatedBundle(parsed.name)) throw fail('usage', `federates_with names unknown trust domain ${parsed.name}: create the federation relationship or bundle first`);
  }
  if (!Number.isInteger(e.expiresAt) || e.expiresAt < 0) throw fail('usage', 'expires_at must be a Unix time in seconds, or 0 for never');
  if (Buffer.byteLength(e.hint) > MAX_HINT_BYTES) throw fail('usage', `hint is longer than ${MAX_HINT_BYTES} bytes`);
  return { spiffeId, parentId };
}

function parseId(value: string, field: string): SpiffeId {
  // Checked before parsing, and never echoed: an oversized value costs nothing and stays out of logs.
  const bytes = Buffer.byteLength(value);
  if (bytes > MAX_SPIFFE_ID_BYTES) throw fail('id-too-long', `${field} is ${bytes} bytes; the limit is ${MAX_SPIFFE_ID_BYTES}`);
  try {
    return parseSpiffeId(value);
  } catch (err) {
    throw fail('invalid-spiffe-id', `${field} "${value}" is not a SPIFFE ID: ${(err as Error).message}`);
  }
}

function checkTtl(ttl: number, field: string, max: number): void {
  if (!Number.isInteger(ttl) || ttl < 0) throw fail('ttl-invalid', `${field} must be a whole number of seconds, 0 for the default`);
  if (ttl > max) throw fail('ttl-invalid', `${field} ${ttl}s exceeds the maximum of ${max}s`);
}
