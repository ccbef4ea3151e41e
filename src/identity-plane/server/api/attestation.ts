import { isSvidscopeError, SvidscopeError, type ErrorCode } from '../../../common/errors/catalog.js';
import { parseSpiffeId, type SpiffeId } from '../../spiffe/id/index.js';
import { parseCsr } from '../../spiffe/mint/index.js';
import type { AttestedAgent } from '../datastore/types.js';
import { attestJoinToken } from '../attestor-node/join-token.js';
import type { BundleMsg, X509SvidMsg } from '../../server-api/messages.js';
import { normalSerial } from './peer-identity.js';
import type { Admission } from './admission.js';
import { acceptsSerial, refusal, type AgentAuth, type AgentCall } from './agent-auth.js';
import type { BundleView } from './bundle-view.js';
import type { NodeServiceDeps, NodeServiceEvents } from './node-service.js';

/** Attestation failure reasons by catalogue code: a fixed set, so the label stays bounded. */
const ATTESTATION_REASON: Partial<Record<ErrorCode, string>> = {
  'join-token-unknown': 'token_unknown',
  'join-token-expired': 'token_expired',
  'agent-banned': 'banned',
  'csr-invalid': 'csr_invalid',
  'node-attestation-unsupported': 'unsupported_method',
};

/**
 * Every (method, reason) an attestation failure is counted under. The server's telemetry starts each
 * at 0: a failure series that first appears already at 30 (a flood between two scrapes) has no
 * increase for Prometheus, and SvidscopeAttestationFailureSpike would never fire for it.
 */
export const ATTESTATION_FAILURE_LABELS: readonly { method: string; reason: string }[] = ['join_token', 'other'].flatMap((method) =>
  [...Object.values(ATTESTATION_REASON), 'invalid_request', 'internal'].map((reason) => ({ method, reason })));

function attestationReason(err: unknown): string {
  if (!isSvidscopeError(err) || err.code === 'internal') return 'internal';
  return ATTESTATION_REASON[err.code] ?? 'invalid_request';
}

export interface AttestAgentRequest {
  attestation_type: string;
  payload: Buffer;
  csr: Buffer;
}

export type AttestationDeps = Pick<NodeServiceDeps, 'trustDomain' | 'datastore' | 'ca' | 'agents' | 'clock' | 'logger' | 'ttl' | 'agentRenewalGraceSeconds'>
  & { auth: AgentAuth; admission: Admission; bundleView: Pick<BundleView, 'ownBundle'>; events: NodeServiceEvents };

/** The agent's own X509-SVID, minted on the main thread (one per attestation or renewal). */
function createAgentSvidMinter({ ca, clock, ttl, events: ev }: Pick<AttestationDeps, 'ca' | 'clock' | 'ttl' | 'events'>) {
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
  const mint = (id: SpiffeId, csrBytes: Buffer): { svid: X509SvidMsg; serial: string; expiresAt: Date } => {
    const start = process.hrtime.bigint();
    const csr = checkCsr(csrBytes);
    const minted = ca.x509Minter.mint({ id, publicKey: csr.publicKey, ttlSeconds: ttl.agentSeconds, now: clock.now() });
    ev.signed?.('agent_x509', Number(process.hrtime.bigint() - start) / 1e9);
    return {
      svid: { cert_chain: [minted.der, ...ca.x509ChainTail], spiffe_id: id.toString(), expires_at: String(Math.floor(minted.notAfter.getTime() / 1000)), hint: '', entry_id: '' },
      serial: minted.serial.toString(16),
      expiresAt: minted.notAfter,
    };
  };
  return { checkCsr, mint };
}

/** AttestAgent and RenewAgent: the agent's own SVID, first from a join token, then from the SVID it holds. */
export function createAgentIdentityHandlers(deps: AttestationDeps) {
  const { trustDomain, datastore, clock, logger, agents, auth, admission, bundleView, events: ev } = deps;
  const { checkCsr, mint: mintAgentSvid } = createAgentSvidMinter(deps);

  const attest = async (req: AttestAgentRequest) => {
    if (req.attestation_type !== 'join_token') throw new SvidscopeError('node-attestation-unsupported', `attestation type ${JSON.stringify(req.attestation_type)} is not supported (use join_token)`);
    if (!req.csr?.length) throw new SvidscopeError('csr-invalid', 'a CSR is required');
    checkCsr(req.csr); // refuse a bad CSR before the one-time token is burnt
    // The SVID is minted inside the datastore transaction that spends the token and stores the
    // agent, so its serial is the one stored; a banned agent spends the token and gets nothing.
    let svid: X509SvidMsg | undefined;
    const { agentId, stored } = await attestJoinToken(datastore, trustDomain, req.payload.toString('utf8'), clock.now(), (id, selectors, existing) => {
      if (existing?.banned) return undefined;
      const minted = mintAgentSvid(id, req.csr);
      svid = minted.svid;
      return { spiffeId: id.toString(), serialNumber: minted.serial, expiresAt: minted.expiresAt, banned: false, attestationType: 'join_token', selectors };
    });
    if (!stored || !svid) throw refusal.banned(agentId.toString());
    await agents.refresh(); // the new serial is the only one this server accepts from now on
    logger.info({ agentId: agentId.toString() }, 'agent attested');
    return { svid, bundle: bundleView.ownBundle() };
  };

  return {
    async attestAgent(req: AttestAgentRequest, call: AgentCall): Promise<{ svid: X509SvidMsg; bundle: BundleMsg }> {
      admission.checkDeadline(call);
      try {
        const res = await attest(req);
        ev.attestation?.(req.attestation_type || 'none', 'success', 'none');
        return res;
      } catch (err) {
        ev.attestation?.(req.attestation_type === 'join_token' ? 'join_token' : 'other', 'failure', attestationReason(err));
        throw err;
      }
    },

    async renewAgent(req: { csr: Buffer }, call: AgentCall): Promise<{ svid: X509SvidMsg }> {
      admission.checkDeadline(call);
      const agent = await auth.authenticate(call);
      if (!req.csr?.length) throw new SvidscopeError('csr-invalid', 'a CSR is required');
      // The write starts from the stored record, not the cached one: a ban through another server not
      // pulled yet must neither be lost by this write nor let the renewal through.
      let stored: AttestedAgent;
      try {
        stored = await datastore.getAgent(agent.spiffeId);
      } catch (err) {
        if (isSvidscopeError(err) && err.code === 'not-found') throw refusal.not_attested(agent.spiffeId);
        throw err;
      }
      if (stored.banned) throw refusal.banned(agent.spiffeId);
      const now = clock.nowMs();
      if (!acceptsSerial(stored, agent.presentedSerial, now)) throw refusal.stale_serial(agent.spiffeId);
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
    },
  };
}
