/**
 * This project's server, through its admin socket: the trust domain's bundle with its sequence
 * (the reference for propagation lag), federated bundles, and — for registration coverage — the
 * entries and agents (agent SVID expiry and rotation come with the agents). Polled on the Clock.
 * The admin client is injected (the CLI's `connectAdmin` by default), so the exporter carries no
 * copy of the admin protocol.
 */
import { parseSpiffeBundle } from '../../identity-plane/spiffe/bundle/index.js';
import { serverSpiffeIdString } from '../../identity-plane/server-api/server-id.js';
import type { ServerAdminSourceConfig } from '../config.js';
import type { ObservedBundle, ObservedSvid } from '../state.js';
import { bundleOf, reasonOf, trustDomainOf } from './convert.js';
import { polledSource } from './poller.js';
import type { Source, SourceContext } from './types.js';

export interface AdminApi {
  call<Res>(method: string, request: object): Promise<Res>;
  close(): void;
}

export type AdminConnector = (socket: string) => AdminApi;

interface BundleMsg {
  trust_domain: string;
  document: Buffer;
  sequence_number: string;
}
interface EntryMsg {
  spiffe_id: string;
  parent_id: string;
}
interface AgentMsg {
  id: string;
  x509svid_serial_number: string;
  x509svid_expires_at: string;
  banned: boolean;
}

function observedBundle(m: BundleMsg): ObservedBundle {
  const b = parseSpiffeBundle(m.trust_domain, m.document);
  return { ...bundleOf(b, { x509: true, jwt: true }), sequence: BigInt(m.sequence_number || '0') };
}

export function createServerAdminSource(config: ServerAdminSourceConfig, ctx: SourceContext, connect: AdminConnector): Source {
  let admin: AdminApi | undefined;

  async function poll(): Promise<void> {
    try {
      admin ??= connect(config.socket);
      const own = await admin.call<BundleMsg>('GetBundle', {});
      const all = await admin.call<{ bundles: BundleMsg[] }>('ListBundles', {});
      const bundles = [observedBundle(own), ...all.bundles.filter((b) => b.trust_domain !== own.trust_domain).map(observedBundle)];
      if (!config.coverage) return void ctx.observe({ bundles });
      const serverId = serverSpiffeIdString(own.trust_domain);
      const [entries, agents] = await Promise.all([
        admin.call<{ entries: EntryMsg[] }>('ListEntries', {}),
        admin.call<{ agents: AgentMsg[] }>('ListAgents', {}),
      ]);
      const svids: ObservedSvid[] = agents.agents.map((a) => ({
        key: `agent:${a.id}`, spiffeId: a.id, trustDomain: trustDomainOf(a.id), serial: a.x509svid_serial_number.toLowerCase(), notAfterMs: Number(a.x509svid_expires_at) * 1000,
      }));
      ctx.observe({
        bundles,
        svids,
        coverage: {
          entries: entries.entries.filter((e) => e.parent_id !== serverId).map((e) => ({ spiffeId: e.spiffe_id })),
          agents: agents.agents.map((a) => ({ id: a.id, banned: a.banned, expiresAtMs: Number(a.x509svid_expires_at) * 1000 })),
        },
      });
    } catch (err) {
      ctx.fail(reasonOf(err), err);
      ctx.logger.warn({ source: config.name, socket: config.socket, err: (err as Error).message }, 'server admin poll failed');
    }
  }

  return polledSource(config.name, ctx.clock, config.intervalSeconds, poll, () => admin?.close());
}
