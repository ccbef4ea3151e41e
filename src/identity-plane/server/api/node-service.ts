import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { Tracer } from '@opentelemetry/api';
import { SpanAttr, withSpan } from '../../../common/telemetry/tracing.js';
import type { Clock } from '../../../common/clock.js';
import { isSvidscopeError, SvidscopeError, type ErrorCode } from '../../../common/errors/catalog.js';
import type { Logger } from '../../../common/log.js';
import { parseSpiffeId, type SpiffeId, type TrustDomain } from '../../spiffe/id/index.js';
import { checkJwtAudienceLimits, mintJwtSvid, type JwtAudienceLimits } from '../../spiffe/jwtsvid/index.js';
import { parseCsr } from '../../spiffe/mint/index.js';
import type { CaManager } from '../ca/manager.js';
import type { BundlePublisher } from '../bundle/publisher.js';
import type { AttestedAgent, Datastore, RegistrationEntry } from '../datastore/types.js';
import { attestJoinToken } from '../attestor-node/join-token.js';
import type { AgentCache } from '../registration/agent-cache.js';
import type { BundleCache } from '../bundle/bundle-cache.js';
import type { EntryCache } from '../registration/entry-cache.js';
import { toNumber, unary } from './grpc.js';
import { normalSerial, PeerIdentityCache } from './peer-identity.js';
import { entryMessage } from './entry-message.js';
import { Admission, DEFAULT_SIGNING_QUEUE_MAX_CSRS, SIGNING_SLICE } from './admission.js';
import { SigningPool, type SignedItem, type SigningJob } from '../ca/signing-pool.js';
import { bundleMessage, type BundleMsg, type ChangeNotificationMsg, type EntryMsg, type SyncRequestMsg, type SyncResponseMsg, type X509SvidMsg } from '../../server-api/messages.js';
import { entryDelta, entrySetDigest } from '../../server-api/entry-sync.js';
import { bundleStateDigest } from '../../server-api/bundle-state.js';
import { toServiceError } from '../../../common/errors/grpc.js';
import type { ChangeNotifier } from './change-notifier.js';

export interface NodeServiceDeps {
  trustDomain: TrustDomain;
  datastore: Datastore;
  /** Stored bundles in memory for GetBundles; without it each call lists them from the datastore. */
  bundleCache?: BundleCache;
  ca: CaManager;
  bundles: BundlePublisher;
  entries: EntryCache;
  /** Agent records as of the change feed; authentication reads these, not the datastore. */
  agents: AgentCache;
  clock: Clock;
  logger: Logger;
  ttl: { defaultX509SvidSeconds: number; defaultJwtSvidSeconds: number; agentSeconds: number };
  /** How long the serial a renewal replaced stays accepted (a lost renewal answer can be retried). */
  agentRenewalGraceSeconds: number;
  /** Limits on the audiences of one NewJWTSVID request. */
  jwtAudience: JwtAudienceLimits;
  /** Bound on CSRs admitted for signing and not signed yet (`signing_queue_max_csrs`). */
  signingQueueMaxCsrs?: number;
  /** Where BatchNewX509SVID's CSRs are checked and signed; without it, on the main thread. */
  signingPool?: SigningPool;
  /** Called after each request with its outcome (telemetry). */
  observe?: (method: string, code: grpc.status, seconds: number) => void;
  events?: NodeServiceEvents;
  tracer?: Tracer;
  /** The WatchChanges streams (push); without it the method answers UNIMPLEMENTED and agents poll. */
  changes?: ChangeNotifier;
}

/** Telemetry hooks of the signing paths; the service knows nothing of metrics libraries. */
export interface NodeServiceEvents {
  signed?(svidType: 'x509' | 'jwt' | 'agent_x509', seconds: number): void;
  refused?(svidType: 'x509' | 'jwt' | 'agent_x509', reason: string, seconds: number): void;
  csr?(result: 'valid' | 'invalid'): void;
  attestation?(method: string, result: 'success' | 'failure', reason: string): void;
  /** An agent call refused at authentication; reason is one of not_attested, banned, stale_serial. */
  agentRefused?(reason: 'not_attested' | 'banned' | 'stale_serial'): void;
  /** A request refused by a configured limit (bounded: the limit's config key). */
  limitHit?(limit: string): void;
  /** One entry sync answered: unchanged, a delta (incremental) or the full list, with the agent's authorized entry count. */
  entrySync?(kind: 'unchanged' | 'incremental' | 'full', entries: number): void;
}

