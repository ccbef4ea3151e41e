import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BundleCache, observeBundleWrites } from '../../src/identity-plane/server/bundle/bundle-cache.js';
import { openDatastore } from '../../src/identity-plane/server/datastore/index.js';
import type { Datastore } from '../../src/identity-plane/server/datastore/types.js';

// GetBundles reads stored bundles from this cache: it must save the query when nothing changed and
// never serve a bundle older than a write made through this server.
describe('BundleCache', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function open(): Promise<{ raw: Datastore; ds: Datastore; cache: BundleCache; reads: () => number }> {
    const dir = mkdtempSync(join(tmpdir(), 'bundle-cache-'));
    const raw = await openDatastore({ kind: 'sqlite', path: join(dir, 'ds.sqlite') });
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }), () => raw.close());
    let count = 0;
    const counting = { listBundles: () => (count++, raw.listBundles()) };
    const cache = new BundleCache(counting);
    return { raw, ds: observeBundleWrites(raw, cache), cache, reads: () => count };
  }
  const bundle = (td: string, sequence: bigint) => ({ trustDomain: td, document: Buffer.from(`{"seq":${sequence}}`), sequence, updatedAt: new Date() });

  it('serves repeated reads from memory and sees writes through the wrapped datastore at once', async () => {
    const { ds, cache, reads } = await open();
    await ds.setBundle(bundle('peer.example', 1n));
    expect((await cache.list()).map((b) => b.sequence)).toEqual([1n]);
    await cache.list();
    await cache.list();
    expect(reads()).toBe(1);
    await ds.setBundle(bundle('peer.example', 2n));
    expect((await cache.list()).map((b) => b.sequence)).toEqual([2n]);
    await ds.deleteBundle('peer.example');
    expect(await cache.list()).toEqual([]);
    expect(reads()).toBe(3);
  });

  it('sees writes made behind its back (another server) only after invalidate()', async () => {
    const { raw, cache } = await open();
    expect(await cache.list()).toEqual([]);
    await raw.setBundle(bundle('other.example', 5n));
    expect(await cache.list()).toEqual([]);
    cache.invalidate();
    expect((await cache.list()).map((b) => b.trustDomain)).toEqual(['other.example']);
  });
});
