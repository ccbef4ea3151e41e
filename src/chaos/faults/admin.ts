import { connectAdmin } from '../../identity-plane/server-api/admin-client.js';
import type { MethodStep } from '../experiment/schema.js';
import { component } from '../stack.js';
import { waitForBundle } from './propagation.js';
import type { FaultContext, FaultKindImpl, PreparedFault } from './types.js';
import { SvidscopeError } from '../../common/errors/catalog.js';

type Rotate = Extract<MethodStep, { fault: 'ca-rotate' }>;
type Delete = Extract<MethodStep, { fault: 'entry-delete' }>;
type Withhold = Extract<MethodStep, { fault: 'authority-withhold' }>;

type Slots = { slots: { kind: string; phase: string; key_id: string; withheld?: boolean }[] };
const KIND_NAME = { x509: 'X.509 CA', jwt: 'JWT key' } as const;

/**
 * Forced CA/JWT-key rotation the way an operator answers a key compromise: AuthorityLifecycle
 * prepare (the new key is published, not used), wait until every agent of the server's trust
 * domain serves the bundle that holds it (bounded by propagation_timeout, so an agent cut off by
 * an earlier step cannot stall the run; it is reported as lagging), then activate that key.
 * Forward-only: the after-hypothesis is the check.
 */
export const caRotate: FaultKindImpl<Rotate> = {
  plan: (s) => ({
    inject: `AuthorityLifecycle prepare {kind: ${s.kind}} on ${s.server}, wait until every agent of its trust domain serves the bundle holding the new ${KIND_NAME[s.kind]} (at most ${s.propagationTimeoutMs / 1000}s), then AuthorityLifecycle activate of that key`,
    rollback: 'none (rotation is forward-only; the after-hypothesis checks that SVIDs were re-issued and bundles propagated)',
  }),
  async prepare(s: Rotate, ctx: FaultContext): Promise<PreparedFault> {
    const c = component(ctx.stack, s.server);
    if (!c.adminSocket) throw new SvidscopeError('chaos-target-invalid', `chaos: ${s.server} is not a server (no admin socket in endpoints.json)`);
    const agents = [...ctx.stack.components.values()].filter((a) => a.kind === 'agent' && a.trustDomain === c.trustDomain);
    return {
      target: c.name,
      rollback: [],
      async apply() {
        const admin = connectAdmin(c.adminSocket!);
        try {
          const active = (r: Slots) => r.slots.find((x) => x.kind === s.kind && x.phase === 'active')?.key_id;
          const before = await admin.call<Slots>('CaStatus', {});
          const prepared = await admin.call<Slots>('AuthorityLifecycle', { kind: s.kind, operation: 'prepare' });
          const keyId = prepared.slots.find((x) => x.kind === s.kind && x.phase === 'prepared')?.key_id;
          if (!keyId) throw new SvidscopeError('chaos-fault-failed', `chaos: ${s.server} reported no prepared ${KIND_NAME[s.kind]} after prepare`);
          const bundleSequence = Number((await admin.call<{ sequence_number?: string }>('GetBundle', {})).sequence_number ?? 0);
          const propagation = await waitForBundle(agents, bundleSequence, s.propagationTimeoutMs);
          if (propagation.lagging.length) ctx.progress(`activating the new ${KIND_NAME[s.kind]} although ${propagation.lagging.join(', ')} did not serve bundle ${bundleSequence} within ${s.propagationTimeoutMs / 1000}s`);
          const after = await admin.call<Slots>('AuthorityLifecycle', { kind: s.kind, operation: 'activate', key_id: keyId });
          return { kind: s.kind, activeBefore: active(before), preparedKeyId: keyId, activeAfter: active(after), bundleSequence, ...propagation };
        } finally {
          admin.close();
        }
      },
    };
  },
};

const STRIP = ['id', 'revision_number', 'created_at'];

