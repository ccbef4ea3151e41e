import type { EntryMsg } from '../../server-api/messages.js';
import type { RegistrationEntry } from '../datastore/types.js';

/** A stored entry as node.proto and admin.proto carry it (times in Unix seconds, int64 as strings). */
export function entryMessage(e: RegistrationEntry): EntryMsg {
  return {
    id: e.id,
    spiffe_id: e.spiffeId,
    parent_id: e.parentId,
    selectors: e.selectors.map((s) => ({ type: s.type, value: s.value })),
    x509_svid_ttl: e.x509SvidTtl,
    federates_with: [...e.federatesWith],
    admin: e.admin,
    downstream: e.downstream,
    expires_at: String(e.expiresAt ? Math.floor(e.expiresAt.getTime() / 1000) : 0),
    dns_names: [...e.dnsNames],
    revision_number: String(e.revision),
    jwt_svid_ttl: e.jwtSvidTtl,
    hint: e.hint,
    created_at: String(Math.floor(e.createdAtMs / 1000)),
  };
}
