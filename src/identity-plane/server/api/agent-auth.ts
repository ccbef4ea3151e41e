import type * as grpc from '@grpc/grpc-js';
import { SvidscopeError } from '../../../common/errors/catalog.js';
import type { AttestedAgent } from '../datastore/types.js';
import { normalSerial, PeerIdentityCache } from './peer-identity.js';
import type { NodeServiceDeps, NodeServiceEvents } from './node-service.js';

/** A unary agent API call as the handlers see it. */
export type AgentCall = grpc.ServerUnaryCall<unknown, unknown>;

/** Why an agent call is refused at authentication (the bounded `reason` of the agentRefused event). */
export type AgentRefusalReason = 'not_attested' | 'banned' | 'stale_serial';

/** The three ways an agent is refused at authentication, worded once; agents tell them apart by code. */
export const refusal: Record<AgentRefusalReason, (id: string) => SvidscopeError> = {
  not_attested: (id) => new SvidscopeError('agent-not-attested', `agent ${id} is not attested or was evicted; attest again`),
  banned: (id) => new SvidscopeError('agent-banned', `agent ${id} is banned`),
  stale_serial: (id) => new SvidscopeError('agent-svid-stale', `agent ${id} presented an SVID that is no longer its current one (renewed, re-attested or evicted since); use the latest SVID or attest again`),
};

/** When the grace ends (epoch ms) if `presented` is the serial a renewal replaced; undefined for any other serial. */
function graceEndOf(a: AttestedAgent, presented: string): number | undefined {
  const replaced = presented !== normalSerial(a.serialNumber) && !!a.previousSerialNumber && presented === normalSerial(a.previousSerialNumber);
  return replaced ? (a.previousSerialValidUntil?.getTime() ?? 0) : undefined;
}

/** Whether the record takes this serial: its current one, or the one a renewal replaced while in grace. */
export function acceptsSerial(a: AttestedAgent, presented: string, nowMs: number): boolean {
  return presented === normalSerial(a.serialNumber) || nowMs < (graceEndOf(a, presented) ?? 0);
}

/** Why this record refuses the serial, checked in this order; undefined when it accepts it. */
function refusalReason(agent: AttestedAgent | undefined, presented: string, nowMs: number): AgentRefusalReason | undefined {
  if (!agent) return 'not_attested';
  if (agent.banned) return 'banned';
  if (!acceptsSerial(agent, presented, nowMs)) return 'stale_serial';
  return undefined;
}

/** An agent record whose SVID was proven current, with the serial the call presented. */
/** The agent record, and what the call's certificate said: its serial and notAfter (epoch ms). */
export type AuthenticatedAgent = AttestedAgent & { presentedSerial: string; presentedNotAfterMs: number };

export interface AgentAuth {
  /**
   * The caller's agent record, once its SVID is proven current: TLS proved the chain, but an SVID a
   * renewal or a new attestation replaced, or one issued before an eviction, must not keep working.
   * Returns the serial presented too (a renewal keeps it acceptable for the grace window).
   */
  authenticate(call: Pick<AgentCall, 'getAuthContext'>): Promise<AuthenticatedAgent>;
  /**
   * The refusal an authenticated agent would meet now from the cached record, without a datastore
   * read or an event (long-lived streams ask this on every change of the agent view).
   */
  recheck(agent: AuthenticatedAgent): SvidscopeError | undefined;
  /**
   * When `recheck` could refuse with the cached record unchanged (epoch ms; Infinity: never): the
   * end of the renewal grace when the agent presented the serial a renewal replaced.
   */
  recheckAt(agent: AuthenticatedAgent): number;
}

export type AgentAuthDeps = Pick<NodeServiceDeps, 'trustDomain' | 'agents' | 'clock'> & { events: NodeServiceEvents };

/** Authentication of agent calls against the agent view (AgentCache), shared by every agent API method. */
export function createAgentAuth({ trustDomain, agents, clock, events }: AgentAuthDeps): AgentAuth {
  const peers = new PeerIdentityCache(trustDomain);
  // What authenticate answers, per cached record: the record with what the certificate said. The
  // view replaces a record on any change, so an answer keyed by the record object is never stale;
  // it saves a copy of the record on every call (a sync every few seconds from each agent).
  // Frozen: handlers share it.
  const answered = new WeakMap<AttestedAgent, AuthenticatedAgent>();
  const authenticatedView = (agent: AttestedAgent, presentedSerial: string, presentedNotAfterMs: number): AuthenticatedAgent => {
    const known = answered.get(agent);
    if (known && known.presentedSerial === presentedSerial && known.presentedNotAfterMs === presentedNotAfterMs) return known;
    const view = Object.freeze({ ...agent, presentedSerial, presentedNotAfterMs });
    answered.set(agent, view);
    return view;
  };
  return {
    async authenticate(call) {
      const { id, serial: presented, notAfterMs } = peers.resolveCall(call);
      const agentId = id.toString();
      // The cached record decides in the steady state. A miss or a serial it does not know may be a
      // change this server has not pulled yet (an attestation or renewal through another server), so
      // pull the feed once before refusing; bans and evictions already cached refuse without a read.
      let agent = agents.get(agentId);
      if (!agent || (!agent.banned && !acceptsSerial(agent, presented, clock.nowMs()))) {
        await agents.refreshForUnknown();
        agent = agents.get(agentId);
      }
      const reason = refusalReason(agent, presented, clock.nowMs());
      if (reason) {
        events.agentRefused?.(reason);
        throw refusal[reason](agentId);
      }
      return authenticatedView(agent!, presented, notAfterMs); // refusalReason refuses a missing record
    },
    // The cached record decides, as for every call: bans, evictions and renewals reach it through the agent feed.
    recheck(agent) {
      const reason = refusalReason(agents.get(agent.spiffeId), agent.presentedSerial, clock.nowMs());
      return reason ? refusal[reason](agent.spiffeId) : undefined;
    },
    recheckAt(agent) {
      const record = agents.get(agent.spiffeId);
      return (record && graceEndOf(record, agent.presentedSerial)) ?? Infinity;
    },
  };
}