/** Deletes the registration entries of one SPIFFE ID; the rollback recreates them with the same fields. */
export const entryDelete: FaultKindImpl<Delete> = {
  plan: (s) => ({ inject: `DeleteEntry for every entry of ${s.spiffeId} on ${s.server}`, rollback: `CreateEntry with the same fields (read before deleting; idempotent)` }),
  async prepare(s: Delete, ctx: FaultContext): Promise<PreparedFault> {
    const c = component(ctx.stack, s.server);
    const admin = connectAdmin(c.adminSocket!);
    let entries: Record<string, unknown>[];
    try {
      entries = (await admin.call<{ entries: Record<string, unknown>[] }>('ListEntries', { filter: { by_spiffe_id: s.spiffeId } })).entries;
    } finally {
      admin.close();
    }
    if (entries.length === 0) throw new SvidscopeError('chaos-target-invalid', `chaos: no registration entry for ${s.spiffeId} on ${s.server}`);
    const copies = entries.map((e) => Object.fromEntries(Object.entries(e).filter(([k]) => !STRIP.includes(k))));
    return {
      target: s.spiffeId,
      rollback: [{ op: 'recreate-entries', adminSocket: c.adminSocket!, entries: copies }],
      async apply() {
        const a = connectAdmin(c.adminSocket!);
        try {
          for (const e of entries) await a.call('DeleteEntry', { id: e.id });
        } finally {
          a.close();
        }
        return { deleted: entries.map((e) => e.id) };
      },
    };
  },
};

/**
 * A bad rotation: the server's trust bundle drops its active authority of `kind` (admin API
 * WithholdAuthority) while the server keeps signing with it, so what it signs from then on no
 * longer verifies against the bundle agents and peers hold. The active key id is read before
 * anything changes, so the rollback publishes exactly that key again even if a rotation happens
 * meanwhile (a key gone since counts as done).
 */
export const authorityWithhold: FaultKindImpl<Withhold> = {
  plan: (s) => ({
    inject: `WithholdAuthority {kind: ${s.kind}, key_id: <the active ${KIND_NAME[s.kind]}, read from CaStatus>, withhold: true} on ${s.server}: its trust bundle drops the active ${KIND_NAME[s.kind]} while it keeps signing with it`,
    rollback: `WithholdAuthority {withhold: false} for that same key id on ${s.server} (idempotent; a key gone since counts as done)`,
  }),
  async prepare(s: Withhold, ctx: FaultContext): Promise<PreparedFault> {
    const c = component(ctx.stack, s.server);
    if (!c.adminSocket) throw new SvidscopeError('chaos-target-invalid', `chaos: ${s.server} is not a server (no admin socket in endpoints.json)`);
    const admin = connectAdmin(c.adminSocket);
    let status: Slots;
    try {
      status = await admin.call<Slots>('CaStatus', {});
    } finally {
      admin.close();
    }
    const active = status.slots.find((x) => x.kind === s.kind && x.phase === 'active');
    if (!active) throw new SvidscopeError('chaos-target-invalid', `chaos: ${s.server} has no active ${KIND_NAME[s.kind]} (CaStatus: ${status.slots.map((x) => `${x.kind}/${x.phase}`).join(', ') || 'no keys'})`);
    if (active.withheld) throw new SvidscopeError('chaos-target-invalid', `chaos: ${s.server}'s active ${KIND_NAME[s.kind]} ${active.key_id} is already withheld from the bundle; publish it first (a rollback would undo a change this run did not make)`);
    const keyId = active.key_id;
    return {
      target: c.name,
      rollback: [{ op: 'publish-authority', adminSocket: c.adminSocket, kind: s.kind, keyId }],
      async apply() {
        const a = connectAdmin(c.adminSocket!);
        try {
          const sequence = () => a.call<{ sequence_number?: string | number }>('GetBundle', {}).then((b) => String(b.sequence_number ?? ''), () => undefined);
          const bundleSequenceBefore = await sequence();
          const res = await a.call<Slots>('WithholdAuthority', { kind: s.kind, key_id: keyId, withhold: true });
          const slot = res.slots.find((x) => x.key_id === keyId);
          const bundleSequenceAfter = await sequence();
          return { kind: s.kind, keyId, phase: slot?.phase, withheld: slot?.withheld ?? true, bundleSequenceBefore, bundleSequenceAfter };
        } finally {
          a.close();
        }
      },
    };
  },
};
