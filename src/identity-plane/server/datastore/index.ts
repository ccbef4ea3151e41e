/**
 * The datastore's public surface: one `openDatastore` for both backends, the domain records and the
 * `Datastore` interface. Everything else in this folder is internal.
 */
import { fail } from './driver.js';
import { openPostgresDatastore } from './postgres.js';
import { openSqliteDatastore } from './sqlite.js';
import type { Datastore } from './types.js';

export type DatastoreConfig =
  /** Embedded default: one file, one server. */
  | { readonly kind: 'sqlite'; readonly path: string }
  /** Shared by several servers of one trust domain; `schema` keeps tables out of the default search path. */
  | { readonly kind: 'postgres'; readonly connectionString: string; readonly schema?: string; readonly maxConnections?: number };

/** Opens the store and brings its schema up to date; refuses a schema newer than this build (`config-invalid`). */
export function openDatastore(config: DatastoreConfig): Promise<Datastore> {
  switch (config.kind) {
    case 'sqlite':
      return openSqliteDatastore({ path: config.path });
    case 'postgres':
      return openPostgresDatastore(config);
    default: {
      const kind = (config as { kind?: unknown }).kind;
      return Promise.reject(fail('config-invalid', `datastore kind "${String(kind)}" is neither sqlite nor postgres`));
    }
  }
}

export { latestSchemaVersion } from './migrations.js';
export type {
  AgentFilter, AgentRecord, AttestedAgent, CaKeyKind, CaKeyPhase, CaKeyRecord, Datastore, DatastoreHealth, EntryChanges,
  EntryFilter, EntryUpdate, JoinToken, JoinTokenConsumption, NewEntry, RegistrationEntry, Selector, StoredBundle,
} from './types.js';
