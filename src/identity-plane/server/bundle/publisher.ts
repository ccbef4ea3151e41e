import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import type { Clock } from '../../../common/clock.js';
import { isSvidscopeError, SvidscopeError } from '../../../common/errors/catalog.js';
import type { Logger } from '../../../common/log.js';
import { createSpiffeBundle, parseSpiffeBundle, spiffeBundleToJson, type SpiffeBundle } from '../../spiffe/bundle/index.js';
import type { TrustDomain } from '../../spiffe/id/index.js';
import type { PublishedAuthorities } from '../ca/manager.js';
import type { CaKeyRecord, Datastore } from '../datastore/types.js';

export interface BundlePublisherDeps {
  trustDomain: TrustDomain;
  datastore: Datastore;
  clock: Clock;
  logger: Logger;
  refreshHintSeconds: number;
  /** This server's live authorities (prepared, active, old). */
  ownAuthorities(): PublishedAuthorities;
}

/**
 * Keeps the trust domain's bundle in the datastore equal to the union of every server's live
 * authorities. Each server records its own public keys as CA key records (private keys never
 * leave its disk); the bundle document is derived from the records, so two servers computing it
 * at once write the same document and a lost race heals at the next sync. Records past their
 * notAfter are pruned by whichever server sees them first: what they signed has expired.
 *
 * An authority an operator withheld (CaManager.setWithheld) is neither recorded nor kept: the
 * server that holds the key deletes its record, and only that server ever wrote it (record ids
 * derive from the key's own certificate or kid), so no other server sharing the datastore puts it
 * back. A server that listed the records just before the delete may publish one more bundle that
 * still holds it; the next sync of either server derives the document from the records again and
 * drops it. Publishing the key again re-puts its record at the next sync.
 */
export class BundlePublisher {
  private bundle: SpiffeBundle | undefined;
  private document: Buffer | undefined;
  private updatedAt = new Date(0);
  private readonly listeners = new Set<(bundle: SpiffeBundle) => void>();

  constructor(private readonly deps: BundlePublisherDeps) {}

  /** The bundle as last read or written; sync() must have run once. */
  get current(): SpiffeBundle {
    if (!this.bundle) throw new SvidscopeError('unavailable', 'bundle: not synced yet');
    return this.bundle;
  }
  get currentDocument(): Buffer {
    if (!this.document) throw new SvidscopeError('unavailable', 'bundle: not synced yet');
    return this.document;
  }

  /** When the current bundle content was stored (by this server or another). */
  get currentUpdatedAt(): Date {
    return this.updatedAt;
  }

