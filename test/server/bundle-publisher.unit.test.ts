// The server's BundlePublisher on a fake clock with a SQLite datastore in a temporary directory:
// the sequence number moves only when the authorities change, the refresh hint is published, an
// expired authority is pruned, a withheld one removed, and a second server's keys merged in.
import { generateKeyPairSync } from 'node:crypto';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { nullLogger } from '../../src/common/log.js';
import { BundlePublisher } from '../../src/identity-plane/server/bundle/publisher.js';
import type { PublishedAuthorities } from '../../src/identity-plane/server/ca/manager.js';
import { openDatastore } from '../../src/identity-plane/server/datastore/index.js';
import type { Datastore } from '../../src/identity-plane/server/datastore/types.js';
import { parseSpiffeBundle } from '../../src/identity-plane/spiffe/bundle/index.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { createSelfSignedCa } from '../../src/identity-plane/spiffe/mint/index.js';
import { removeDir, tempDir } from '../support/server.js';

const td = mustTrustDomain('example.org');
const HOUR = 3600_000;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function datastore(): Promise<Datastore> {
  const dir = tempDir('publisher');
  const ds = await openDatastore({ kind: 'sqlite', path: path.join(dir, 'datastore.sqlite3') });
  cleanups.push(() => removeDir(dir), () => ds.close());
  return ds;
}

function publisher(ds: Datastore, clock: FakeClock, authorities: () => PublishedAuthorities, refreshHintSeconds = 300) {
  const changes: bigint[] = [];
  const p = new BundlePublisher({ trustDomain: td, datastore: ds, clock, logger: nullLogger(), refreshHintSeconds, ownAuthorities: authorities });
  p.onChange((b) => changes.push(b.sequenceNumber!));
  return { p, changes };
}

const ca = (clock: FakeClock, ttlHours: number) => createSelfSignedCa({ trustDomain: td, ttlSeconds: ttlHours * 3600, now: clock.now() }).certificate;
const jwtKey = (keyId: string, clock: FakeClock, ttlHours: number) => ({ keyId, publicKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey, notAfter: clock.nowMs() + ttlHours * HOUR });
const none = { x509: [], jwt: [] };

describe('BundlePublisher', () => {
  it('publishes sequence 1 with the refresh hint, keeps it while nothing changes, and increments once per change', async () => {
    const clock = new FakeClock();
    const ds = await datastore();
    const auth: PublishedAuthorities = { x509: [ca(clock, 48)], jwt: [jwtKey('k1', clock, 48)], withheld: none };
    const { p, changes } = publisher(ds, clock, () => auth, 120);
    const first = await p.sync();
    expect(first.sequenceNumber).toBe(1n);
    expect(first.refreshHintSeconds).toBe(120);
    expect(first.x509Authorities).toHaveLength(1);
    expect([...first.jwtAuthorities.keys()]).toEqual(['k1']);
    const stored = await ds.getBundle('example.org');
    expect(stored.sequence).toBe(1n);
    expect(parseSpiffeBundle(td, stored.document).refreshHintSeconds).toBe(120);

    clock.advance(HOUR);
    expect((await p.sync()).sequenceNumber).toBe(1n);
    expect(changes).toEqual([1n]);
    expect(p.currentUpdatedAt.getTime()).toBe(clock.nowMs() - HOUR);

    auth.x509.push(ca(clock, 48));
    expect((await p.sync()).sequenceNumber).toBe(2n);
    expect(p.current.x509Authorities).toHaveLength(2);
    expect(p.currentUpdatedAt.getTime()).toBe(clock.nowMs());
    expect(changes).toEqual([1n, 2n]);
  });

  it('prunes an authority once its notAfter has passed, however long ago it was published', async () => {
    const clock = new FakeClock();
    const ds = await datastore();
    const auth: PublishedAuthorities = { x509: [ca(clock, 48), ca(clock, 2)], jwt: [jwtKey('short', clock, 3), jwtKey('long', clock, 48)], withheld: none };
    const { p } = publisher(ds, clock, () => auth);
    await p.sync();
    // The server stops listing what expired; the records it wrote stay in the datastore until a sync prunes them.
    clock.advance(2 * HOUR - 1);
    expect((await p.sync()).x509Authorities).toHaveLength(2);
    clock.advance(1);
    auth.x509 = auth.x509.filter((c) => new Date(c.validTo).getTime() > clock.nowMs());
    const afterX509 = await p.sync();
    expect(afterX509.sequenceNumber).toBe(2n);
    expect(afterX509.x509Authorities).toHaveLength(1);
    clock.advance(HOUR);
    const afterJwt = await p.sync();
    expect(afterJwt.sequenceNumber).toBe(3n);
    expect([...afterJwt.jwtAuthorities.keys()]).toEqual(['long']);
    expect((await ds.listCaKeys()).map((r) => r.id).filter((id) => id.startsWith('jwt:'))).toEqual(['jwt:long']);
  });

  it('removes a withheld authority from the records and the bundle, and puts it back when published again', async () => {
    const clock = new FakeClock();
    const ds = await datastore();
    const [a, b] = [ca(clock, 48), ca(clock, 48)];
    let auth: PublishedAuthorities = { x509: [a, b], jwt: [], withheld: none };
    const { p } = publisher(ds, clock, () => auth);
    await p.sync();
    auth = { x509: [a], jwt: [], withheld: { x509: [b], jwt: [] } };
    const withheld = await p.sync();
    expect(withheld.sequenceNumber).toBe(2n);
    expect(withheld.x509Authorities.map((x) => x.cert.fingerprint256)).toEqual([a.fingerprint256]);
    expect(await ds.listCaKeys()).toHaveLength(1);
    auth = { x509: [a, b], jwt: [], withheld: none };
    expect((await p.sync()).x509Authorities).toHaveLength(2);
    expect(p.current.sequenceNumber).toBe(3n);
  });

  it('merges the keys of two servers sharing a datastore into one bundle, whichever syncs', async () => {
    const clock = new FakeClock();
    const ds = await datastore();
    const [caOne, caTwo, keyTwo] = [ca(clock, 48), ca(clock, 48), jwtKey('two', clock, 48)];
    const one = publisher(ds, clock, () => ({ x509: [caOne], jwt: [], withheld: none }));
    const two = publisher(ds, clock, () => ({ x509: [caTwo], jwt: [keyTwo], withheld: none }));
    expect((await one.p.sync()).sequenceNumber).toBe(1n);
    const merged = await two.p.sync();
    expect(merged.sequenceNumber).toBe(2n);
    expect(merged.x509Authorities.map((x) => x.cert.fingerprint256).sort()).toEqual([caOne.fingerprint256, caTwo.fingerprint256].sort());
    // The first server's next sync derives the same document from the records: no new sequence.
    const seen = await one.p.sync();
    expect(seen.sequenceNumber).toBe(2n);
    expect([...seen.jwtAuthorities.keys()]).toEqual(['two']);
    expect(one.changes).toEqual([1n, 2n]);
  });

  it('refuses to report a bundle before the first sync', async () => {
    const clock = new FakeClock();
    const { p } = publisher(await datastore(), clock, () => ({ x509: [], jwt: [], withheld: none }));
    expect(() => p.current).toThrow(/not synced/);
  });
});
