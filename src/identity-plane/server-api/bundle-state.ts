import { createHash } from 'node:crypto';

/**
 * The bundle state an entry sync answer carries, both ends. GetBundles answers the same thing on
 * almost every sync: at fleet size that second call per agent per interval doubled the agent API's
 * calls (and the agent re-parsed the bundle each time) for nothing. The server puts a digest of
 * everything GetBundles could answer in `SyncAuthorizedEntriesResponse.bundle_state`; the agent
 * calls GetBundles only when that digest differs from the one it fetched under, or when it asks for
 * another set of federated trust domains.
 */
export interface BundleStateInput {
  /** The own bundle's document as served (its bytes decide, not only the sequence). */
  ownDocumentSha256: Buffer;
  /** The tainted X.509 authorities (DER) and JWT key ids GetBundles reports. */
  taintedX509: readonly Buffer[];
  taintedJwtKeyIds: readonly string[];
  /** Every federated bundle stored: a write gives it a new sequence or update time. */
  federated: Iterable<{ trustDomain: string; sequence: bigint; updatedAtMs: number }>;
}

/** SHA-256 over the inputs in a fixed order; the framing is unambiguous (lengths, then bytes). */
export function bundleStateDigest(s: BundleStateInput): Buffer {
  const h = createHash('sha256');
  h.update(s.ownDocumentSha256);
  h.update(`x509 ${s.taintedX509.length}\n`);
  for (const der of s.taintedX509) h.update(`${der.length}\n`).update(der);
  h.update(`jwt ${s.taintedJwtKeyIds.length}\n`);
  for (const kid of [...s.taintedJwtKeyIds].sort()) h.update(`${kid.length}\n${kid}`);
  const fed = [...s.federated].sort((a, b) => (a.trustDomain < b.trustDomain ? -1 : a.trustDomain > b.trustDomain ? 1 : 0));
  h.update(`federated ${fed.length}\n`);
  for (const f of fed) h.update(`${f.trustDomain}\n${f.sequence}\n${f.updatedAtMs}\n`);
  return h.digest();
}

/**
 * The agent's side: when it last fetched bundles, under which answered state and for which
 * federated trust domains; whether the next sync needs GetBundles.
 */
export class BundleFetchTracker {
  private state: Buffer | undefined;
  private federated = '';

  /** True unless the server answered a state and it is the one the last completed fetch was made under, for the same trust domains. */
  stale(answered: Buffer | undefined, federatedTrustDomains: readonly string[]): boolean {
    if (!answered?.length || !this.state) return true;
    return !this.state.equals(answered) || this.federated !== key(federatedTrustDomains);
  }

  /** Records a fetch that completed (and was applied) after a sync that answered `answered`. */
  fetched(answered: Buffer | undefined, federatedTrustDomains: readonly string[]): void {
    this.state = answered?.length ? Buffer.from(answered) : undefined;
    this.federated = key(federatedTrustDomains);
  }
}

const key = (tds: readonly string[]) => [...new Set(tds)].sort().join('\n');
