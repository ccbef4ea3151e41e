import type * as grpc from '@grpc/grpc-js';
import { SvidscopeError } from '../../../common/errors/catalog.js';
import { toServiceError } from '../../../common/errors/grpc.js';
import type { RegistrationEntry } from '../datastore/types.js';
import type { ChangeNotificationMsg, SyncRequestMsg, SyncResponseMsg } from '../../server-api/messages.js';
import { entryDelta, entrySetDigest } from '../../server-api/entry-sync.js';
import { toNumber } from './grpc.js';
import { entryMessage } from './entry-message.js';
import type { Admission } from './admission.js';
import type { AgentAuth, AgentCall, AuthenticatedAgent } from './agent-auth.js';
import type { BundleView } from './bundle-view.js';
import type { NodeServiceDeps, NodeServiceEvents } from './node-service.js';

/** An entry as the incremental sync names it: (id, revision). */
const pairOf = (e: RegistrationEntry) => ({ id: e.id, revision: String(e.revision) });

export type EntrySyncDeps = Pick<NodeServiceDeps, 'logger' | 'changes'> & {
  auth: AgentAuth;
  admission: Admission;
  /** The entries an agent is authorized for now. */
  authorized(agent: AuthenticatedAgent): Promise<RegistrationEntry[]>;
  bundleView: Pick<BundleView, 'state'>;
  events: NodeServiceEvents;
};

/** How an agent keeps its entries: SyncAuthorizedEntries (pull) and the WatchChanges stream that says when to pull. */
export function createEntrySyncHandlers({ logger, changes, auth, admission, authorized, bundleView, events }: EntrySyncDeps) {
  return {
    async syncAuthorizedEntries(req: SyncRequestMsg, call: AgentCall): Promise<SyncResponseMsg> {
      admission.checkDeadline(call);
      const agent = await auth.authenticate(call);
      if (req.undecodable) throw req.undecodable;
      const list = await authorized(agent);
      let revision = 0;
      for (const e of list) if (e.revision > revision) revision = e.revision;
      // The revision of the newest authorized entry does not move on deletion, so the count is part of the key.
      const key = String(revision * 1_000_000 + list.length);
      const bundle_state = await bundleView.state();
      if (req.incremental) {
        // The agent said what it holds: answer exactly the difference, O(its entries).
        const delta = entryDelta(list, pairOf, req.known_entries ?? []);
        if (delta.changed.length === 0 && delta.deletedIds.length === 0) {
          events.entrySync?.('unchanged', list.length);
          return { entries: [], revision: key, unchanged: true, bundle_state };
        }
        events.entrySync?.('incremental', list.length);
        return { entries: delta.changed.map(entryMessage), revision: key, unchanged: false, incremental: true, deleted_ids: delta.deletedIds, digest: entrySetDigest(list.map(pairOf)), bundle_state };
      }
      // The first protocol (only known_revision): unchanged or the full list, as agents that predate deltas expect.
      if (toNumber(req.known_revision) === Number(key)) {
        events.entrySync?.('unchanged', list.length);
        return { entries: [], revision: key, unchanged: true, bundle_state };
      }
      events.entrySync?.('full', list.length);
      return { entries: list.map(entryMessage), revision: key, unchanged: false, digest: entrySetDigest(list.map(pairOf)), bundle_state };
    },

    /** Server-streaming: answers through the stream, never returns a value. */
    watchChanges(call: grpc.ServerWritableStream<unknown, ChangeNotificationMsg>): void {
      const fail = (err: unknown) => {
        call.emit('error', toServiceError(err, (e) => logger.error({ err: e, method: 'WatchChanges' }, 'unexpected error in handler')));
      };
      if (!changes) return fail(new SvidscopeError('unimplemented', 'this server does not push changes; poll SyncAuthorizedEntries'));
      void (async () => {
        const agent = await auth.authenticate(call);
        if (call.cancelled) return;
        // From the identity kept for the connection: asking TLS for the certificate again cost a
        // getPeerCertificate per stream, 10,000 of them when a fleet connects.
        const svidNotAfterMs = agent.presentedNotAfterMs || agent.expiresAt.getTime();
        const close = changes.open({
          agentId: agent.spiffeId, selectors: agent.selectors, svidNotAfterMs,
          recheck: () => auth.recheck(agent),
          recheckAt: () => auth.recheckAt(agent),
          sink: {
            send: (msg, flushed) => {
              call.write(msg, () => flushed());
            },
            close: (err) => fail(err),
          },
        });
        call.on('cancelled', close);
        call.on('close', close);
        call.on('error', close);
      })().catch(fail);
    },
  };
}
