/**
 * The key-compromise drill: the whole response to a leaked signing key, run against the stack and
 * timed from outside. prepare a successor → wait until every agent (and the federated peer) holds
 * it → activate → taint the old key → wait until no agent holds an SVID it signed → revoke →
 * wait until every agent and the federated peer have dropped it from their bundles.
 *
 * The harness watches the components' own /metrics (not Prometheus, whose scrape interval would
 * blur the figures): agents' `svidscope_agent_bundle_sequence` and
 * `svidscope_agent_svids_by_authority`, the peer server's `svidscope_federation_bundle_sequence`,
 * and the peer's agents' `svidscope_agent_federated_bundle_sequence` for this trust domain (the
 * peer's workloads verify this domain's SVIDs with it, so the new key must reach them before it
 * signs, and the revoke is only done for them once they serve a copy without the old key).
 * The report states each phase's duration; the agents' own `svidscope_agent_taint_clear_seconds`
 * gives the per-agent figure without the polling interval.
 *
 * Forward-only, like a real response: the rollback is none; the new key stays active and the old
 * one revoked. The steady state (workloads keep authenticating each other) is the check.
 */
import { connectAdmin } from '../../identity-plane/server-api/admin-client.js';
import type { MethodStep } from '../experiment/schema.js';
import { sleep } from '../proc.js';
import { component, type StackComponent, type StackView } from '../stack.js';
import { agentFamilies } from '../../common/telemetry/names.js';
import { agentBundleSequence, agentFederatedSequence, sampleSum, sampleValues, scrapeComponent as scrape } from './propagation.js';
import type { FaultContext, FaultKindImpl, PreparedFault } from './types.js';
import { SvidscopeError } from '../../common/errors/catalog.js';

type Drill = Extract<MethodStep, { fault: 'key-compromise' }>;
type Slot = { kind: string; phase: string; key_id: string; tainted?: boolean; revoked?: boolean };
type Slots = { slots: Slot[] };

const KIND_NAME = { x509: 'X.509 CA', jwt: 'JWT key' } as const;
const POLL_MS = 250;

export const keyCompromise: FaultKindImpl<Drill> = {
  plan: (s, stack) => ({
    inject: `AuthorityLifecycle on ${s.server}: prepare a new ${KIND_NAME[s.kind]}, wait until ${stack ? agentsOf(stack, s.server).map((a) => a.name).join(', ') || 'its agents' : 'its agents'}${peerOf(stack, s.server) ? ', the federated peer and its agents' : ''} hold it, activate it, taint the old one, wait until no agent holds an SVID it signed, revoke it, wait until every agent${peerOf(stack, s.server) ? ', the federated peer and its agents' : ''} dropped it (each wait at most ${s.timeoutMs / 1000}s)`,
    rollback: 'none: a key-compromise response is forward-only (the new key stays active, the old one revoked); the steady state is the check',
  }),
  async prepare(s: Drill, ctx: FaultContext): Promise<PreparedFault> {
    const server = component(ctx.stack, s.server);
    if (!server.adminSocket) throw new SvidscopeError('chaos-target-invalid', `chaos: ${s.server} is not a server (no admin socket in endpoints.json)`);
    const agents = agentsOf(ctx.stack, s.server);
    if (agents.length === 0) throw new SvidscopeError('chaos-target-invalid', `chaos: ${s.server} has no agents in endpoints.json to watch`);
    const peer = peerOf(ctx.stack, s.server);
    return {
      target: server.name,
      rollback: [],
      apply: async () => runDrill(s, server, agents, peer, peer ? await federatingAgents(agentsOf(ctx.stack, peer.name), server.trustDomain!) : [], ctx),
    };
  },
};

