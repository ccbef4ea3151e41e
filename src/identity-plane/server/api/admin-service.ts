import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import type { Clock } from '../../../common/clock.js';
import type { Logger } from '../../../common/log.js';
import type { PeerCredentials } from '../../../common/peercred.js';
import { parseSpiffeIdBounded, spiffeIdFromPath, type TrustDomain } from '../../spiffe/id/index.js';
import type { BundlePublisher } from '../bundle/publisher.js';
import type { CaManager } from '../ca/manager.js';
import type { KeyKind } from '../ca/journal.js';
import type { Datastore, NewEntry, RegistrationEntry } from '../datastore/types.js';
import { isSvidscopeError, SvidscopeError } from '../../../common/errors/catalog.js';
import { JOIN_TOKEN_TYPE } from '../attestor-node/join-token.js';
import type { AgentCache } from '../registration/agent-cache.js';
import type { EntryCache } from '../registration/entry-cache.js';
import { validateEntry, type EntryFields } from '../registration/validate.js';
import { toNumber, unary } from './grpc.js';
import { ADMIN_CALLER_METADATA } from '../../server-api/services.js';
import { serverSpiffeId } from '../../server-api/server-id.js';
import { entryMessage } from './entry-message.js';
import { MAX_ENTRY_BATCH, type BatchCreateEntriesResultMsg, type CaStatusMsg, type EntryMsg, type WithholdAuthorityRequestMsg, type AuthorityLifecycleRequestMsg } from '../../server-api/messages.js';

export interface AdminServiceDeps {
  trustDomain: TrustDomain;
  datastore: Datastore;
  ca: CaManager;
  bundles: BundlePublisher;
  entries: EntryCache;
  /** Refreshed after evict and ban, so the agent API refuses the agent from the next call on. */
  agents?: AgentCache;
  clock: Clock;
  logger: Logger;
  maxSvidTtlSeconds: number;
  observe?: (method: string, code: grpc.status, seconds: number) => void;
  events?: AdminServiceEvents;
  /** The kernel's record of the caller of a call's connection (SO_PEERCRED), where the socket has it. */
  peerOf?: (call: { getPeer(): string }) => PeerCredentials | undefined;
}

export type AuthorityStep = 'prepare' | 'activate' | 'taint' | 'revoke';
/** The `kind` of a lifecycle step: a key of this server, or an upstream X.509 authority (taint and revoke only). */
export type AuthorityStepKind = KeyKind | 'x509_upstream';
const AUTHORITY_STEPS: readonly string[] = ['prepare', 'activate', 'taint', 'revoke'] satisfies AuthorityStep[];

/** Telemetry hooks of the admin API; the service knows nothing of metrics libraries. */
export interface AdminServiceEvents {
  /** One key-compromise lifecycle step: ok, refused (wrong order, no such key) or error. */
  authorityStep?(kind: AuthorityStepKind, step: AuthorityStep, result: 'ok' | 'refused' | 'error'): void;
}

/**
 * Who asked, for the audit line: uid, gid and pid as the kernel recorded them when the caller
 * connected (SO_PEERCRED; absent where the platform has none), and beside them, marked `claimed_`,
 * what the client reports about itself (ADMIN_CALLER_METADATA: uid, pid, user name). The admin
 * socket is 0600, so only its owner (or root) can connect at all.
 */
function callerOf(call: grpc.ServerUnaryCall<unknown, unknown>, peerOf: AdminServiceDeps['peerOf']): Record<string, string | number> {
  const out: Record<string, string | number> = { via: 'admin-socket' };
  const peer = peerOf?.(call);
  if (peer) Object.assign(out, { uid: peer.uid, gid: peer.gid, pid: peer.pid });
  for (const [field, key] of Object.entries(ADMIN_CALLER_METADATA)) {
    const value = call.metadata.get(key)[0];
    if (typeof value === 'string' && value) out[`claimed_${field}`] = value.slice(0, 64);
  }
  return out;
}