/** Attestation failure reasons by catalogue code: a fixed set, so the label stays bounded. */
const ATTESTATION_REASON: Partial<Record<ErrorCode, string>> = {
  'join-token-unknown': 'token_unknown',
  'join-token-expired': 'token_expired',
  'agent-banned': 'banned',
  'csr-invalid': 'csr_invalid',
  'node-attestation-unsupported': 'unsupported_method',
};

function attestationReason(err: unknown): string {
  if (!isSvidscopeError(err) || err.code === 'internal') return 'internal';
  return ATTESTATION_REASON[err.code] ?? 'invalid_request';
}

/** A bounded reason label for a refused signing: the catalogue code, except the one the SLOs leave out. */
function reasonOf(err: unknown): string {
  if (!isSvidscopeError(err)) return 'internal';
  // A caller not authorized for the entry is not a signing failure; the SLO excludes it by this
  // label value (the gRPC status name, as the batch path reports it too).
  return err.code === 'permission-denied' ? 'permission_denied' : err.code;
}


/** The three ways an agent is refused at authentication, worded once; agents tell them apart by code. */
const refusal = {
  notAttested: (id: string) => new SvidscopeError('agent-not-attested', `agent ${id} is not attested or was evicted; attest again`),
  banned: (id: string) => new SvidscopeError('agent-banned', `agent ${id} is banned`),
  staleSerial: (id: string) => new SvidscopeError('agent-svid-stale', `agent ${id} presented an SVID that is no longer its current one (renewed, re-attested or evicted since); use the latest SVID or attest again`),
};

/** Whether the record takes this serial: its current one, or the one a renewal replaced while in grace. */
function acceptsSerial(a: AttestedAgent, presented: string, nowMs: number): boolean {
  return presented === normalSerial(a.serialNumber)
    || (!!a.previousSerialNumber && presented === normalSerial(a.previousSerialNumber) && nowMs < (a.previousSerialValidUntil?.getTime() ?? 0));
}

/** An entry as the incremental sync names it: (id, revision). */
const pairOf = (e: RegistrationEntry) => ({ id: e.id, revision: String(e.revision) });

/** SPIRE's per-request cap on CSRs in one batch. */
export const MAX_BATCH = 500;

/**
 * The agent-facing API. Every method but AttestAgent requires the caller's agent X.509-SVID
 * (verified by TLS against the bundle); the agent record must exist (not evicted) and not be banned.
 */
