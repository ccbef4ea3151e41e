import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { nullLogger } from '../../common/log.js';
import { ServerCallError, ServerClient } from '../../identity-plane/server-api/node-client.js';
import { connectAdmin } from '../../identity-plane/server-api/admin-client.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../identity-plane/spiffe/bundle/index.js';
import { parseTrustDomain } from '../../identity-plane/spiffe/id/index.js';
import { createCsr, generateKeyPair } from '../../identity-plane/spiffe/mint/index.js';
import type { MethodStep } from '../experiment/schema.js';
import { component, type StackComponent } from '../stack.js';
import { PacedCalls } from './paced.js';
import type { FaultContext, FaultKindImpl, PreparedFault } from './types.js';
import { SvidscopeError } from '../../common/errors/catalog.js';

type Flood = Extract<MethodStep, { fault: 'attestation-flood' }>;

/** The run output of the flood. It is live: the counts grow while the flood runs, and are final after release(). */
export type FloodOutput = {
  server: string;
  address: string;
  count: number;
  ratePerSecond: number;
  /** Attestations sent so far. */
  attempted: number;
  /** Answers by gRPC status name (INVALID_ARGUMENT for an unknown join token); `ERROR` for a client-side failure. */
  byStatus: Record<string, number>;
  /** Attestations the server accepted: always 0 unless a random token matched an issued one. */
  accepted: number;
  /** Calls without an answer when release() stopped waiting. */
  unanswered: number;
  firstError?: string;
  stoppedBy: 'running' | 'count' | 'duration' | 'release' | 'unreachable';
  startedAt: string;
  stoppedAt?: string;
};

/**
 * The trust anchors a bootstrapping agent would use for the server's TLS: the PEM `svidscope up`
 * wrote (`<dataDir>/<server>-bundle.pem`, agents' trust_bundle_path), plus the server's current
 * X.509 authorities from its admin socket, so a CA rotated since the stack started still verifies.
 */
export async function serverTrust(c: StackComponent): Promise<string> {
  const parts: string[] = [];
  if (c.bundlePem && existsSync(c.bundlePem)) parts.push(readFileSync(c.bundlePem, 'utf8'));
  let liveError = '';
  if (c.adminSocket && c.trustDomain) {
    const admin = connectAdmin(c.adminSocket);
    try {
      const b = await admin.call<{ document: Buffer }>('GetBundle', {});
      parts.push(x509BundleToPem(parseSpiffeBundle(parseTrustDomain(c.trustDomain), b.document)));
    } catch (err) {
      liveError = (err as Error).message;
    } finally {
      admin.close();
    }
  }
  if (parts.length === 0) throw new SvidscopeError('chaos-target-invalid', `chaos: no trust bundle for ${c.name}'s TLS: ${c.bundlePem ?? '<dataDir>/<server>-bundle.pem'} not found${liveError ? ` and GetBundle failed (${liveError})` : ''}`);
  return parts.join('\n');
}

/** gRPC status name of a failed attestation, and whether the server itself answered (rejected) it. */
export function classify(err: unknown): { status: string; answered: boolean } {
  if (err instanceof ServerCallError) {
    const status = grpc.status[err.status] ?? String(err.status);
    return { status, answered: err.status !== grpc.status.UNAVAILABLE && err.status !== grpc.status.DEADLINE_EXCEEDED && err.status !== grpc.status.CANCELLED };
  }
  return { status: 'ERROR', answered: false };
}

/**
 * Node attestation failures: an attacker, or a misconfigured fleet, presenting join tokens that
 * were never issued. The harness attests exactly as a booting agent does (the agent's own
 * ServerClient: TLS to the server's address verified against its bundle and SPIFFE ID, a fresh
 * key and CSR, `AttestAgent {join_token}`), one new client per attempt, `ratePerSecond` a second,
 * at most `count` times; the flood stops at the step's duration end or at release(). Every
 * attempt must be refused. Nothing persists on the server (the tokens never existed), so there is
 * nothing to roll back; a crashed harness takes the flood with it.
 */
