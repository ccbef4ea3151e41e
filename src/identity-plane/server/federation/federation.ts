import { readFileSync } from 'node:fs';
import type { Clock } from '../../../common/clock.js';
import { isSvidscopeError, SvidscopeError } from '../../../common/errors/catalog.js';
import type { Logger } from '../../../common/log.js';
import { parseSpiffeBundle, type SpiffeBundle } from '../../spiffe/bundle/index.js';
import { parseSpiffeId, parseTrustDomain, parseTrustDomainBounded, type TrustDomain } from '../../spiffe/id/index.js';
import type { Datastore } from '../datastore/types.js';
import { documentWithSequence, parseBootstrapBundle } from './bundle-doc.js';
import { DEFAULT_FEDERATION_CONFIG, validateRelationship, type FederationConfig, type RelationshipConfig } from './config.js';
import { startBundleEndpoint, type BundleEndpoint, type EndpointCa } from './endpoint.js';
import { BundleRefresher, type FederationMetrics, type RelationshipStatus } from './refresher.js';
import { RelationshipStore, type Relationship } from './store.js';

export interface FederationDeps {
  /** The server config's `federation` section; undefined means no endpoint and no static relationships. */
  config: FederationConfig | undefined;
  trustDomain: TrustDomain;
  datastore: Datastore;
  /** The server's CaManager (active minter and chain tail), for the https_spiffe endpoint SVID. */
  ca: EndpointCa;
  /** The server's BundlePublisher: the bundle the endpoint serves and the one non-self-serving https_spiffe peers in our domain are checked with. */
  bundles: { readonly current: SpiffeBundle };
  clock: Clock;
  logger: Logger;
  /** The server's data directory; relationships created through the API are kept in `<dataDir>/federation/relationships.json`. */
  dataDir: string;
  /** The refresh hint the endpoint serves when neither `bundle_endpoint.refresh_hint` nor the bundle sets one (default 5 min). */
  bundleRefreshHintSeconds?: number;
  metrics?: FederationMetrics;
}

/** A relationship as the admin API creates it. */
export type NewRelationship = Omit<Relationship, 'source'>;

export interface Federation {
  /** The bundle endpoint's URL when one is configured. */
  readonly endpointUrl?: string;
  /** The SPIFFE ID the endpoint presents (https_spiffe). */
  readonly endpointSpiffeId?: string;
  relationships(): RelationshipStatus[];
  /** One relationship's status; `not-found` if there is none for `trustDomain`. */
  relationship(trustDomain: string): RelationshipStatus;
  /**
   * Adds a relationship (persisted) and starts polling at once. `bundle` (SPIFFE JSON or PEM)
   * bootstraps the stored bundle when none is stored or it is newer than the stored one.
   */
  create(relationship: NewRelationship, options?: { bundle?: Buffer }): Promise<RelationshipStatus>;
  /** Stops polling and forgets the relationship; the stored bundle is deleted too unless `keepBundle`. */
  delete(trustDomain: string, options?: { keepBundle?: boolean }): Promise<void>;
  /** Fetches now; rejects with `unavailable` (FederationFetchError, with its `reason`) when the refresh fails. */
  refreshNow(trustDomain: string): Promise<RelationshipStatus>;
  stop(): Promise<void>;
}

/**
 * Starts federation: the bundle endpoint (if configured) and one refresher per relationship (from
 * the config, and those created through the admin API earlier). Config relationships win over API
 * ones for the same trust domain, as in SPIRE.
 */
