import { existsSync, rmSync } from 'node:fs';
import { isSvidscopeError, SvidscopeError } from '../../common/errors/catalog.js';
import { connectAdmin } from '../../identity-plane/server-api/admin-client.js';
import type { FederationRelationshipCopy } from '../ledger.js';
import { findPids, isAlive, signal, waitFor } from '../proc.js';
import { relayMode } from '../relay.js';

/** Rollback steps of the bundle-endpoint, issuance-storm, authority-withhold and relayed network faults (played by the ledger); all idempotent. */

const same = (a: FederationRelationshipCopy, b: Partial<FederationRelationshipCopy>) =>
  a.bundle_endpoint_url === (b.bundle_endpoint_url ?? '') && a.bundle_endpoint_profile === (b.bundle_endpoint_profile ?? '')
  && (a.endpoint_spiffe_id ?? '') === (b.endpoint_spiffe_id ?? '') && (a.web_ca_bundle ?? '') === (b.web_ca_bundle ?? '');

/** Puts a federation relationship back as it was (nothing to do when it already is), then refreshes it. */
export async function restoreFederation(s: { adminSocket: string; relationship: FederationRelationshipCopy; bundle: string | null }): Promise<string> {
  const td = s.relationship.trust_domain;
  const admin = connectAdmin(s.adminSocket);
  try {
    let current: { relationship: Partial<FederationRelationshipCopy> } | undefined;
    try {
      current = await admin.call('GetFederation', { trust_domain: td });
    } catch (err) {
      if (!(isSvidscopeError(err) && err.code === 'not-found')) throw err;
    }
    if (current && same(s.relationship, current.relationship)) return `federation with ${td} already points at ${s.relationship.bundle_endpoint_url}`;
    if (current) await admin.call('DeleteFederation', { trust_domain: td, keep_bundle: true });
    // The bootstrap bundle only wins over a stored one with a lower sequence (the server keeps the newer).
    await admin.call('CreateFederation', { relationship: s.relationship, bundle: s.bundle === null ? undefined : Buffer.from(s.bundle, 'utf8') });
    const refreshed = await admin.call<{ last_error?: string }>('RefreshFederation', { trust_domain: td }).then((f) => f.last_error ? `refresh failed: ${f.last_error}` : 'refreshed', (err: Error) => `refresh failed: ${err.message}`);
    return `restored federation with ${td} (${s.relationship.bundle_endpoint_url}); ${refreshed}`;
  } finally {
    admin.close();
  }
}

/** Deletes every entry of each SPIFFE ID (none left: nothing to do). */
export async function deleteEntries(s: { adminSocket: string; spiffeIds: string[] }): Promise<string> {
  const admin = connectAdmin(s.adminSocket);
  try {
    let deleted = 0;
    for (const id of s.spiffeIds) {
      const { entries } = await admin.call<{ entries: { id: string }[] }>('ListEntries', { filter: { by_spiffe_id: id } });
      for (const e of entries) {
        await admin.call('DeleteEntry', { id: e.id }).catch((err: unknown) => {
          if (!(isSvidscopeError(err) && err.code === 'not-found')) throw err;
        });
        deleted++;
      }
    }
    return `deleted ${deleted} entries (${s.spiffeIds.length} SPIFFE IDs)`;
  } finally {
    admin.close();
  }
}

/** SIGKILL every process carrying `marker` as an exact argv element. */
export async function killMarked(s: { marker: string }): Promise<string> {
  const pids = findPids((argv) => argv.includes(s.marker));
  for (const pid of pids) signal(pid, 'SIGKILL');
  if (!(await waitFor(() => pids.every((p) => !isAlive(p)), 10_000))) throw new SvidscopeError('chaos-fault-failed', `processes ${pids.join(', ')} (${s.marker}) did not die`);
  return pids.length ? `killed ${pids.length} processes (${s.marker})` : `no process left with ${s.marker}`;
}

export function removePath(s: { path: string }): string {
  if (!existsSync(s.path)) return `${s.path} already gone`;
  rmSync(s.path, { recursive: true, force: true });
  return `removed ${s.path}`;
}

/**
 * Publishes a withheld key in the trust bundle again (WithholdAuthority withhold=false). The key id
 * was read before the fault, so a rotation since does not matter; a key that no longer exists
 * (pruned after expiry) has nothing to publish. Publishing a published key is a no-op server-side.
 */
export async function publishAuthority(s: { adminSocket: string; kind: 'x509' | 'jwt'; keyId: string }): Promise<string> {
  const admin = connectAdmin(s.adminSocket);
  try {
    const res = await admin.call<{ slots: { kind: string; key_id: string; phase: string; withheld?: boolean }[] }>('WithholdAuthority', { kind: s.kind, key_id: s.keyId, withhold: false });
    const slot = res.slots.find((x) => x.key_id === s.keyId);
    return `published ${s.kind} key ${s.keyId} in the trust bundle again${slot ? ` (phase ${slot.phase})` : ''}`;
  } catch (err) {
    if (isSvidscopeError(err) && err.code === 'not-found') return `${s.kind} key ${s.keyId} no longer exists: nothing to publish`;
    throw err;
  } finally {
    admin.close();
  }
}

/** Sets an agent's fault relay back to pass-through; a relay that no longer answers went with its `svidscope up`. */
export async function relayPass(s: { control: string; agent: string }): Promise<string> {
  try {
    await relayMode(s.control, { kind: 'pass' });
    return `${s.agent}'s link to the server passes traffic again`;
  } catch (err) {
    if ((err as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED') return `${s.agent}'s fault relay is gone (its svidscope up stopped): nothing to undo`;
    throw err;
  }
}
