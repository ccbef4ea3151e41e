import * as grpc from '@grpc/grpc-js';
import { SpanAttr, withSpan } from '../../../common/telemetry/tracing.js';
import { isSvidscopeError, SvidscopeError } from '../../../common/errors/catalog.js';
import { parseSpiffeId } from '../../spiffe/id/index.js';
import { checkJwtAudienceLimits, mintJwtSvid } from '../../spiffe/jwtsvid/index.js';
import type { RegistrationEntry } from '../datastore/types.js';
import type { SignedItem, SigningJob, SigningPool } from '../ca/signing-pool.js';
import type { X509SvidMsg } from '../../server-api/messages.js';
import type { Admission } from './admission.js';
import type { AgentAuth, AgentCall, AuthenticatedAgent } from './agent-auth.js';
import type { NodeServiceDeps, NodeServiceEvents } from './node-service.js';

/** SPIRE's per-request cap on CSRs in one batch. */
export const MAX_BATCH = 500;

/** A bounded reason label for a refused signing: the catalogue code, except the one the SLOs leave out. */
function reasonOf(err: unknown): string {
  if (!isSvidscopeError(err)) return 'internal';
  // A caller not authorized for the entry is not a signing failure; the SLO excludes it by this
  // label value (the gRPC status name, as the batch path reports it too).
  return err.code === 'permission-denied' ? 'permission_denied' : err.code;
}

/** One CSR's answer in a batch: an SVID, or the status it was refused with. */
type BatchResult = { status_code: number; status_message: string; svid?: X509SvidMsg };

/** A batch once authorized: the places refused already answered, the others to sign. */
interface PlannedBatch {
  results: BatchResult[];
  jobs: SigningJob[];
  /** For each job, its place in the batch and its entry. */
  jobOf: { at: number; entry: RegistrationEntry }[];
}

export type SvidIssuanceDeps = Pick<NodeServiceDeps, 'trustDomain' | 'ca' | 'clock' | 'logger' | 'ttl' | 'jwtAudience' | 'tracer'> & {
  auth: AgentAuth;
  admission: Admission;
  signingPool: SigningPool;
  /** The entries an agent is authorized for now. */
  authorized(agent: AuthenticatedAgent): Promise<RegistrationEntry[]>;
  events: NodeServiceEvents;
};

/** BatchNewX509SVID: authorization here, the CSR checks and signatures in the signing pool (worker threads). */
export function createX509SvidHandler(deps: Omit<SvidIssuanceDeps, 'ca' | 'jwtAudience'>) {
  const { trustDomain, clock, logger, auth, admission, signingPool, authorized, events: ev } = deps;

  /** Answers at once the places whose entry the agent is not authorized for; the others become signing jobs. */
  const planBatch = (params: { entry_id: string; csr: Buffer }[], authorizedEntries: RegistrationEntry[]): PlannedBatch => {
    const byId = new Map(authorizedEntries.map((e) => [e.id, e]));
    const batch: PlannedBatch = { results: new Array<BatchResult>(params.length), jobs: [], jobOf: [] };
    params.forEach((p, at) => {
      const entry = byId.get(p.entry_id);
      if (!entry) {
        ev.refused?.('x509', 'permission_denied', 0);
        batch.results[at] = { status_code: grpc.status.PERMISSION_DENIED, status_message: `agent is not authorized for entry ${JSON.stringify(p.entry_id)}` };
        return;
      }
      batch.jobs.push({ csr: p.csr ?? Buffer.alloc(0), spiffeId: entry.spiffeId, ttlSeconds: entry.x509SvidTtl || deps.ttl.defaultX509SvidSeconds, dnsNames: entry.dnsNames });
      batch.jobOf.push({ at, entry });
    });
    return batch;
  };

  /** Signs the batch's jobs and answers their places. */
  const signBatch = async ({ results, jobs, jobOf }: PlannedBatch, call: AgentCall, release: (done?: number) => void): Promise<void> => {
    // Signed in chunks, each started only while the caller still waits (deadline, cancel).
    let signed: SignedItem[];
    try {
      signed = await signingPool.sign({ jobs, nowMs: () => clock.nowMs(), beforeChunk: () => admission.checkDeadline(call), chunkDone: (n) => release(n) });
    } catch (err) {
      // Nothing of the batch reaches the agent: each CSR counts as refused, with the reason. A
      // deadline that passed between chunks is the server being too slow for its callers, which
      // the issuance SLO must see as much as a worker that died.
      if (isSvidscopeError(err) && (err.code === 'signing-worker-failed' || err.code === 'deadline-expired')) jobs.forEach(() => ev.refused?.('x509', err.code, 0));
      throw err;
    }
    signed.forEach(({ outcome, chainTail }, k) => {
      const { at, entry } = jobOf[k];
      ev.csr?.(outcome.ok || outcome.csrValid ? 'valid' : 'invalid');
      if (outcome.ok) {
        ev.signed?.('x509', outcome.seconds);
        results[at] = { status_code: grpc.status.OK, status_message: '', svid: { cert_chain: [outcome.der, ...chainTail], spiffe_id: entry.spiffeId, expires_at: String(Math.floor(outcome.notAfterMs / 1000)), hint: entry.hint, entry_id: entry.id } };
        return;
      }
      const err = new SvidscopeError(outcome.code, outcome.message);
      ev.refused?.('x509', reasonOf(err), outcome.seconds);
      if (outcome.code === 'internal') logger.error({ err, entryId: entry.id }, 'failed to sign X509-SVID');
      results[at] = { status_code: err.grpcStatus, status_message: outcome.code === 'internal' ? 'failed to sign X509-SVID' : outcome.message };
    });
  };

  return async (req: { params: { entry_id: string; csr: Buffer }[] }, call: AgentCall): Promise<{ results: BatchResult[] }> => {
    admission.checkDeadline(call);
    const agent = await auth.authenticate(call);
    if (req.params.length === 0) throw new SvidscopeError('usage', 'no CSR in the batch');
    if (req.params.length > MAX_BATCH) throw new SvidscopeError('usage', `at most ${MAX_BATCH} CSRs per batch`);
    const batch = planBatch(req.params, await authorized(agent));
    let release: (done?: number) => void;
    try {
      release = admission.reserve(req.params.length);
    } catch (err) {
      // Load shed after authentication: each CSR the agent was authorized for is an issuance that
      // did not happen (the SLO's numerator). A deadline found expired before authentication is
      // not counted here: that caller is not known to be an agent (limit_refusals_total has it).
      batch.jobs.forEach(() => ev.refused?.('x509', reasonOf(err), 0));
      throw err;
    }
    try {
      return await withSpan(deps.tracer, 'svidscope.server/mint x509-svid batch', { [SpanAttr.svidType]: 'x509', [SpanAttr.count]: req.params.length, [SpanAttr.trustDomain]: trustDomain.name }, async () => {
        await signBatch(batch, call, release);
        return { results: batch.results };
      });
    } finally {
      release();
    }
  };
}

