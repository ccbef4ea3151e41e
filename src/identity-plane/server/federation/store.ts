import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { SvidscopeError } from '../../../common/errors/catalog.js';
import { writeFileAtomic } from '../../../common/fs/atomic.js';
import { FEDERATION_PROFILES, type FederationProfile } from './config.js';

/** A relationship as the refresher runs it, whatever its origin. */
export interface Relationship {
  trustDomain: string;
  endpointUrl: string;
  profile: FederationProfile;
  endpointSpiffeId?: string;
  /** https_web: operator roots (PEM) instead of the system roots. */
  webRootsPem?: string;
  /** `config` relationships come from the server config on every start and cannot be deleted through the API. */
  source: 'config' | 'api';
}

interface StoredFile {
  version: 1;
  relationships: Omit<Relationship, 'source'>[];
}

/**
 * The relationships created through the admin API, kept as one JSON file under the server's data
 * directory and rewritten atomically on each change (the datastore has no table for them). Note:
 * servers sharing one PostgreSQL do not share this file; create the relationship on each.
 */
export class RelationshipStore {
  readonly file: string;

  constructor(dataDir: string) {
    this.file = path.join(dataDir, 'federation', 'relationships.json');
  }

  load(): Relationship[] {
    if (!existsSync(this.file)) return [];
    let doc: StoredFile;
    try {
      doc = JSON.parse(readFileSync(this.file, 'utf8')) as StoredFile;
    } catch (err) {
      throw new SvidscopeError('io-error', `federation: cannot read ${this.file}: ${(err as Error).message}`, { cause: err });
    }
    if (doc?.version !== 1 || !Array.isArray(doc.relationships)) throw new SvidscopeError('io-error', `federation: ${this.file} is not a relationship file of version 1`);
    return doc.relationships
      .filter((r) => typeof r?.trustDomain === 'string' && typeof r.endpointUrl === 'string' && FEDERATION_PROFILES.includes(r.profile))
      .map((r) => ({ ...r, source: 'api' as const }));
  }

  save(relationships: readonly Relationship[]): void {
    const doc: StoredFile = {
      version: 1,
      relationships: relationships
        .filter((r) => r.source === 'api')
        .map(({ trustDomain, endpointUrl, profile, endpointSpiffeId, webRootsPem }) => ({ trustDomain, endpointUrl, profile, endpointSpiffeId, webRootsPem })),
    };
    writeFileAtomic(this.file, JSON.stringify(doc, null, 2) + '\n');
  }
}
