import { connectAdmin } from '../../identity-plane/server-api/admin-client.js';
import type { MethodStep } from '../experiment/schema.js';
import { component } from '../stack.js';
import type { FaultContext, FaultKindImpl, PreparedFault } from './types.js';

type Rotate = Extract<MethodStep, { fault: 'ca-rotate' }>;
type Delete = Extract<MethodStep, { fault: 'entry-delete' }>;

/** Forced CA/JWT-key rotation through the admin API. Forward-only: the after-hypothesis is the check. */
export const caRotate: FaultKindImpl<Rotate> = {
  plan: (s) => ({ inject: `RotateCa {kind: ${s.kind}} on ${s.server} (prepare and activate a new ${s.kind === 'x509' ? 'X.509 CA' : 'JWT key'} now)`, rollback: 'none (rotation is forward-only; the after-hypothesis checks that SVIDs were re-issued and bundles propagated)' }),
  async prepare(s: Rotate, ctx: FaultContext): Promise<PreparedFault> {
    const c = component(ctx.stack, s.server);
    return {
      target: c.name,
      rollback: [],
      async apply() {
        const admin = connectAdmin(c.adminSocket!);
        try {
          const before = await admin.call<{ slots: { kind: string; phase: string; key_id: string }[] }>('CaStatus', {});
          const after = await admin.call<{ slots: { kind: string; phase: string; key_id: string }[] }>('RotateCa', { kind: s.kind });
          const active = (r: typeof before) => r.slots.find((x) => x.kind === s.kind && x.phase === 'active')?.key_id;
          return { kind: s.kind, activeBefore: active(before), activeAfter: active(after) };
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
    if (entries.length === 0) throw new Error(`chaos: no registration entry for ${s.spiffeId} on ${s.server}`);
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
