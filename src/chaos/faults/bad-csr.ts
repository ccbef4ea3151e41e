import * as grpc from '@grpc/grpc-js';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { nullLogger } from '../../common/log.js';
import { ServerClient, type BatchResult } from '../../identity-plane/server-api/node-client.js';
import type { EntryMsg } from '../../identity-plane/server-api/messages.js';
import { connectAdmin } from '../../identity-plane/server-api/admin-client.js';
import { parseTrustDomain } from '../../identity-plane/spiffe/id/index.js';
import { certificateFacts, parseCertificates } from '../../identity-plane/spiffe/x509/index.js';
import { createCsr, generateKeyPair } from '../../identity-plane/spiffe/mint/index.js';
import type { MethodStep } from '../experiment/schema.js';
import { component, type StackComponent, type StackView } from '../stack.js';
import { classify, serverTrust } from './attestation.js';
import { PacedCalls } from './paced.js';
import type { FaultContext, FaultKindImpl, PreparedFault } from './types.js';
import { SvidscopeError } from '../../common/errors/catalog.js';

type BadCsr = Extract<MethodStep, { fault: 'bad-csr' }>;

/** The run output of the fault. It is live: the counts grow while the loop runs, and are final after release(). */
export type BadCsrOutput = {
  agent: string;
  /** The agent's SPIFFE ID (from its SVID's URI SAN): the identity the calls are made under. */
  agentId: string;
  server: string;
  address: string;
  /** The entry the CSRs ask an SVID for (one the agent is the parent of). */
  entryId: string;
  entrySpiffeId: string;
  /** CSRs per second. */
  ratePerSecond: number;
  /** CSRs per BatchNewX509SVID call. */
  batch: number;
  /** BatchNewX509SVID calls made so far. */
  attempted: number;
  /** Calls that got no per-CSR results (refused as a whole, or no answer); by status in `callErrors`. */
  failed: number;
  /** CSRs sent so far (`attempted` × `batch`). */
  csrsSent: number;
  /** Per-CSR results by gRPC status name (INVALID_ARGUMENT for a CSR that cannot be parsed). */
  byStatus: Record<string, number>;
  /** Failed calls by gRPC status name; `ERROR` for a client-side failure. */
  callErrors: Record<string, number>;
  /** CSRs the server signed: always 0 unless the server signs garbage. */
  signed: number;
  /** Calls without an answer when release() stopped waiting. */
  unanswered: number;
  /** The first per-CSR status message (the server's reason for refusing). */
  firstResult?: string;
  firstError?: string;
  stoppedBy: 'running' | 'duration' | 'release' | 'unreachable';
  startedAt: string;
  stoppedAt?: string;
};

/** The server the agent belongs to: the stack's server of the agent's trust domain. */
function agentServer(stack: StackView, agent: StackComponent): StackComponent {
  const server = [...stack.components.values()].find((c) => c.kind === 'server' && c.trustDomain === agent.trustDomain);
  if (!server?.serverAddress || !server.adminSocket) throw new SvidscopeError('chaos-target-invalid', `chaos: no server of trust domain ${agent.trustDomain} with an address and admin socket in endpoints.json (for ${agent.name})`);
  return server;
}

interface AgentIdentity {
  chainPem: string;
  keyPem: string;
  spiffeId: string;
}

/**
 * The agent's own SVID and key, as its SVID store wrote them (`<dataDir>/private/agent_svid.pem`
 * and `agent_svid.key`). A key that does not match the leaf (read between the agent's two writes
 * of a rotation) is refused, so the caller keeps the pair it had.
 */
function readAgentIdentity(agent: StackComponent): AgentIdentity {
  const dir = path.join(agent.dataDir!, 'private');
  const [svidFile, keyFile] = [path.join(dir, 'agent_svid.pem'), path.join(dir, 'agent_svid.key')];
  for (const f of [svidFile, keyFile]) if (!existsSync(f)) throw new SvidscopeError('chaos-target-invalid', `chaos: bad-csr calls the server as ${agent.name} and needs its SVID and key: ${f} not found (has ${agent.name} attested?)`);
  const chainPem = readFileSync(svidFile, 'utf8');
  const keyPem = readFileSync(keyFile, 'utf8');
  const leaf = parseCertificates(Buffer.from(chainPem))[0];
  const key = createPrivateKey(keyPem);
  if (!createPublicKey(key).export({ type: 'spki', format: 'der' }).equals(new X509Certificate(leaf.raw).publicKey.export({ type: 'spki', format: 'der' }))) {
    throw new SvidscopeError('chaos-target-invalid', `chaos: ${keyFile} does not match the certificate in ${svidFile} (is ${agent.name} rotating its SVID?)`);
  }
  const spiffeId = certificateFacts(new X509Certificate(leaf.raw)).uriSans[0];
  if (!spiffeId) throw new SvidscopeError('chaos-target-invalid', `chaos: ${svidFile} holds no SPIFFE ID (URI SAN)`);
  return { chainPem, keyPem, spiffeId };
}

