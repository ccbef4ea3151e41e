import { createHash } from 'node:crypto';
import { bundleMessage, type BundleMsg } from '../../server-api/messages.js';
import { bundleStateDigest } from '../../server-api/bundle-state.js';
import type { AgentAuth, AgentCall } from './agent-auth.js';
import type { NodeServiceDeps } from './node-service.js';

export interface GetBundlesRequest {
  federated_trust_domains: string[];
}

export interface GetBundlesResponse {
  bundle: BundleMsg;
  federated_bundles: BundleMsg[];
  tainted: { x509_authorities: Buffer[]; jwt_key_ids: string[] };
}

/**
 * What agents are told of bundles: the own bundle (also in AttestAgent's answer), GetBundles, and
 * the digest of GetBundles' answer that each entry sync answer carries (`bundle_state`). Whatever
 * GetBundles answers must enter the digest too, or agents keep a stale answer: both live here.
 */
export interface BundleView {
  ownBundle(): BundleMsg;
  /** What GetBundles would answer now, as the digest the sync answer carries. */
  state(): Promise<Buffer>;
  getBundles(req: GetBundlesRequest, call: AgentCall): Promise<GetBundlesResponse>;
}

export type BundleViewDeps = Pick<NodeServiceDeps, 'trustDomain' | 'datastore' | 'bundleCache' | 'ca' | 'bundles'> & { auth: AgentAuth };

export function createBundleView({ trustDomain, datastore, bundleCache, ca, bundles, auth }: BundleViewDeps): BundleView {
  const storedBundles = () => bundleCache?.list() ?? datastore.listBundles();
  const ownBundle = () => bundleMessage(bundles.current, bundles.currentDocument, bundles.currentUpdatedAt);
  // The own document's hash is kept per document (it changes a few times a day, syncs come thousands a second).
  let ownDocument: { document: Buffer; sha256: Buffer } | undefined;

  return {
    ownBundle,

    async state() {
      const document = bundles.currentDocument;
      if (ownDocument?.document !== document) ownDocument = { document, sha256: createHash('sha256').update(document).digest() };
      const tainted = ca.taintedAuthorities();
      const federated = (await storedBundles()).filter((b) => b.trustDomain !== trustDomain.name)
        .map((b) => ({ trustDomain: b.trustDomain, sequence: b.sequence, updatedAtMs: b.updatedAt.getTime() }));
      return bundleStateDigest({ ownDocumentSha256: ownDocument.sha256, taintedX509: tainted.x509, taintedJwtKeyIds: tainted.jwt, federated });
    },

    async getBundles(req, call) {
      await auth.authenticate(call);
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
      return { bundle: ownBundle(), federated_bundles: federated,
        tainted: { x509_authorities: tainted.x509, jwt_key_ids: tainted.jwt } };
    },
  };
}