async function runDrill(s: Drill, server: StackComponent, agents: StackComponent[], peer: StackComponent | undefined, peerAgents: StackComponent[], ctx: FaultContext): Promise<Record<string, unknown>> {
  const admin = connectAdmin(server.adminSocket!);
  const lifecycle = (operation: string, keyId = '') => admin.call<Slots>('AuthorityLifecycle', { kind: s.kind, operation, key_id: keyId });
  const sequence = async () => Number((await admin.call<{ sequence_number?: string | number }>('GetBundle', {})).sequence_number ?? 0);
  const wait = (what: string, done: () => Promise<boolean>) => waitUntil(what, done, s.timeoutMs, ctx);
  try {
    const before = await admin.call<Slots>('CaStatus', {});
    const compromised = before.slots.find((x) => x.kind === s.kind && x.phase === 'active');
    if (!compromised) throw new SvidscopeError('chaos-target-invalid', `chaos: ${server.name} has no active ${KIND_NAME[s.kind]} to treat as compromised`);
    const started = ctx.clock.nowMs();

    // Every figure is the time from its step (prepare, taint, revoke) until the wait ended, so the
    // peer's figures include the waits before theirs.
    const waitSince = async (t0: number, what: string, done: () => Promise<boolean>) => {
      await wait(what, done);
      return ctx.clock.nowMs() - t0;
    };
    const preparedAt = ctx.clock.nowMs();
    const prepared = (await lifecycle('prepare')).slots.find((x) => x.kind === s.kind && x.phase === 'prepared');
    if (!prepared) throw new SvidscopeError('chaos-fault-failed', `chaos: prepare on ${server.name} left no prepared ${KIND_NAME[s.kind]}`);
    ctx.progress(`prepared ${KIND_NAME[s.kind]} ${prepared.key_id} to replace ${compromised.key_id}`);
    const preparedSequence = await sequence();
    const prepareToAgentsMs = await waitSince(preparedAt, `every agent holds the bundle with ${prepared.key_id} (sequence ${preparedSequence})`, () => everyAgentAt(agents, preparedSequence));
    // Activation waits for the peer and its agents too: their workloads must trust the new key before it signs.
    const prepareToPeerMs = peer
      ? await waitSince(preparedAt, `${peer.name} holds ${prepared.key_id} (its copy of ${server.trustDomain} at sequence ${preparedSequence})`, async () => (await federatedSequence(peer, server.trustDomain!)) >= preparedSequence)
      : undefined;
    const prepareToPeerAgentsMs = peerAgents.length > 0
      ? await waitSince(preparedAt, `${peerAgents.map((a) => a.name).join(', ')} serve ${server.trustDomain}'s bundle at sequence ${preparedSequence}`, () => everyAgentAt(peerAgents, preparedSequence, server.trustDomain))
      : undefined;

    await lifecycle('activate', prepared.key_id);
    const taintedAt = ctx.clock.nowMs();
    await lifecycle('taint', compromised.key_id);
    ctx.progress(`activated ${prepared.key_id}; tainted ${compromised.key_id}`);
    const timeToClearMs = await waitSince(taintedAt, `no agent holds an SVID signed by ${compromised.key_id}`, async () => (await heldBy(agents, s.kind, compromised.key_id)) === 0);

    const revokedAt = ctx.clock.nowMs();
    await lifecycle('revoke', compromised.key_id);
    const revokedSequence = await sequence();
    ctx.progress(`revoked ${compromised.key_id} (bundle sequence ${revokedSequence})`);
    const revokeToAgentsMs = await waitSince(revokedAt, `every agent dropped ${compromised.key_id} (bundle sequence ${revokedSequence})`, () => everyAgentAt(agents, revokedSequence));
    const revokeToPeerMs = peer
      ? await waitSince(revokedAt, `${peer.name} dropped ${compromised.key_id} (its copy of ${server.trustDomain} at sequence ${revokedSequence})`, async () => (await federatedSequence(peer, server.trustDomain!)) >= revokedSequence)
      : undefined;
    const revokeToPeerAgentsMs = peerAgents.length > 0
      ? await waitSince(revokedAt, `${peerAgents.map((a) => a.name).join(', ')} dropped ${compromised.key_id} (${server.trustDomain}'s bundle at sequence ${revokedSequence})`, () => everyAgentAt(peerAgents, revokedSequence, server.trustDomain))
      : undefined;

    const after = await admin.call<Slots>('CaStatus', {});
    const old = after.slots.find((x) => x.key_id === compromised.key_id);
    if (old && !old.revoked) throw new SvidscopeError('chaos-fault-failed', `chaos: ${compromised.key_id} is not revoked after the drill (CaStatus: ${old.phase})`);
    const report = {
      kind: s.kind,
      compromisedKeyId: compromised.key_id,
      newKeyId: prepared.key_id,
      prepareToAgentsSeconds: seconds(prepareToAgentsMs),
      ...(prepareToPeerMs !== undefined ? { prepareToPeerSeconds: seconds(prepareToPeerMs) } : {}),
      ...(prepareToPeerAgentsMs !== undefined ? { prepareToPeerAgentsSeconds: seconds(prepareToPeerAgentsMs) } : {}),
      timeToClearSeconds: seconds(timeToClearMs),
      revokeToAgentsSeconds: seconds(revokeToAgentsMs),
      ...(revokeToPeerMs !== undefined ? { revokeToPeerSeconds: seconds(revokeToPeerMs), peer: peer!.name } : {}),
      ...(revokeToPeerAgentsMs !== undefined ? { revokeToPeerAgentsSeconds: seconds(revokeToPeerAgentsMs), peerAgents: peerAgents.map((a) => a.name).join(',') } : {}),
      totalSeconds: seconds(ctx.clock.nowMs() - started),
    };
    ctx.progress(`drill done: cleared in ${report.timeToClearSeconds}s, revoke reached the agents in ${report.revokeToAgentsSeconds}s${revokeToPeerMs !== undefined ? `, ${peer!.name} in ${report.revokeToPeerSeconds}s` : ''}${revokeToPeerAgentsMs !== undefined ? `, its agents in ${report.revokeToPeerAgentsSeconds}s` : ''}`);
    return report;
  } finally {
    admin.close();
  }
}