/**
 * Bytes that are not a CSR: a real PKCS#10 request cut in half, as a build that truncates its
 * CSRs would send. The DER reader refuses it (`csr-invalid`: "the CSR cannot be decoded").
 */
function truncatedCsr(): Buffer {
  const key = generateKeyPair('ec-p256');
  const csr = createCsr(key.privateKey, key.publicKey);
  return csr.subarray(0, Math.floor(csr.length / 2));
}

/**
 * A misbehaving agent build: its CSRs cannot be parsed, so every X.509-SVID signing it asks for
 * fails. The harness reads the agent's own SVID and key from its data dir (the agent process is
 * not touched) and calls `BatchNewX509SVID` over mTLS as that agent, `batch` unparseable CSRs per
 * call for an entry the agent is the parent of, `ratePerSecond` CSRs a second, until the step's
 * duration ends or release(). Each CSR reaches the server's signing path and is refused there, so
 * it counts in the X.509 issuance SLI (a signing failure and an issuance observation). Nothing
 * persists, so there is nothing to roll back; a crashed harness takes the loop with it.
 */
export const badCsr: FaultKindImpl<BadCsr> = {
  plan: (s) => ({
    inject: `from the harness, as ${s.agent} (its own SVID and key from <dataDir>/private/, over mTLS), BatchNewX509SVID calls of ${s.batch} unparseable CSRs for an entry ${s.agent} is the parent of, ${s.ratePerSecond} CSRs/s (a call every ${+(s.batch / s.ratePerSecond).toFixed(3)}s) until the step's ${s.durationMs / 1000}s or the rollback; every CSR must be refused (INVALID_ARGUMENT). ${s.agent}'s process is not touched`,
    rollback: 'nothing persistent to undo (nothing is signed, the agent is not touched); the rollback stops the calls',
  }),
  async prepare(s: BadCsr, ctx: FaultContext): Promise<PreparedFault> {
    const agent = component(ctx.stack, s.agent);
    if (agent.kind !== 'agent' || !agent.dataDir) throw new SvidscopeError('chaos-target-invalid', `chaos: ${s.agent} is not an agent with a data dir (bad-csr calls the server as an agent)`);
    if (!agent.trustDomain) throw new SvidscopeError('chaos-target-invalid', `chaos: endpoints.json gives no trust domain for ${s.agent}`);
    const server = agentServer(ctx.stack, agent);
    const td = parseTrustDomain(agent.trustDomain);
    const trust = await serverTrust(server);
    const address = server.serverAddress!;
    const intervalMs = (s.batch * 1000) / s.ratePerSecond;
    const out: BadCsrOutput = {
      agent: agent.name, agentId: '', server: server.name, address, entryId: '', entrySpiffeId: '', ratePerSecond: s.ratePerSecond, batch: s.batch,
      attempted: 0, failed: 0, csrsSent: 0, byStatus: {}, callErrors: {}, signed: 0, unanswered: 0, stoppedBy: 'running', startedAt: '',
    };
    const client = new ServerClient({ addresses: [address], trustDomain: td, logger: nullLogger() });
    client.setTrust(trust);
    let identity: AgentIdentity | undefined;
    let params: { entry_id: string; csr: Buffer }[] = [];
    let loop: PacedCalls | undefined;
    let settled = false;

    /** Follows the agent's SVID rotations: a new pair on disk replaces the one in use. */
    const refreshIdentity = () => {
      let next: AgentIdentity;
      try {
        next = readAgentIdentity(agent);
      } catch {
        return; // mid-rotation or gone: keep the pair in use (the server only checks the agent record)
      }
      if (identity && next.chainPem === identity.chainPem && next.keyPem === identity.keyPem) return;
      identity = next;
      client.setIdentity(next.chainPem, next.keyPem);
    };

    type CallResult = { ok: true; results: BatchResult[] } | { ok: false; status: string; answered: boolean; error: string };
    const call = async (): Promise<CallResult> => {
      out.attempted++;
      out.csrsSent += s.batch;
      refreshIdentity();
      try {
        const res = await client.batchNewX509Svid(params);
        return { ok: true, results: res.results ?? [] };
      } catch (err) {
        return { ok: false, ...classify(err), error: (err as Error).message };
      }
    };
    const record = (r: CallResult) => {
      if (settled) return;
      if (!r.ok) {
        out.failed++;
        out.callErrors[r.status] = (out.callErrors[r.status] ?? 0) + 1;
        out.firstError ??= r.error;
        return;
      }
      for (const x of r.results) {
        const status = grpc.status[x.status_code] ?? String(x.status_code);
        out.byStatus[status] = (out.byStatus[status] ?? 0) + 1;
        out.firstResult ??= `${status}: ${x.status_message}`;
        if (x.status_code === grpc.status.OK) {
          out.signed++;
          ctx.progress(`bad-csr: ${server.name} SIGNED an unparseable CSR for ${out.entrySpiffeId}`);
        }
      }
    };
    const fail = (message: string): never => {
      settled = true;
      out.stoppedBy = 'unreachable';
      out.stoppedAt = ctx.clock.now().toISOString();
      client.close();
      throw new SvidscopeError('unavailable', message);
    };

    return {
      target: agent.name,
      rollback: [],
      async apply() {
        identity = readAgentIdentity(agent);
        client.setIdentity(identity.chainPem, identity.keyPem);
        out.agentId = identity.spiffeId;
        const admin = connectAdmin(server.adminSocket!);
        let entries: EntryMsg[];
        try {
          entries = (await admin.call<{ entries?: EntryMsg[] }>('ListEntries', { filter: { by_parent_id: identity.spiffeId } })).entries ?? [];
        } finally {
          admin.close();
        }
        const nowS = ctx.clock.nowMs() / 1000;
        const entry = entries.filter((e) => Number(e.expires_at || 0) === 0 || Number(e.expires_at) > nowS).sort((a, b) => a.spiffe_id.localeCompare(b.spiffe_id) || a.id.localeCompare(b.id))[0];
        if (!entry) throw new SvidscopeError('chaos-target-invalid', `chaos: bad-csr needs an entry ${s.agent} may sign for, and ${server.name} has none with parent_id ${identity.spiffeId} (register one under the agent)`);
        out.entryId = entry.id;
        out.entrySpiffeId = entry.spiffe_id;
        const csr = truncatedCsr();
        params = Array.from({ length: s.batch }, () => ({ entry_id: entry.id, csr }));

        const t0 = ctx.clock.nowMs();
        out.startedAt = new Date(t0).toISOString();
        const deadline = t0 + s.durationMs;
        // The first call decides whether the fault is injected at all: a server that does not
        // answer, or refuses the call before its CSRs reach the signing path, is a failed injection.
        const first = await call();
        record(first);
        if (!first.ok && !first.answered) fail(`chaos: bad-csr could not reach ${server.name}'s node API at ${address} as ${s.agent}: ${first.error}`);
        if (!first.ok) fail(`chaos: ${server.name} refused BatchNewX509SVID from ${s.agent} (${identity.spiffeId}) before any CSR was checked: ${first.status}: ${first.error}`);
        if (first.ok && first.results.length > 0 && first.results.every((x) => x.status_code === grpc.status.PERMISSION_DENIED)) {
          fail(`chaos: ${server.name} does not authorize ${s.agent} for entry ${entry.id} (${entry.spiffe_id}): ${first.results[0].status_message}; the CSRs never reached the signing path`);
        }
        loop = new PacedCalls({
          startedAt: t0, clock: ctx.clock, intervalMs, deadline, maxCalls: Infinity,
          call: () => call().then(record),
          onEnd: () => { // no call limit: only the step's duration ends it
            if (out.stoppedBy === 'running') out.stoppedBy = 'duration';
          },
        });
        void loop.finished.then(() => (out.stoppedAt ??= ctx.clock.now().toISOString()));
        return out;
      },
      async release() {
        if (!loop) {
          client.close();
          return;
        }
        if (out.stoppedBy === 'running') out.stoppedBy = 'release';
        out.unanswered = await loop.release();
        settled = true;
        out.stoppedAt ??= ctx.clock.now().toISOString();
        client.close();
      },
    };
  },
};