export async function startFederation(deps: FederationDeps): Promise<Federation> {
  const config = deps.config ?? DEFAULT_FEDERATION_CONFIG;
  const { datastore, clock, trustDomain } = deps;
  const logger = deps.logger.child({ subsystem: 'federation' });
  const store = new RelationshipStore(deps.dataDir);
  const refreshers = new Map<string, BundleRefresher>();

  const trustBundleFor = async (td: TrustDomain): Promise<SpiffeBundle | undefined> => {
    if (td.equals(trustDomain)) return deps.bundles.current;
    try {
      return parseSpiffeBundle(td, (await datastore.getBundle(td.name)).document);
    } catch (err) {
      if (isSvidscopeError(err) && err.code === 'not-found') return undefined;
      throw err;
    }
  };

  /** Stores an operator-given bundle unless a bundle at least as new is stored already. */
  const bootstrap = async (td: TrustDomain, data: Buffer): Promise<void> => {
    const bundle = parseBootstrapBundle(td, data);
    const sequence = bundle.sequenceNumber ?? 0n;
    let stored: bigint | undefined;
    try {
      stored = (await datastore.getBundle(td.name)).sequence;
    } catch (err) {
      if (!(isSvidscopeError(err) && err.code === 'not-found')) throw err;
    }
    if (stored !== undefined && stored >= sequence) {
      logger.info({ trustDomain: td, stored: stored.toString(), bootstrap: sequence.toString() }, 'keeping the stored federated bundle over the bootstrap bundle');
      return;
    }
    await datastore.setBundle({ trustDomain: td.name, document: documentWithSequence(bundle, sequence), sequence, updatedAt: clock.now() });
    logger.info({ trustDomain: td, sequence: sequence.toString() }, 'stored bootstrap bundle');
  };

  // A relationship's trust domain is parsed once, where its record enters (server config, admin
  // API, relationships.json), and the refresher builds every bundle of it with that value.
  const run = async (rel: Relationship, td: TrustDomain): Promise<BundleRefresher> => {
    const refresher = new BundleRefresher({ relationship: rel, trustDomain: td, datastore, clock, logger, limits: config, trustBundleFor, metrics: deps.metrics });
    refreshers.set(rel.trustDomain, refresher);
    await refresher.start();
    return refresher;
  };

  const fromConfig = (rc: RelationshipConfig): { rel: Relationship; td: TrustDomain; bundleFile?: string } => {
    const read = (file: string, what: string) => {
      try {
        return readFileSync(file);
      } catch (err) {
        throw new SvidscopeError('config-invalid', `config: federation: cannot read the ${what} of ${rc.trustDomain} (${file}): ${(err as Error).message}`, { cause: err });
      }
    };
    const rel: Relationship = {
      trustDomain: rc.trustDomain, endpointUrl: rc.endpointUrl, profile: rc.profile, endpointSpiffeId: rc.endpointSpiffeId,
      webRootsPem: rc.caFile ? read(rc.caFile, 'ca_file').toString('utf8') : undefined, source: 'config',
    };
    validateRelationship(rel, trustDomain.name);
    // The config may name the trust domain as `spiffe://<td>`; the relationship is keyed by the bare name, as the admin API's are.
    const td = parseTrustDomain(rc.trustDomain);
    return { rel: { ...rel, trustDomain: td.name }, td, bundleFile: rc.bundleFile };
  };

  const configured = config.relationships.map(fromConfig);
  const configuredNames = new Set(configured.map((c) => c.rel.trustDomain));
  const dynamic = store.load().flatMap((rel) => {
    if (configuredNames.has(rel.trustDomain)) {
      logger.warn({ trustDomain: rel.trustDomain }, 'the server config defines this relationship; ignoring the one created through the API');
      return [];
    }
    try {
      return [{ rel, td: parseTrustDomainBounded(rel.trustDomain) }];
    } catch (err) {
      logger.warn({ trustDomain: rel.trustDomain, file: store.file, err: (err as Error).message }, 'ignoring a stored relationship whose trust domain is invalid');
      return [];
    }
  });
  for (const { td, bundleFile } of configured) if (bundleFile) await bootstrap(td, readFileSync(bundleFile));

  let endpoint: BundleEndpoint | undefined;
  try {
    for (const { rel, td } of [...configured, ...dynamic]) await run(rel, td);
    if (config.bundleEndpoint) {
      endpoint = await startBundleEndpoint({
        config: config.bundleEndpoint, trustDomain, bundles: deps.bundles, ca: deps.ca, clock, logger,
        defaultRefreshHintSeconds: deps.bundleRefreshHintSeconds ?? 300,
      });
    }
  } catch (err) {
    for (const r of refreshers.values()) r.stop();
    throw err;
  }
  logger.info({ relationships: [...refreshers.keys()], endpointUrl: endpoint?.url }, 'federation started');

  const get = (td: string): BundleRefresher => {
    const r = refreshers.get(td.replace(/^spiffe:\/\//, ''));
    if (!r) throw new SvidscopeError('not-found', `federation: no relationship with trust domain "${td}"`);
    return r;
  };
  const persist = () => store.save([...refreshers.values()].map((r) => r.status().relationship));

  return {
    endpointUrl: endpoint?.url,
    endpointSpiffeId: endpoint?.spiffeId,
    relationships: () => [...refreshers.values()].map((r) => r.status()).sort((a, b) => a.relationship.trustDomain.localeCompare(b.relationship.trustDomain)),
    relationship: (td) => get(td).status(),

    async create(input, options = {}) {
      const rel: Relationship = { ...input, trustDomain: input.trustDomain.replace(/^spiffe:\/\//, ''), source: 'api' };
      validateRelationship(rel, trustDomain.name);
      const td = parseTrustDomain(rel.trustDomain);
      if (refreshers.has(rel.trustDomain)) throw new SvidscopeError('already-exists', `federation: a relationship with ${rel.trustDomain} exists already`);
      if (options.bundle?.length) await bootstrap(td, options.bundle);
      if (rel.profile === 'https_spiffe' && parseSpiffeId(rel.endpointSpiffeId!).trustDomain.equals(td) && !(await trustBundleFor(td))) {
        throw new SvidscopeError('config-invalid', `federation: an https_spiffe endpoint of ${rel.trustDomain} can only be authenticated with a bundle of ${rel.trustDomain}: pass one to bootstrap`);
      }
      const refresher = await run(rel, td);
      try {
        persist();
      } catch (err) {
        refresher.stop();
        refreshers.delete(rel.trustDomain);
        throw err;
      }
      logger.info({ trustDomain: rel.trustDomain, url: rel.endpointUrl, profile: rel.profile }, 'federation relationship created');
      return refresher.status();
    },

    async delete(td, options = {}) {
      const refresher = get(td);
      const name = refresher.trustDomain;
      if (refresher.status().relationship.source === 'config') {
        throw new SvidscopeError('config-invalid', `federation: the relationship with ${name} comes from the server config; remove it there`);
      }
      refresher.stop();
      refreshers.delete(name);
      persist();
      await refresher.idle();
      if (!options.keepBundle) {
        await datastore.deleteBundle(name).catch((err: unknown) => {
          if (!(isSvidscopeError(err) && err.code === 'not-found')) throw err;
        });
      }
      logger.info({ trustDomain: name, keptBundle: Boolean(options.keepBundle) }, 'federation relationship deleted');
    },

    async refreshNow(td) {
      const refresher = get(td);
      await refresher.refreshNow();
      return refresher.status();
    },

    async stop() {
      for (const r of refreshers.values()) r.stop();
      await Promise.all([...refreshers.values()].map((r) => r.idle()));
      await endpoint?.close();
      logger.info('federation stopped');
    },
  };
}