  onChange(listener: (bundle: SpiffeBundle) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private queue: Promise<unknown> = Promise.resolve();

  /**
   * Publishes this server's keys, prunes expired ones, and rewrites the bundle if its content
   * changed. Calls are serialized: a CA change and the periodic tick may ask at the same moment.
   */
  sync(): Promise<SpiffeBundle> {
    const run = this.queue.then(() => this.syncNow());
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async syncNow(): Promise<SpiffeBundle> {
    const { datastore, clock, trustDomain } = this.deps;
    const now = clock.nowMs();
    const authorities = this.deps.ownAuthorities();
    const own = ownRecords(authorities, clock.now());
    // Only this server's own withheld keys: another server's records are never ours to withhold.
    const withheldIds = new Set([
      ...authorities.withheld.x509.map((cert) => caKeyRecordId.x509(cert)),
      ...authorities.withheld.jwt.map((k) => caKeyRecordId.jwt(k.keyId)),
    ]);
    const stored = await datastore.listCaKeys();
    const storedIds = new Set(stored.map((r) => r.id));
    for (const record of own) {
      if (storedIds.has(record.id)) continue;
      try {
        await datastore.putCaKey(record);
      } catch (err) {
        // Another server with the same upstream authority recorded it first: same record, same outcome.
        if (!(isSvidscopeError(err) && err.code === 'already-exists')) throw err;
      }
    }
    const gone = (r: CaKeyRecord) => r.notAfter.getTime() <= now || withheldIds.has(r.id);
    for (const record of stored) if (gone(record)) await datastore.deleteCaKey(record.id);

    const live = [...stored.filter((r) => !gone(r)), ...own.filter((r) => !storedIds.has(r.id))];
    const x509 = live.filter((r) => r.kind === 'x509' && r.certificateDer).map((r) => new X509Certificate(r.certificateDer!));
    const jwt = live
      .filter((r) => r.kind === 'jwt')
      .map((r) => ({ keyId: r.id.replace(/^jwt:/, ''), publicKey: createPublicKey({ key: r.publicKeyDer, format: 'der', type: 'spki' }) }));

    const previous = await this.readStored();
    const content = documentWithoutSequence(trustDomain, x509, jwt, this.deps.refreshHintSeconds);
    if (previous && documentWithoutSequence(trustDomain, previous.x509Authorities.map((a) => a.cert), [...previous.jwtAuthorities.values()], this.deps.refreshHintSeconds) === content) {
      this.setCurrent(previous);
      return previous;
    }
    const sequence = (previous?.sequenceNumber ?? 0n) + 1n;
    const next = createSpiffeBundle({ trustDomain, x509Authorities: x509, jwtAuthorities: jwt, sequenceNumber: sequence, refreshHintSeconds: this.deps.refreshHintSeconds });
    const document = Buffer.from(spiffeBundleToJson(next));
    try {
      await datastore.setBundle({ trustDomain: trustDomain.name, document, sequence, updatedAt: clock.now() });
    } catch (err) {
      // Another server wrote a newer sequence first; its view wins now, ours merges in at the next sync.
      if (isSvidscopeError(err) && err.code === 'bundle-sequence-regressed') {
        const winner = await this.readStored();
        if (winner) this.setCurrent(winner);
        return winner ?? next;
      }
      throw err;
    }
    this.deps.logger.info({ sequence: sequence.toString(), x509Authorities: x509.length, jwtAuthorities: jwt.length }, 'published trust bundle');
    this.setCurrent(next);
    return next;
  }

  private async readStored(): Promise<SpiffeBundle | undefined> {
    try {
      const stored = await this.deps.datastore.getBundle(this.deps.trustDomain.name);
      const parsed = parseSpiffeBundle(this.deps.trustDomain, stored.document);
      this.storedAt.set(parsed, stored.updatedAt);
      return parsed;
    } catch (err) {
      if (isSvidscopeError(err) && err.code === 'not-found') return undefined;
      throw err;
    }
  }

  private readonly storedAt = new WeakMap<SpiffeBundle, Date>();

  private setCurrent(bundle: SpiffeBundle): void {
    const changed = this.bundle?.sequenceNumber !== bundle.sequenceNumber;
    if (changed) this.updatedAt = this.storedAt.get(bundle) ?? this.deps.clock.now();
    this.bundle = bundle;
    this.document = Buffer.from(spiffeBundleToJson(bundle));
    if (changed) for (const l of this.listeners) l(bundle);
  }
}

/**
 * The id of the CA key record of an authority: derived from the authority alone, so every server
 * computes the same id for it (servers sharing one upstream root share its record).
 */
export const caKeyRecordId = {
  x509: (cert: X509Certificate): string => 'x509:' + createHash('sha256').update(cert.raw).digest('hex').slice(0, 32),
  jwt: (keyId: string): string => 'jwt:' + keyId,
};

function ownRecords(auth: PublishedAuthorities, now: Date): CaKeyRecord[] {
  const x509 = auth.x509.map((cert): CaKeyRecord => ({
    id: caKeyRecordId.x509(cert),
    kind: 'x509',
    phase: 'active',
    certificateDer: cert.raw,
    publicKeyDer: cert.publicKey.export({ type: 'spki', format: 'der' }) as Buffer,
    privateKeyPkcs8: Buffer.alloc(0), // private keys stay in the server's own key files
    notAfter: new Date(cert.validTo),
    createdAt: now,
  }));
  const jwt = auth.jwt.map((k): CaKeyRecord => ({
    id: caKeyRecordId.jwt(k.keyId),
    kind: 'jwt',
    phase: 'active',
    publicKeyDer: k.publicKey.export({ type: 'spki', format: 'der' }) as Buffer,
    privateKeyPkcs8: Buffer.alloc(0),
    notAfter: new Date(k.notAfter),
    createdAt: now,
  }));
  return [...x509, ...jwt];
}

/** A canonical rendering of the authorities alone, to tell whether the bundle must change. */
function documentWithoutSequence(td: TrustDomain, x509: X509Certificate[], jwt: { keyId: string; publicKey: import('node:crypto').KeyObject }[], hint: number): string {
  const sortedX509 = [...x509].sort((a, b) => a.fingerprint256.localeCompare(b.fingerprint256));
  const sortedJwt = [...jwt].sort((a, b) => a.keyId.localeCompare(b.keyId));
  return spiffeBundleToJson(createSpiffeBundle({ trustDomain: td, x509Authorities: sortedX509, jwtAuthorities: sortedJwt, refreshHintSeconds: hint }));
}