/** Polls `done` until it holds; returns the time it took, or fails naming what was awaited. */
async function waitUntil(what: string, done: () => Promise<boolean>, timeoutMs: number, ctx: FaultContext): Promise<number> {
  const start = ctx.clock.nowMs();
  let lastError = '';
  let nextProgress = start + 10_000;
  for (;;) {
    try {
      if (await done()) return ctx.clock.nowMs() - start;
    } catch (err) {
      lastError = (err as Error).message; // a component briefly unreachable: keep waiting
    }
    const now = ctx.clock.nowMs();
    if (now - start >= timeoutMs) throw new SvidscopeError('chaos-fault-failed', `chaos: key-compromise drill: not reached within ${timeoutMs / 1000}s: ${what}${lastError ? ` (last error: ${lastError})` : ''}`);
    if (now >= nextProgress) {
      ctx.progress(`waiting ${Math.round((now - start) / 1000)}s: ${what}`);
      nextProgress = now + 10_000;
    }
    await sleep(POLL_MS, undefined, ctx.clock);
  }
}

function agentsOf(stack: StackView, serverName: string): StackComponent[] {
  const td = stack.components.get(serverName)?.trustDomain;
  return [...stack.components.values()].filter((c) => c.kind === 'agent' && c.trustDomain === td);
}

/** The other trust domain's server of the stack, which federates with `serverName`'s domain. */
function peerOf(stack: StackView | undefined, serverName: string): StackComponent | undefined {
  if (!stack) return undefined;
  return [...stack.components.values()].find((c) => c.kind === 'server' && c.name !== serverName);
}

/** Every agent serves `trustDomain`'s bundle (default: its own) at `sequence` or later. */
async function everyAgentAt(agents: StackComponent[], sequence: number, trustDomain?: string): Promise<boolean> {
  const seqs = await Promise.all(agents.map((a) => (trustDomain === undefined ? agentBundleSequence(a) : agentFederatedSequence(a, trustDomain))));
  return seqs.every((x) => x !== undefined && x >= sequence);
}

/**
 * The peer's agents that serve `trustDomain`'s bundle (their entries federate with it), from
 * their /metrics when the drill starts. An agent none of whose entries federates never gets the
 * bundle and is not waited for; one that does not answer is, since it may serve it once back.
 */
export async function federatingAgents(peerAgents: StackComponent[], trustDomain: string): Promise<StackComponent[]> {
  const serves = await Promise.all(peerAgents.map(async (a) => {
    try {
      return sampleValues(await scrape(a, 2_000), agentFamilies.federatedBundleSequence.name, { trust_domain: trustDomain }).length > 0;
    } catch {
      return true;
    }
  }));
  return peerAgents.filter((_, i) => serves[i]);
}

async function heldBy(agents: StackComponent[], kind: string, keyId: string): Promise<number> {
  const held = await Promise.all(agents.map(async (a) => sampleSum(await scrape(a), 'svidscope_agent_svids_by_authority', { kind, authority_key_id: keyId })));
  return held.reduce((x, y) => x + y, 0);
}

async function federatedSequence(peer: StackComponent, trustDomain: string): Promise<number> {
  return sampleSum(await scrape(peer), 'svidscope_federation_bundle_sequence', { trust_domain: trustDomain });
}

const seconds = (ms: number) => Math.round(ms / 100) / 10;
