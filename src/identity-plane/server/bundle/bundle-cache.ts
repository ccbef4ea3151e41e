import type { Datastore, StoredBundle } from '../datastore/types.js';

/**
 * The stored bundles (own and federated) held in memory for the agent API, so `GetBundles` does
 * not cost a datastore query per agent per sync. Writes through this server (federation
 * refreshers, admin) invalidate it at once through `observeBundleWrites`; writes by other servers
 * sharing the datastore arrive at the next periodic tick, like entries (`EntryCache`).
 */
export class BundleCache {
  private cached: Promise<StoredBundle[]> | undefined;
  // Bumped on every invalidation: a read that started before a write must not be kept after it.
  private generation = 0;

  constructor(private readonly datastore: Pick<Datastore, 'listBundles'>) {}

  list(): Promise<StoredBundle[]> {
    if (this.cached) return this.cached;
    const generation = this.generation;
    const read = this.datastore.listBundles();
    this.cached = read;
    read.catch(() => {
      if (this.cached === read) this.cached = undefined; // a failed read is retried next time
    });
    return read.then((bundles) => {
      if (generation !== this.generation && this.cached === read) this.cached = undefined;
      return bundles;
    });
  }

  invalidate(): void {
    this.generation++;
    this.cached = undefined;
  }
}

/** Wraps a datastore so that every bundle write or delete through it invalidates `cache`. */
export function observeBundleWrites(ds: Datastore, cache: BundleCache): Datastore {
  return new Proxy(ds, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if ((prop !== 'setBundle' && prop !== 'deleteBundle') || typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        cache.invalidate();
        try {
          return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } finally {
          cache.invalidate();
        }
      };
    },
  });
}
