import type { Clock } from '../../common/clock.js';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connectAdmin } from '../../identity-plane/server-api/admin-client.js';
import { parseSpiffeId } from '../../identity-plane/spiffe/id/index.js';
import { encodePem } from '../../identity-plane/spiffe/x509/index.js';
import { createSelfSignedCa, createX509SvidMinter, generateKeyPair } from '../../identity-plane/spiffe/mint/index.js';
import type { MethodStep } from '../experiment/schema.js';
import type { FederationRelationshipCopy } from '../ledger.js';
import { component, type StackView } from '../stack.js';
import type { FaultContext, FaultKindImpl, PreparedFault } from './types.js';
import { SvidscopeError } from '../../common/errors/catalog.js';

type Bep = Extract<MethodStep, { fault: 'bundle-endpoint' }>;

interface FederationMsg {
  relationship: FederationRelationshipCopy & { source?: string };
  has_bundle?: boolean;
  bundle_sequence?: string | number;
  last_error?: string;
  last_error_reason?: string;
}

/** The trust domain `server` federates with in a `svidscope up` stack: the other domain's. */
export function otherTrustDomain(stack: StackView, server: string): string | undefined {
  if (server === 'server') return stack.endpoints.peer?.trustDomain;
  if (server === 'peer-server') return stack.endpoints.trustDomain;
  return undefined;
}

const WHAT: Record<Bep['mode'], string> = {
  unavailable: 'HTTP 503 for every request',
  malformed: 'a malformed bundle document',
  stale: 'a stale copy of the real bundle (spiffe_sequence lowered)',
};

/**
 * A loopback HTTPS bundle endpoint the harness controls. Its certificate is minted under a
 * throwaway CA whose PEM becomes the relationship's `web_ca_bundle` (profile https_web): the
 * harness has no key of the peer trust domain, so it cannot serve https_spiffe.
 */
export class HarnessBundleEndpoint {
  readonly caPem: string;
  private readonly tls: { cert: string; key: string };
  private server: Server | undefined;
  private port = 0;