/** NewJWTSVID: one JWT-SVID for an authorized entry, signed with the active JWT key on the main thread. */
export function createJwtSvidHandler(deps: Omit<SvidIssuanceDeps, 'signingPool'>) {
  const { trustDomain, ca, clock, auth, admission, authorized, events: ev } = deps;
  const findAuthorized = async (agent: AuthenticatedAgent, entryId: string): Promise<RegistrationEntry> => {
    const entry = (await authorized(agent)).find((e) => e.id === entryId);
    if (!entry) throw new SvidscopeError('permission-denied', `agent is not authorized for entry ${JSON.stringify(entryId)}`);
    return entry;
  };

  return async (req: { entry_id: string; audience: string[] }, call: AgentCall) => {
    admission.checkDeadline(call);
    const agent = await auth.authenticate(call);
    const audience = (req.audience ?? []).filter((a) => a !== '');
    if (audience.length === 0) throw new SvidscopeError('usage', 'at least one audience is required');
    const hit = checkJwtAudienceLimits(audience, deps.jwtAudience);
    if (hit) {
      ev.limitHit?.(hit.limit);
      throw hit;
    }
    const start = process.hrtime.bigint();
    let entry: RegistrationEntry;
    try {
      entry = await findAuthorized(agent, req.entry_id);
    } catch (err) {
      ev.refused?.('jwt', reasonOf(err), Number(process.hrtime.bigint() - start) / 1e9);
      throw err;
    }
    const key = ca.activeJwtKey;
    const now = clock.now();
    const left = Math.floor((key.notAfter - now.getTime()) / 1000);
    const ttl = Math.max(1, Math.min(entry.jwtSvidTtl || deps.ttl.defaultJwtSvidSeconds, left));
    const token = await withSpan(deps.tracer, 'svidscope.server/mint jwt-svid',
      { [SpanAttr.svidType]: 'jwt', [SpanAttr.spiffeId]: entry.spiffeId, [SpanAttr.entryId]: entry.id, [SpanAttr.ttl]: ttl, [SpanAttr.trustDomain]: trustDomain.name },
      () => mintJwtSvid({ id: parseSpiffeId(entry.spiffeId), audience, ttlSeconds: ttl, now, key: { keyId: key.keyId, privateKey: key.privateKey } }));
    ev.signed?.('jwt', Number(process.hrtime.bigint() - start) / 1e9);
    const iat = Math.floor(now.getTime() / 1000);
    return { svid: { token, spiffe_id: entry.spiffeId, expires_at: String(iat + ttl), issued_at: String(iat), hint: entry.hint, entry_id: entry.id } };
  };
}