export function createNodeService(deps: NodeServiceDeps): grpc.UntypedServiceImplementation {
  const { trustDomain, datastore, ca, bundles, entries, agents, clock, logger } = deps;
  const wrap = <Req, Res>(method: string, fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>) =>
    unary(logger, method, fn, deps.observe, deps.tracer);

  const ev = deps.events ?? {};
  const peers = new PeerIdentityCache(trustDomain);
  const signingPool = deps.signingPool ?? new SigningPool({ size: 0, chunk: SIGNING_SLICE, signer: () => ca.x509Signer, minter: () => ca.x509Minter, logger });
  const admission = new Admission({ signingQueueMaxCsrs: deps.signingQueueMaxCsrs ?? DEFAULT_SIGNING_QUEUE_MAX_CSRS, limitHit: (l) => ev.limitHit?.(l) });
  const checkCsr = (csrBytes: Buffer) => {
    try {
      const csr = parseCsr(csrBytes);
      ev.csr?.('valid');
      return csr;
    } catch (err) {
      ev.csr?.('invalid');
      throw err;
    }
  };
  const mintAgentSvid = (id: SpiffeId, csrBytes: Buffer): { svid: X509SvidMsg; serial: string; expiresAt: Date } => {
    const start = process.hrtime.bigint();
    const csr = checkCsr(csrBytes);
    const minted = ca.x509Minter.mint({ id, publicKey: csr.publicKey, ttlSeconds: deps.ttl.agentSeconds, now: clock.now() });
    ev.signed?.('agent_x509', Number(process.hrtime.bigint() - start) / 1e9);
    return {
      svid: { cert_chain: [minted.der, ...ca.x509ChainTail], spiffe_id: id.toString(), expires_at: String(Math.floor(minted.notAfter.getTime() / 1000)), hint: '', entry_id: '' },
      serial: minted.serial.toString(16),
      expiresAt: minted.notAfter,
    };
  };

  /**
   * The caller's agent record, once its SVID is proven current: TLS proved the chain, but an SVID a
   * renewal or a new attestation replaced, or one issued before an eviction, must not keep working.
   * Returns the serial presented too (a renewal keeps it acceptable for the grace window).
   */
  const authenticate = async (call: grpc.ServerUnaryCall<unknown, unknown>): Promise<AttestedAgent & { presentedSerial: string }> => {
    const { id, serial: presented } = peers.resolveCall(call);
    const accepts = (a: AttestedAgent) => acceptsSerial(a, presented, clock.nowMs());
    // The cached record decides in the steady state. A miss or a serial it does not know may be a
    // change this server has not pulled yet (an attestation or renewal through another server), so
    // pull the feed once before refusing; bans and evictions already cached refuse without a read.
    let agent = agents.get(id.toString());
    if (!agent || (!agent.banned && !accepts(agent))) {
      await agents.refreshForUnknown();
      agent = agents.get(id.toString());
    }
    if (!agent) {
      ev.agentRefused?.('not_attested');
      throw refusal.notAttested(id.toString());
    }
    if (agent.banned) {
      ev.agentRefused?.('banned');
      throw refusal.banned(id.toString());
    }
    if (!accepts(agent)) {
      ev.agentRefused?.('stale_serial');
      throw refusal.staleSerial(id.toString());
    }
    return { ...agent, presentedSerial: presented };
  };

  // The entry view is refreshed by the server's periodic tick and by local admin writes, not per
  // request: a database round trip per signature would make the datastore the bottleneck.
  const authorized = async (agent: AttestedAgent): Promise<RegistrationEntry[]> => {
    return entries.authorizedFor(agent.spiffeId, agent.selectors, clock.nowMs());
  };
  const findAuthorized = async (agent: AttestedAgent, entryId: string): Promise<RegistrationEntry> => {
    const entry = (await authorized(agent)).find((e) => e.id === entryId);
    if (!entry) throw new SvidscopeError('permission-denied', `agent is not authorized for entry ${JSON.stringify(entryId)}`);
    return entry;
  };

  const storedBundles = () => deps.bundleCache?.list() ?? datastore.listBundles();
  // The own document's hash is kept per document (it changes a few times a day, syncs come thousands a second).
  let ownDocument: { document: Buffer; sha256: Buffer } | undefined;
  /** What GetBundles would answer now, as the digest the sync answer carries. */
  const bundleState = async (): Promise<Buffer> => {
    const document = bundles.currentDocument;
    if (ownDocument?.document !== document) ownDocument = { document, sha256: createHash('sha256').update(document).digest() };
    const tainted = ca.taintedAuthorities();
    const federated = (await storedBundles()).filter((b) => b.trustDomain !== trustDomain.name)
      .map((b) => ({ trustDomain: b.trustDomain, sequence: b.sequence, updatedAtMs: b.updatedAt.getTime() }));
    return bundleStateDigest({ ownDocumentSha256: ownDocument.sha256, taintedX509: tainted.x509, taintedJwtKeyIds: tainted.jwt, federated });
  };

  const attest = async (req: { attestation_type: string; payload: Buffer; csr: Buffer }) => {
    if (req.attestation_type !== 'join_token') throw new SvidscopeError('node-attestation-unsupported', `attestation type ${JSON.stringify(req.attestation_type)} is not supported (use join_token)`);
    if (!req.csr?.length) throw new SvidscopeError('csr-invalid', 'a CSR is required');
    checkCsr(req.csr); // refuse a bad CSR before the one-time token is burnt
    const { agentId, selectors } = await attestJoinToken(datastore, trustDomain, req.payload.toString('utf8'), clock.now());
    const existing = await datastore.getAgent(agentId.toString()).catch(() => undefined);
    if (existing?.banned) throw refusal.banned(agentId.toString());
    const { svid, serial, expiresAt } = mintAgentSvid(agentId, req.csr);
    const record = { spiffeId: agentId.toString(), serialNumber: serial, expiresAt, banned: false, attestationType: 'join_token', selectors };
    if (existing) await datastore.updateAgent(record, clock.now());
    else await datastore.createAgent(record, clock.now());
    await agents.refresh(); // the new serial is the only one this server accepts from now on
    logger.info({ agentId: agentId.toString() }, 'agent attested');
    return { svid, bundle: bundleMessage(bundles.current, bundles.currentDocument, bundles.currentUpdatedAt) };
  };

  return {
    AttestAgent: wrap('AttestAgent', async (req: { attestation_type: string; payload: Buffer; csr: Buffer }, call) => {
      admission.checkDeadline(call);
      try {
        const res = await attest(req);
        ev.attestation?.(req.attestation_type || 'none', 'success', 'none');
        return res;
      } catch (err) {
        ev.attestation?.(req.attestation_type === 'join_token' ? 'join_token' : 'other', 'failure', attestationReason(err));
        throw err;
      }
    }),

    RenewAgent: wrap('RenewAgent', async (req: { csr: Buffer }, call) => {
      admission.checkDeadline(call);
      const agent = await authenticate(call);
      if (!req.csr?.length) throw new SvidscopeError('csr-invalid', 'a CSR is required');
      // The write starts from the stored record, not the cached one: a ban through another server not
      // pulled yet must neither be lost by this write nor let the renewal through.
      let stored: AttestedAgent;
      try {
        stored = await datastore.getAgent(agent.spiffeId);
      } catch (err) {
        if (isSvidscopeError(err) && err.code === 'not-found') throw refusal.notAttested(agent.spiffeId);
        throw err;
      }
      if (stored.banned) throw refusal.banned(agent.spiffeId);
      const now = clock.nowMs();
      if (!acceptsSerial(stored, agent.presentedSerial, now)) throw refusal.staleSerial(agent.spiffeId);
      const { svid, serial, expiresAt } = mintAgentSvid(parseSpiffeId(agent.spiffeId), req.csr);
      // Only the new serial and the one this request came with stay valid: an SVID from a parallel
      // renewal that was never used dies here. Renewing from the replaced serial keeps its deadline,
      // so the grace window cannot be stretched by renewing again and again.
      const fromCurrent = agent.presentedSerial === normalSerial(stored.serialNumber);
      const { createdAt: _c, updatedAt: _u, revision: _r, ...record } = stored;
      await datastore.updateAgent({
        ...record, serialNumber: serial, expiresAt, previousSerialNumber: agent.presentedSerial,
        previousSerialValidUntil: fromCurrent ? new Date(now + deps.agentRenewalGraceSeconds * 1000) : stored.previousSerialValidUntil,
      }, clock.now());
      await agents.refresh();
      return { svid };
    }),

    SyncAuthorizedEntries: wrap('SyncAuthorizedEntries', async (req: SyncRequestMsg, call): Promise<SyncResponseMsg> => {
      admission.checkDeadline(call);
      const agent = await authenticate(call);
      const list = await authorized(agent);
      let revision = 0;
      for (const e of list) if (e.revision > revision) revision = e.revision;
      // The revision of the newest authorized entry does not move on deletion, so the count is part of the key.
      const key = String(revision * 1_000_000 + list.length);
      const bundle_state = await bundleState();
      if (req.incremental) {
        // The agent said what it holds: answer exactly the difference, O(its entries).
        const delta = entryDelta(list, pairOf, req.known_entries ?? []);
        if (delta.changed.length === 0 && delta.deletedIds.length === 0) {
          deps.events?.entrySync?.('unchanged', list.length);
          return { entries: [], revision: key, unchanged: true, bundle_state };
        }
        deps.events?.entrySync?.('incremental', list.length);
        return { entries: delta.changed.map(entryMessage), revision: key, unchanged: false, incremental: true, deleted_ids: delta.deletedIds, digest: entrySetDigest(list.map(pairOf)), bundle_state };
      }
      // The first protocol (only known_revision): unchanged or the full list, as agents that predate deltas expect.
      if (toNumber(req.known_revision) === Number(key)) {
        deps.events?.entrySync?.('unchanged', list.length);
        return { entries: [], revision: key, unchanged: true, bundle_state };
      }
      deps.events?.entrySync?.('full', list.length);
      return { entries: list.map(entryMessage), revision: key, unchanged: false, digest: entrySetDigest(list.map(pairOf)), bundle_state };
    }),

    WatchChanges: (call: grpc.ServerWritableStream<unknown, ChangeNotificationMsg>) => {
      const fail = (err: unknown) => {
        call.emit('error', toServiceError(err, (e) => logger.error({ err: e, method: 'WatchChanges' }, 'unexpected error in handler')));
      };
      const changes = deps.changes;
      if (!changes) return fail(new SvidscopeError('unimplemented', 'this server does not push changes; poll SyncAuthorizedEntries'));
      void (async () => {
        const agent = await authenticate(call as unknown as grpc.ServerUnaryCall<unknown, unknown>);
        if (call.cancelled) return;
        const peer = call.getAuthContext()?.sslPeerCertificate;
        const svidNotAfterMs = Date.parse(peer?.valid_to ?? '') || agent.expiresAt.getTime();
        const close = changes.open({
          agentId: agent.spiffeId, selectors: agent.selectors, svidNotAfterMs,
          // The cached record decides, as for every call: bans, evictions and renewals reach it through the agent feed.
          recheck: () => {
            const now = agents.get(agent.spiffeId);
            if (!now) return refusal.notAttested(agent.spiffeId);
            if (now.banned) return refusal.banned(agent.spiffeId);
            if (!acceptsSerial(now, agent.presentedSerial, clock.nowMs())) return refusal.staleSerial(agent.spiffeId);
            return undefined;
          },
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

    BatchNewX509SVID: wrap('BatchNewX509SVID', async (req: { params: { entry_id: string; csr: Buffer }[] }, call) => {
      admission.checkDeadline(call);
      const agent = await authenticate(call);
      if (req.params.length === 0) throw new SvidscopeError('usage', 'no CSR in the batch');
      if (req.params.length > MAX_BATCH) throw new SvidscopeError('usage', `at most ${MAX_BATCH} CSRs per batch`);
      const list = await authorized(agent);
      const byId = new Map(list.map((e) => [e.id, e]));
      type Result = { status_code: number; status_message: string; svid?: X509SvidMsg };
      const results: Result[] = new Array<Result>(req.params.length);
      // Authorization here, the CSR check and the signature in the signing pool (worker threads).
      const jobs: SigningJob[] = [];
      const jobOf: { at: number; entry: RegistrationEntry }[] = [];
      req.params.forEach((p, at) => {
        const entry = byId.get(p.entry_id);
        if (!entry) {
          ev.refused?.('x509', 'permission_denied', 0);
          results[at] = { status_code: grpc.status.PERMISSION_DENIED, status_message: `agent is not authorized for entry ${JSON.stringify(p.entry_id)}` };
          return;
        }
        jobs.push({ csr: p.csr ?? Buffer.alloc(0), spiffeId: entry.spiffeId, ttlSeconds: entry.x509SvidTtl || deps.ttl.defaultX509SvidSeconds, dnsNames: entry.dnsNames });
        jobOf.push({ at, entry });
      });
      const release = admission.reserve(req.params.length);
      try {
        return await withSpan(deps.tracer, 'svidscope.server/mint x509-svid batch', { [SpanAttr.svidType]: 'x509', [SpanAttr.count]: req.params.length, [SpanAttr.trustDomain]: trustDomain.name }, async () => {
          // Signed in chunks, each started only while the caller still waits (deadline, cancel).
          let signed: SignedItem[];
          try {
            signed = await signingPool.sign({ jobs, nowMs: () => clock.nowMs(), beforeChunk: () => admission.checkDeadline(call), chunkDone: (n) => release(n) });
          } catch (err) {
            if (isSvidscopeError(err) && err.code === 'signing-worker-failed') jobs.forEach(() => ev.refused?.('x509', err.code, 0));
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
          return { results };
        });
      } finally {
        release();
      }
    }),

    NewJWTSVID: wrap('NewJWTSVID', async (req: { entry_id: string; audience: string[] }, call) => {
      admission.checkDeadline(call);
      const agent = await authenticate(call);
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
    }),

    GetBundles: wrap('GetBundles', async (req: { federated_trust_domains: string[] }, call) => {
      await authenticate(call);
      const wanted = new Set(req.federated_trust_domains ?? []);
      const federated: BundleMsg[] = [];
      if (wanted.size > 0) {
        for (const stored of await storedBundles()) {
          if (stored.trustDomain !== trustDomain.name && wanted.has(stored.trustDomain)) {
            federated.push({ trust_domain: stored.trustDomain, document: stored.document, sequence_number: stored.sequence.toString(), updated_at_ms: String(stored.updatedAt.getTime()) });
          }
        }
      }
      const tainted = ca.taintedAuthorities();
      return { bundle: bundleMessage(bundles.current, bundles.currentDocument, bundles.currentUpdatedAt), federated_bundles: federated,
        tainted: { x509_authorities: tainted.x509, jwt_key_ids: tainted.jwt } };
    }),
  };
}

export type { EntryMsg };