  constructor(private readonly body: { status: number; document: string }, clock: Clock) {
    const now = new Date(clock.nowMs() - 60_000);
    const ca = createSelfSignedCa({ trustDomain: 'chaos.invalid', ttlSeconds: 86_400, now });
    const key = generateKeyPair('ec-p256');
    const leaf = createX509SvidMinter({ caCertificate: ca.certificate, caPrivateKey: ca.privateKey })
      .mint({ id: parseSpiffeId('spiffe://chaos.invalid/bundle-endpoint'), publicKey: key.publicKey, ttlSeconds: 86_400, now, dnsNames: ['localhost'] });
    this.caPem = encodePem('CERTIFICATE', ca.der);
    this.tls = { cert: encodePem('CERTIFICATE', leaf.der), key: key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
  }

  get url(): string {
    return `https://localhost:${this.port}/`;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer(this.tls, (_req, res) => {
      res.writeHead(this.body.status, { 'content-type': 'application/json', connection: 'close' });
      res.end(this.body.document);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/** What the harness endpoint serves for `mode`, derived from the real bundle document. */
export function harnessBody(mode: Bep['mode'], realDocument: string | undefined): { status: number; document: string } {
  if (mode === 'unavailable') return { status: 503, document: '{"error":"chaos: bundle endpoint unavailable"}' };
  if (mode === 'malformed') return { status: 200, document: '{"keys": [{"kty": "EC", "use": "x509-svid", "x5c": ["not base64!"' };
  if (!realDocument) throw new SvidscopeError('chaos-target-invalid', 'chaos: bundle-endpoint stale needs the stored bundle of the trust domain (GetBundle found none)');
  const doc = JSON.parse(realDocument) as Record<string, unknown>;
  const seq = Number(doc.spiffe_sequence ?? 0);
  return { status: 200, document: JSON.stringify({ ...doc, spiffe_sequence: Math.max(0, seq - 1) }) };
}

/**
 * Federation bundle endpoint unavailable, malformed or stale, without touching the peer: the
 * harness serves the fault from its own loopback HTTPS endpoint and re-points `server`'s
 * relationship with the peer trust domain at it (DeleteFederation keep_bundle + CreateFederation
 * https_web). The original relationship and its bundle are in the ledger before anything changes;
 * the rollback re-creates the relationship as it was (idempotent: nothing to do if it already is)
 * and refreshes it. If the harness dies, the endpoint dies with it (the relationship then points
 * at a closed port) until `chaos recover` restores it.
 */
export const bundleEndpoint: FaultKindImpl<Bep> = {
  plan: (s, stack) => {
    const td = s.trustDomain ?? (stack && otherTrustDomain(stack, s.server)) ?? '<peer trust domain>';
    return {
      inject: `serve ${WHAT[s.mode]} from a harness HTTPS endpoint on 127.0.0.1 and re-point ${s.server}'s federation with ${td} at it (https_web)`,
      rollback: `re-create ${s.server}'s original relationship with ${td} (bootstrap bundle from before), refresh it, close the endpoint`,
    };
  },
  async prepare(s: Bep, ctx: FaultContext): Promise<PreparedFault> {
    const c = component(ctx.stack, s.server);
    const td = s.trustDomain ?? otherTrustDomain(ctx.stack, s.server);
    if (!td) throw new SvidscopeError('chaos-target-invalid', `chaos: ${s.server} has no peer trust domain in endpoints.json (is the stack federated? set trust_domain)`);
    const admin = connectAdmin(c.adminSocket!);
    let fed: FederationMsg;
    let bundle: { document: Buffer } | undefined;
    try {
      fed = await admin.call<FederationMsg>('GetFederation', { trust_domain: td });
      bundle = await admin.call<{ document: Buffer }>('GetBundle', { trust_domain: td }).catch(() => undefined);
    } finally {
      admin.close();
    }
    if (fed.relationship.source === 'config') throw new SvidscopeError('chaos-target-invalid', `chaos: ${s.server}'s relationship with ${td} comes from its config file; only API relationships can be re-pointed`);
    const r = fed.relationship;
    const original: FederationRelationshipCopy = { trust_domain: r.trust_domain, bundle_endpoint_url: r.bundle_endpoint_url, bundle_endpoint_profile: r.bundle_endpoint_profile, endpoint_spiffe_id: r.endpoint_spiffe_id, web_ca_bundle: r.web_ca_bundle };
    const document = bundle?.document?.length ? Buffer.from(bundle.document).toString('utf8') : undefined;
    const endpoint = new HarnessBundleEndpoint(harnessBody(s.mode, document), ctx.clock);
    return {
      target: `${c.name}:${td}`,
      rollback: [{ op: 'restore-federation', adminSocket: c.adminSocket!, relationship: original, bundle: document ?? null }],
      async apply() {
        await endpoint.start();
        const a = connectAdmin(c.adminSocket!);
        try {
          await a.call('DeleteFederation', { trust_domain: td, keep_bundle: true });
          await a.call('CreateFederation', { relationship: { trust_domain: td, bundle_endpoint_url: endpoint.url, bundle_endpoint_profile: 'https_web', web_ca_bundle: endpoint.caPem } });
          let refresh: string;
          try {
            const f = await a.call<FederationMsg>('RefreshFederation', { trust_domain: td });
            refresh = f.last_error ? `failed: ${f.last_error}` : `succeeded (sequence ${String(f.bundle_sequence)})`;
          } catch (err) {
            refresh = `failed: ${(err as Error).message}`;
          }
          return { trustDomain: td, mode: s.mode, endpoint: endpoint.url, originalEndpoint: original.bundle_endpoint_url, refresh };
        } finally {
          a.close();
        }
      },
      release: () => endpoint.stop(),
    };
  },
};