/** The admin API (local Unix socket): registration entries, join tokens, agents, bundles, CA. */
export function createAdminService(deps: AdminServiceDeps): grpc.UntypedServiceImplementation {
  const { trustDomain, datastore, ca, bundles, entries, clock, logger } = deps;
  const wrap = <Req, Res>(method: string, fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>) => unary<Req, Res>(logger, method, fn, deps.observe);

  const fieldsOf = (m: Partial<EntryMsg>): EntryFields => ({
    spiffeId: m.spiffe_id ?? '',
    parentId: m.parent_id ?? '',
    selectors: (m.selectors ?? []).map((s) => ({ type: s.type, value: s.value })),
    x509SvidTtl: m.x509_svid_ttl ?? 0,
    jwtSvidTtl: m.jwt_svid_ttl ?? 0,
    dnsNames: m.dns_names ?? [],
    federatesWith: m.federates_with ?? [],
    admin: m.admin ?? false,
    downstream: m.downstream ?? false,
    expiresAt: toNumber(m.expires_at),
    hint: m.hint ?? '',
  });

  const entryLimits = async () => {
    const known = new Set((await datastore.listBundles()).map((b) => b.trustDomain));
    return { trustDomain, maxSvidTtlSeconds: deps.maxSvidTtlSeconds, hasFederatedBundle: (td: string) => known.has(td) };
  };
  const validated = async (m: Partial<EntryMsg>, limits?: Awaited<ReturnType<typeof entryLimits>>) => {
    const fields = fieldsOf(m);
    validateEntry(fields, limits ?? (await entryLimits()));
    return fields;
  };
  /** A refused entry of a batch: its status, message and catalogue code; anything unexpected fails the call. */
  const refusal = (err: unknown): BatchCreateEntriesResultMsg => {
    if (!isSvidscopeError(err)) throw err;
    return { status_code: err.grpcStatus as number, status_message: err.message, error_code: err.code };
  };

  const toRecord = (f: EntryFields) => ({
    spiffeId: f.spiffeId, parentId: f.parentId, selectors: f.selectors, x509SvidTtl: f.x509SvidTtl, jwtSvidTtl: f.jwtSvidTtl,
    dnsNames: f.dnsNames, federatesWith: f.federatesWith.map((td) => td.replace(/^spiffe:\/\//, '')), admin: f.admin, downstream: f.downstream,
    expiresAt: f.expiresAt ? new Date(f.expiresAt * 1000) : null, hint: f.hint,
  });

  const duplicateOf = async (f: EntryFields, exceptId?: string): Promise<RegistrationEntry | undefined> => {
    const key = (sel: readonly { type: string; value: string }[]) => sel.map((s) => `${s.type}:${s.value}`).sort().join('\n');
    const same = await datastore.listEntries({ spiffeId: f.spiffeId, parentId: f.parentId });
    return same.find((e) => e.id !== exceptId && key(e.selectors) === key(f.selectors));
  };

  return {
    ListEntries: wrap('ListEntries', async (req: { filter?: { by_spiffe_id: string; by_parent_id: string; by_selectors: { type: string; value: string }[] } }) => {
      const f = req.filter;
      const list = await datastore.listEntries({
        spiffeId: f?.by_spiffe_id || undefined,
        parentId: f?.by_parent_id || undefined,
        selectors: f?.by_selectors?.length ? { selectors: f.by_selectors, match: 'superset' } : undefined,
      });
      return { entries: list.map(entryMessage) };
    }),
    GetEntry: wrap('GetEntry', async (req: { id: string }) => entryMessage(await datastore.getEntry(req.id))),
    CreateEntry: wrap('CreateEntry', async (req: { entry?: EntryMsg }) => {
      if (!req.entry) throw new SvidscopeError('usage', 'entry is required');
      const fields = await validated(req.entry);
      const dup = await duplicateOf(fields);
      if (dup) throw new SvidscopeError('already-exists', `an entry with this spiffe_id, parent_id and selectors exists already: ${dup.id}`);
      const created = await datastore.createEntry({ ...toRecord(fields), id: req.entry.id || undefined }, clock.now());
      await entries.refresh();
      logger.info({ entryId: created.id, spiffeId: created.spiffeId }, 'entry created');
      return entryMessage(created);
    }),
    BatchCreateEntries: wrap('BatchCreateEntries', async (req: { entries?: Partial<EntryMsg>[] }) => {
      const list = req.entries ?? [];
      if (list.length === 0) throw new SvidscopeError('usage', 'entries is empty');
      if (list.length > MAX_ENTRY_BATCH) {
        throw new SvidscopeError('usage', `at most ${MAX_ENTRY_BATCH} entries per BatchCreateEntries call (MAX_ENTRY_BATCH), got ${list.length}: split the batch`);
      }
      const limits = await entryLimits();
      const results: BatchCreateEntriesResultMsg[] = new Array(list.length);
      const valid: { index: number; record: NewEntry }[] = [];
      for (const [index, m] of list.entries()) {
        try {
          valid.push({ index, record: { ...toRecord(await validated(m, limits)), id: m.id || undefined } });
        } catch (err) {
          results[index] = refusal(err);
        }
      }
      const stored = valid.length ? await datastore.createEntries(valid.map((v) => v.record), clock.now()) : [];
      stored.forEach((r, j) => {
        results[valid[j].index] = 'entry' in r ? { status_code: grpc.status.OK, status_message: '', error_code: '', entry: entryMessage(r.entry) } : refusal(r.error);
      });
      const created = stored.filter((r) => 'entry' in r).length;
      if (created > 0) await entries.refresh();
      logger.info({ requested: list.length, created }, 'entries created in a batch');
      return { results };
    }),
    UpdateEntry: wrap('UpdateEntry', async (req: { entry?: EntryMsg }) => {
      if (!req.entry?.id) throw new SvidscopeError('usage', 'entry.id is required');
      await datastore.getEntry(req.entry.id);
      const fields = await validated(req.entry);
      const dup = await duplicateOf(fields, req.entry.id);
      if (dup) throw new SvidscopeError('already-exists', `another entry has this spiffe_id, parent_id and selectors: ${dup.id}`);
      const updated = await datastore.updateEntry({ ...toRecord(fields), id: req.entry.id });
      await entries.refresh();
      return entryMessage(updated);
    }),
    DeleteEntry: wrap('DeleteEntry', async (req: { id: string }) => {
      await datastore.deleteEntry(req.id);
      await entries.refresh();
      return {};
    }),
    CreateJoinToken: wrap('CreateJoinToken', async (req: { ttl: number; token: string; agent_id: string }) => {
      if (!Number.isInteger(req.ttl) || req.ttl < 1) throw new SvidscopeError('usage', 'ttl must be at least 1 second');
      const token = req.token || randomUUID();
      const agentIdForToken = spiffeIdFromPath(trustDomain, `/spire/agent/${JOIN_TOKEN_TYPE}/${token}`); // validates the token's charset
      const expiresAt = new Date(clock.nowMs() + req.ttl * 1000);
      if (req.agent_id) {
        const alias = parseSpiffeIdBounded(req.agent_id);
        if (!alias.memberOf(trustDomain)) throw new SvidscopeError('usage', `agent_id ${alias} is not in trust domain ${trustDomain.name}`);
      }
      await datastore.createJoinToken({ token, expiresAt });
      if (req.agent_id) {
        // An alias so operators can name the agent: parent = the server, matched by the join-token agent's node selector.
        await datastore.createEntry({
          spiffeId: req.agent_id, parentId: serverSpiffeId(trustDomain).toString(),
          selectors: [{ type: 'spiffe_id', value: agentIdForToken.toString() }], x509SvidTtl: 0, jwtSvidTtl: 0, dnsNames: [],
          federatesWith: [], admin: false, downstream: false, expiresAt: null, hint: '',
        }, clock.now());
        await entries.refresh();
      }
      return { value: token, expires_at: String(Math.floor(expiresAt.getTime() / 1000)) };
    }),
    ListAgents: wrap('ListAgents', async () => ({
      agents: (await datastore.listAgents()).map((a) => ({
        id: a.spiffeId, attestation_type: a.attestationType, x509svid_serial_number: a.serialNumber,
        x509svid_expires_at: String(Math.floor(a.expiresAt.getTime() / 1000)), selectors: [...a.selectors], banned: a.banned,
      })),
    })),
    EvictAgent: wrap('EvictAgent', async (req: { id: string }) => {
      await datastore.deleteAgent(req.id);
      await deps.agents?.refresh();
      logger.info({ agentId: req.id }, 'agent evicted');
      return {};
    }),
    BanAgent: wrap('BanAgent', async (req: { id: string }) => {
      await datastore.setAgentBanned(req.id, true, clock.now());
      await deps.agents?.refresh();
      logger.info({ agentId: req.id }, 'agent banned');
      return {};
    }),
    GetBundle: wrap('GetBundle', async (req: { trust_domain: string }) => {
      const td = (req.trust_domain || trustDomain.name).replace(/^spiffe:\/\//, '');
      if (td === trustDomain.name) await bundles.sync();
      const stored = await datastore.getBundle(td);
      return { trust_domain: stored.trustDomain, document: stored.document, sequence_number: stored.sequence.toString() };
    }),
    ListBundles: wrap('ListBundles', async () => ({
      bundles: (await datastore.listBundles()).map((b) => ({ trust_domain: b.trustDomain, document: b.document, sequence_number: b.sequence.toString() })),
    })),
    CaStatus: wrap('CaStatus', async () => caStatus(ca, bundles)),
    RotateCa: wrap('RotateCa', async (req: { kind: string }) => {
      if (req.kind !== 'x509' && req.kind !== 'jwt') throw new SvidscopeError('usage', 'kind must be x509 or jwt');
      ca.forceRotate(req.kind as KeyKind);
      await bundles.sync();
      return caStatus(ca, bundles);
    }),
    WithholdAuthority: wrap('WithholdAuthority', async (req: Partial<WithholdAuthorityRequestMsg>) => {
      if (req.kind !== 'x509' && req.kind !== 'jwt') throw new SvidscopeError('usage', `kind must be x509 or jwt, got "${req.kind ?? ''}"`);
      // Logs itself (warn for an active key) and asks for a republish; the sync below waits for it.
      ca.setWithheld(req.kind, req.key_id || undefined, req.withhold ?? false);
      await bundles.sync();
      return caStatus(ca, bundles);
    }),
    AuthorityLifecycle: wrap('AuthorityLifecycle', async (req: Partial<AuthorityLifecycleRequestMsg>, call) => {
      const upstream = req.upstream === true;
      const kind = req.kind || (upstream ? 'x509' : req.kind);
      if (kind !== 'x509' && kind !== 'jwt') throw new SvidscopeError('usage', `kind must be x509 or jwt, got "${kind ?? ''}"`);
      const op = req.operation ?? '';
      const keyId = req.key_id || undefined;
      const ski = req.subject_key_id || undefined;
      // Only the four steps are counted, so the step label stays a fixed set.
      const step = AUTHORITY_STEPS.includes(op) ? (op as AuthorityStep) : undefined;
      const stepKind: AuthorityStepKind = upstream ? 'x509_upstream' : kind;
      // Audit line: who (as far as the socket tells), when, which step on which key, and the outcome.
      const audit = { audit: true, at: clock.now().toISOString(), caller: callerOf(call, deps.peerOf), kind: stepKind, operation: op, ...(upstream ? { subjectKeyId: ski } : { keyId }) };
      try {
        let done: { keyId: string; phase: string };
        if (upstream) {
          if (kind !== 'x509') throw new SvidscopeError('usage', 'an upstream authority is an X.509 authority: --upstream goes with kind x509');
          if (op !== 'taint' && op !== 'revoke') throw new SvidscopeError('usage', `an upstream authority can be tainted or revoked, not "${op}": this server holds no key for it (prepare and activate apply to its own keys)`);
          if (!ski) throw new SvidscopeError('usage', `${op} --upstream needs subject_key_id: name the compromised authority (from CaStatus upstream_authorities)`);
          if (keyId) throw new SvidscopeError('usage', 'an upstream authority is named by subject_key_id, not key_id');
          const inBundle = bundles.current.x509Authorities.map((a) => a.cert);
          const u = op === 'taint' ? ca.taintUpstreamAuthority(ski, inBundle) : ca.revokeUpstreamAuthority(ski, inBundle);
          done = { keyId: u.subjectKeyId, phase: u.revoked ? 'revoked' : 'tainted' };
        } else {
          if (ski) throw new SvidscopeError('usage', 'subject_key_id names an upstream authority: set upstream too, or name this server\'s key by key_id');
          if ((op === 'taint' || op === 'revoke') && !keyId) throw new SvidscopeError('usage', `${op} needs key_id: name the compromised key (from CaStatus)`);
          const key = op === 'prepare' ? ca.prepareAuthority(kind)
            : op === 'activate' ? ca.activateAuthority(kind, keyId)
            : op === 'taint' ? ca.taintAuthority(kind, keyId!)
            : op === 'revoke' ? ca.revokeAuthority(kind, keyId!)
            : undefined;
          if (!key) throw new SvidscopeError('usage', `operation must be prepare, activate, taint or revoke, got "${op}"`);
          done = { keyId: key.id, phase: key.phase };
        }
        logger.info({ ...audit, ...(upstream ? { subjectKeyId: done.keyId } : { keyId: done.keyId }), phase: done.phase, result: 'ok' }, 'authority lifecycle step');
        if (step) deps.events?.authorityStep?.(stepKind, step, 'ok');
      } catch (err) {
        const refused = isSvidscopeError(err);
        logger.warn({ ...audit, result: refused ? 'refused' : 'error', err }, 'authority lifecycle step refused');
        if (step) deps.events?.authorityStep?.(stepKind, step, refused ? 'refused' : 'error');
        throw err;
      }
      await bundles.sync();
      return caStatus(ca, bundles);
    }),
  };
}

function caStatus(ca: CaManager, bundles: BundlePublisher): CaStatusMsg {
  const ms = (t: number | undefined) => String(t ?? 0);
  return {
    slots: ca.status().map((s) => ({
      kind: s.kind, phase: s.phase, key_id: s.id, not_before: String(Math.floor(s.notBefore / 1000)), not_after: String(Math.floor(s.notAfter / 1000)), withheld: s.withheld, tainted: s.tainted ?? false, revoked: s.revoked ?? false,
      tainted_at_ms: ms(s.taintedAt), revoked_at_ms: ms(s.revokedAt),
    })),
    upstream_authorities: ca.upstreamStatus(bundles.current.x509Authorities.map((a) => a.cert)).map((u) => ({
      subject_key_id: u.subjectKeyId, not_after: String(Math.floor(u.notAfter / 1000)), configured: u.configured, in_use: u.inUse ?? '',
      tainted: u.tainted, revoked: u.revoked, tainted_at_ms: ms(u.taintedAt), revoked_at_ms: ms(u.revokedAt),
    })),
  };
}
