/**
 * This project's server, through its admin socket: the trust domain's bundle with its sequence
 * (the reference for propagation lag), federated bundles, and — for registration coverage — the
 * entries and agents (agent SVID expiry and rotation come with the agents). Polled on the Clock.
 * The admin client is injected (the CLI's `connectAdmin` by default), so the exporter carries no
 * copy of the admin protocol.
 */
import { parseSpiffeBundle } from '../../identity-plane/spiffe/bundle/index.js';
import { parseTrustDomain } from '../../identity-plane/spiffe/id/index.js';
import { serverSpiffeIdString } from '../../identity-plane/server-api/server-id.js';
import type { ServerAdminSourceConfig } from '../config.js';
import type { ObservedRevocation } from '../revocations.js';
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

/** CaStatus, as far as revocations go (older servers send no revoke times: nothing to time). */
interface CaStatusMsg {
  slots: { kind: string; key_id: string; revoked?: boolean; revoked_at_ms?: string }[];
  upstream_authorities?: { subject_key_id: string; revoked: boolean; revoked_at_ms: string }[];
}

/** The server's revoked keys with the instant of each revoke: its own X.509 CAs (key id = subject key id) and JWT keys, and upstream X.509 authorities. */
export function revokedKeys(trustDomain: string, status: CaStatusMsg): ObservedRevocation[] {
  const out: ObservedRevocation[] = [];
  for (const s of status.slots) {
    const at = Number(s.revoked_at_ms ?? 0);
    if (s.revoked && at > 0 && (s.kind === 'x509' || s.kind === 'jwt')) out.push({ trustDomain, kind: s.kind, keyId: s.key_id, revokedAtMs: at });
  }
  for (const u of status.upstream_authorities ?? []) {
    const at = Number(u.revoked_at_ms || 0);
    if (u.revoked && at > 0) out.push({ trustDomain, kind: 'x509', keyId: u.subject_key_id, revokedAtMs: at });
  }
  return out;
}

function observedBundle(m: BundleMsg): ObservedBundle {
  const b = parseSpiffeBundle(parseTrustDomain(m.trust_domain), m.document);
  return { ...bundleOf(b, { x509: true, jwt: true }), sequence: BigInt(m.sequence_number || '0') };
}

export function createServerAdminSource(config: ServerAdminSourceConfig, ctx: SourceContext, connect: AdminConnector): Source {
  let admin: AdminApi | undefined;

  async function poll(): Promise<void> {
    try {
      admin ??= connect(config.socket);
      const own = await admin.call<BundleMsg>('GetBundle', {});
      const all = await admin.call<{ bundles: BundleMsg[] }>('ListBundles', {});
      const bundles = [{ ...observedBundle(own), federated: false }, ...all.bundles.filter((b) => b.trust_domain !== own.trust_domain).map((b) => ({ ...observedBundle(b), federated: true }))];
      // Revoke times are an extra: a server that cannot say (an older one) still serves its bundles.
      const status = await admin.call<CaStatusMsg>('CaStatus', {}).catch((err: unknown) => {
        ctx.logger.debug({ source: config.name, err: (err as Error).message }, 'CaStatus failed: revocations not timed');
        return undefined;
      });
      const revocations = status ? { trustDomain: own.trust_domain, keys: revokedKeys(own.trust_domain, status) } : undefined;
      if (!config.coverage) return void ctx.observe({ bundles, revocations });
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
        revocations,
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