export const attestationFlood: FaultKindImpl<Flood> = {
  plan: (s) => ({
    inject: `from the harness, up to ${s.count} AttestAgent calls with random never-issued join tokens to ${s.server} over TLS, ${s.ratePerSecond}/s (about ${Math.ceil(s.count / s.ratePerSecond)}s; stops at the step's ${s.durationMs / 1000}s or at rollback)`,
    rollback: 'nothing persistent to undo (the tokens were never issued, so no agent is registered); the rollback stops the flood',
  }),
  async prepare(s: Flood, ctx: FaultContext): Promise<PreparedFault> {
    const c = component(ctx.stack, s.server);
    if (c.kind !== 'server' || !c.serverAddress) throw new SvidscopeError('chaos-target-invalid', `chaos: ${s.server} is not a server (attestation-flood targets a server's node API)`);
    if (!c.trustDomain) throw new SvidscopeError('chaos-target-invalid', `chaos: endpoints.json gives no trust domain for ${s.server}`);
    const td = parseTrustDomain(c.trustDomain);
    const trust = await serverTrust(c);
    const address = c.serverAddress;
    const out: FloodOutput = { server: c.name, address, count: s.count, ratePerSecond: s.ratePerSecond, attempted: 0, byStatus: {}, accepted: 0, unanswered: 0, stoppedBy: 'running', startedAt: '' };
    let loop: PacedCalls | undefined;
    let settled = false;

    const record = (status: string, error?: string) => {
      if (settled) return;
      out.byStatus[status] = (out.byStatus[status] ?? 0) + 1;
      if (error && out.firstError === undefined) out.firstError = error;
    };
    /** One booting "agent": its own client, key and CSR, and a token nobody issued. */
    const attempt = async (): Promise<{ status: string; answered: boolean; error?: string }> => {
      out.attempted++;
      const client = new ServerClient({ addresses: [address], trustDomain: td, logger: nullLogger() });
      try {
        client.setTrust(trust);
        const key = generateKeyPair('ec-p256');
        const res = await client.attest(randomUUID(), createCsr(key.privateKey, key.publicKey));
        out.accepted++;
        ctx.progress(`attestation-flood: ${s.server} ACCEPTED a random join token (agent ${res.svid.spiffe_id})`);
        return { status: 'OK', answered: true };
      } catch (err) {
        return { ...classify(err), error: (err as Error).message };
      } finally {
        client.close();
      }
    };

    return {
      target: c.name,
      rollback: [],
      async apply() {
        const t0 = ctx.clock.nowMs();
        out.startedAt = new Date(t0).toISOString();
        const deadline = t0 + s.durationMs;
        // The first attempt decides whether the fault is injected at all: a server that does not
        // answer (down, wrong address, TLS not verifiable) is a failed injection, not a flood.
        const first = await attempt();
        record(first.status, first.error);
        if (!first.answered) {
          settled = true;
          out.stoppedBy = 'unreachable';
          out.stoppedAt = ctx.clock.now().toISOString();
          throw new SvidscopeError('unavailable', `chaos: attestation-flood could not reach ${s.server}'s node API at ${address}: ${first.error ?? first.status}`);
        }
        loop = new PacedCalls({
          startedAt: t0, clock: ctx.clock, intervalMs: 1000 / s.ratePerSecond, deadline, maxCalls: s.count,
          call: () => attempt().then((r) => record(r.status, r.error)),
          onEnd: (why) => {
            if (out.stoppedBy === 'running') out.stoppedBy = why;
          },
        });
        void loop.finished.then(() => (out.stoppedAt ??= ctx.clock.now().toISOString()));
        return out;
      },
      async release() {
        if (!loop) return;
        if (out.stoppedBy === 'running') out.stoppedBy = 'release';
        out.unanswered = await loop.release();
        settled = true;
        out.stoppedAt ??= ctx.clock.now().toISOString();
      },
    };
  },
};
