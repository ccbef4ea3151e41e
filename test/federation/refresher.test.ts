// The federated bundle refresher against local HTTPS bundle endpoints: both profiles, rotation,
// refused documents (malformed, lower sequence), an endpoint that goes down and comes back, and
// the poll schedule (refresh hint clamped, backoff) on a fake clock.
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { nullLogger } from '../../src/common/log.js';
import { openDatastore } from '../../src/identity-plane/server/datastore/index.js';
import type { Datastore } from '../../src/identity-plane/server/datastore/types.js';
import { FederationFetchError, type FetchFailureReason, type Relationship } from '../../src/identity-plane/server/federation/index.js';
import { BundleRefresher, type RefreshLimits } from '../../src/identity-plane/server/federation/refresher.js';
import { parseSpiffeBundle, type SpiffeBundle } from '../../src/identity-plane/spiffe/bundle/index.js';
import { removeDir, tempDir } from '../support/server.js';
import { FakeBundleEndpoint } from './support/fake-endpoint.js';
import { bundleJson, testCa, tlsIdentity, type TestCa } from './support/pki.js';
import { mustTrustDomain, type TrustDomain } from '../../src/identity-plane/spiffe/id/index.js';

const TD = 'b.test';
const ENDPOINT_ID = `spiffe://${TD}/spire/server`;
const LIMITS: RefreshLimits = { minRefreshSeconds: 2, maxRefreshSeconds: 60, defaultRefreshSeconds: 30, fetchTimeoutSeconds: 5 };

let dir: string;
let datastore: Datastore;
let caB1: TestCa;
let caB2: TestCa;
let rogue: TestCa;
let endpoint: FakeBundleEndpoint;
let clock: FakeClock;
const refreshers: BundleRefresher[] = [];

beforeAll(async () => {
  dir = tempDir('federation-refresher');
  caB1 = testCa(TD);
  caB2 = testCa(TD);
  rogue = testCa(TD);
});
afterAll(() => removeDir(dir));

beforeEach(async () => {
  datastore = await openDatastore({ kind: 'sqlite', path: path.join(dir, `ds-${Date.now()}-${Math.random()}.sqlite3`) });
  endpoint = await new FakeBundleEndpoint(tlsIdentity(caB1, ENDPOINT_ID)).start();
  endpoint.body = bundleJson(TD, [caB1], 1n, 10);
  clock = new FakeClock(Date.now()); // TLS checks validity against real time: keep the fake clock near it
});
afterEach(async () => {
  for (const r of refreshers.splice(0)) r.stop();
  await endpoint.stop();
  await datastore.close();
});

function refresher(rel: Partial<Relationship> = {}, limits: RefreshLimits = LIMITS, trustBundleFor: (td: TrustDomain) => Promise<SpiffeBundle | undefined> = async () => undefined) {
  const relationship: Relationship = { trustDomain: TD, endpointUrl: endpoint.url, profile: 'https_spiffe', endpointSpiffeId: ENDPOINT_ID, source: 'config', ...rel };
  const events: { outcome: string; reason?: string }[] = [];
  const r = new BundleRefresher({
    relationship, trustDomain: mustTrustDomain(relationship.trustDomain), datastore, clock, logger: nullLogger(), limits, trustBundleFor,
    metrics: { refreshed: (_td, outcome, reason) => events.push({ outcome, reason }) },
  });
  refreshers.push(r);
  return { r, events };
}

async function bootstrap(cas: TestCa[], sequence = 0n) {
  await datastore.setBundle({ trustDomain: TD, document: Buffer.from(bundleJson(TD, cas, sequence)), sequence, updatedAt: clock.now() });
}

async function storedSequence(): Promise<bigint> {
  return (await datastore.getBundle(TD)).sequence;
}

async function expectFailure(p: Promise<unknown>, reason: FetchFailureReason) {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(FederationFetchError);
  expect(err).toMatchObject({ code: 'unavailable', reason });
}

describe('https_spiffe', () => {
  it('authenticates the endpoint with the bootstrap bundle, stores the fetched one and reports it', async () => {
    await bootstrap([caB1]);
    const { r, events } = refresher();
    await r.start();
    expect(await r.refreshNow()).toBe('updated');
    expect(await storedSequence()).toBe(1n);
    const s = r.status();
    expect(s).toMatchObject({ bundleSequence: 1n, refreshHintSeconds: 10, consecutiveFailures: 0, lastError: undefined });
    expect(s.lastSuccessMs).toBe(clock.nowMs());
    expect(s.authorityExpiryMs).toBe(new Date(caB1.certificate.validTo).getTime());
    expect(await r.refreshNow()).toBe('unchanged');
    expect(events.map((e) => e.outcome)).toEqual(['updated', 'unchanged']);
  });

  it('follows a rotation: new authority published first, then the endpoint SVID signed by it, then the old one removed', async () => {
    await bootstrap([caB1]);
    const { r } = refresher();
    await r.start();
    endpoint.body = bundleJson(TD, [caB1, caB2], 2n, 10);
    expect(await r.refreshNow()).toBe('updated');
    endpoint.setIdentity(tlsIdentity(caB2, ENDPOINT_ID));
    endpoint.body = bundleJson(TD, [caB2], 3n, 10);
    expect(await r.refreshNow()).toBe('updated');
    const stored = parseSpiffeBundle(mustTrustDomain(TD), (await datastore.getBundle(TD)).document);
    expect(stored.sequenceNumber).toBe(3n);
    expect(stored.x509Authorities.map((a) => a.cert.fingerprint256)).toEqual([caB2.certificate.fingerprint256]);
    // The old CA left the stored bundle, so an endpoint still presenting an SVID of it is refused now.
    endpoint.setIdentity(tlsIdentity(caB1, ENDPOINT_ID));
    await expectFailure(r.refreshNow(), 'authentication');
  });

  it('refuses an endpoint presenting another SPIFFE ID', async () => {
    await bootstrap([caB1]);
    endpoint.setIdentity(tlsIdentity(caB1, `spiffe://${TD}/not-the-bundle-endpoint`));
    const { r, events } = refresher();
    await r.start();
    await expectFailure(r.refreshNow(), 'authentication');
    expect(await storedSequence()).toBe(0n);
    expect(r.status().lastError).toMatchObject({ reason: 'authentication' });
    expect(r.status().lastError?.message).toContain(`not ${ENDPOINT_ID}`);
    expect(events).toEqual([{ outcome: 'error', reason: 'authentication' }]);
  });

  it('refuses an endpoint whose SVID does not chain to the bundle (right ID, wrong CA)', async () => {
    await bootstrap([caB1]);
    endpoint.setIdentity(tlsIdentity(rogue, ENDPOINT_ID));
    const { r } = refresher();
    await r.start();
    await expectFailure(r.refreshNow(), 'authentication');
    expect(await storedSequence()).toBe(0n);
  });

  it('cannot authenticate a self-serving endpoint without any bundle of its domain', async () => {
    const { r } = refresher();
    await r.start();
    await expectFailure(r.refreshNow(), 'no_trust_bundle');
    expect(endpoint.requests).toBe(0);
  });

  it('authenticates a non-self-serving endpoint with the endpoint domain\'s bundle', async () => {
    const caA = testCa('a.test');
    endpoint.setIdentity(tlsIdentity(caA, 'spiffe://a.test/bundle-mirror'));
    const { r } = refresher({ endpointSpiffeId: 'spiffe://a.test/bundle-mirror' }, LIMITS, async () => parseSpiffeBundle(mustTrustDomain('a.test'), bundleJson('a.test', [caA], 1n)));
    await r.start();
    expect(await r.refreshNow()).toBe('updated');
  });
});

describe('refused documents keep the stored bundle', () => {
  beforeEach(() => bootstrap([caB1]));

  it.each([
    ['not JSON', 'this is not a bundle'],
    ['no keys member', '{"spiffe_sequence": 9}'],
    ['a broken JWK', '{"keys":[{"use":"x509-svid"}],"spiffe_sequence":9}'],
    ['a non-integer sequence', '{"keys":[],"spiffe_sequence":"9"}'],
  ])('malformed: %s', async (_name, body) => {
    const { r } = refresher();
    await r.start();
    endpoint.body = body;
    await expectFailure(r.refreshNow(), 'malformed');
    expect(await storedSequence()).toBe(0n);
  });

  it('a lower sequence than the stored one', async () => {
    const { r } = refresher();
    await r.start();
    endpoint.body = bundleJson(TD, [caB1, caB2], 5n, 10);
    await r.refreshNow();
    endpoint.body = bundleJson(TD, [rogue], 4n, 10);
    await expectFailure(r.refreshNow(), 'sequence_regressed');
    const stored = await datastore.getBundle(TD);
    expect(stored.sequence).toBe(5n);
    expect(parseSpiffeBundle(mustTrustDomain(TD), stored.document).x509Authorities).toHaveLength(2);
    expect(r.status().errors.get('sequence_regressed')).toBe(1);
  });

  it('an HTTP error status', async () => {
    const { r } = refresher();
    await r.start();
    endpoint.status = 404;
    await expectFailure(r.refreshNow(), 'http_status');
    expect(await storedSequence()).toBe(0n);
  });
});

describe('https_web', () => {
  const webCa = testCa('web.test');
  const otherCa = testCa('other.test');
  const web = (roots?: TestCa): Partial<Relationship> => ({ profile: 'https_web', endpointSpiffeId: undefined, webRootsPem: roots?.pem });

  beforeEach(() => endpoint.setIdentity(tlsIdentity(webCa, 'spiffe://web.test/endpoint', ['localhost'])));

  it('accepts a certificate for the host from the configured roots', async () => {
    const { r } = refresher(web(webCa));
    await r.start();
    expect(await r.refreshNow()).toBe('updated');
    expect(await storedSequence()).toBe(1n);
  });

  it('refuses a certificate the configured roots do not trust', async () => {
    const { r } = refresher(web(otherCa));
    await r.start();
    await expectFailure(r.refreshNow(), 'tls');
    await expect(datastore.getBundle(TD)).rejects.toMatchObject({ code: 'not-found' });
  });

  it('refuses a private-CA certificate against the system Web PKI roots', async () => {
    const { r } = refresher(web());
    await r.start();
    await expectFailure(r.refreshNow(), 'tls');
  });

  it('refuses a trusted certificate issued for another host name', async () => {
    endpoint.setIdentity(tlsIdentity(webCa, 'spiffe://web.test/endpoint', ['elsewhere.example']));
    const { r } = refresher(web(webCa));
    await r.start();
    await expectFailure(r.refreshNow(), 'tls');
  });

  it('stores a document without spiffe_sequence under a local sequence that moves on each change', async () => {
    endpoint.body = bundleJson(TD, [caB1]);
    const { r } = refresher(web(webCa));
    await r.start();
    expect(await r.refreshNow()).toBe('updated');
    expect(await storedSequence()).toBe(0n);
    expect(await r.refreshNow()).toBe('unchanged');
    endpoint.body = bundleJson(TD, [caB1, caB2]);
    expect(await r.refreshNow()).toBe('updated');
    const stored = await datastore.getBundle(TD);
    expect(stored.sequence).toBe(1n);
    expect(parseSpiffeBundle(mustTrustDomain(TD), stored.document).sequenceNumber).toBe(1n);
  });
});

describe('schedule', () => {
  const tick = async (r: BundleRefresher, ms: number) => {
    clock.advance(ms);
    await r.idle();
  };

  it('fetches at once, then at the refresh hint clamped into [min, max]', async () => {
    await bootstrap([caB1]);
    endpoint.body = bundleJson(TD, [caB1], 1n, 10);
    const { r } = refresher();
    await r.start();
    await tick(r, 0);
    expect(endpoint.requests).toBe(1);
    expect(r.status().nextRefreshMs).toBe(clock.nowMs() + 10_000);
    await tick(r, 9_999);
    expect(endpoint.requests).toBe(1);
    await tick(r, 1);
    expect(endpoint.requests).toBe(2);

    endpoint.body = bundleJson(TD, [caB1], 2n, 3600); // above max
    await r.refreshNow();
    expect(r.status().nextRefreshMs).toBe(clock.nowMs() + 60_000);
    endpoint.body = bundleJson(TD, [caB1], 3n, 1); // below min
    await r.refreshNow();
    expect(r.status().nextRefreshMs).toBe(clock.nowMs() + 2_000);
    endpoint.body = bundleJson(TD, [caB1], 4n); // no hint: the default
    await r.refreshNow();
    expect(r.status().nextRefreshMs).toBe(clock.nowMs() + 30_000);
  });

  it('follows the hint the endpoint serves even when the bundle itself is unchanged (not stored again)', async () => {
    // The stored document (bootstrap, or a peer that only changed its hint) says 40 s; the endpoint says 5 s.
    await datastore.setBundle({ trustDomain: TD, document: Buffer.from(bundleJson(TD, [caB1], 1n, 40)), sequence: 1n, updatedAt: clock.now() });
    endpoint.body = bundleJson(TD, [caB1], 1n, 5);
    const { r } = refresher();
    await r.start();
    expect(await r.refreshNow()).toBe('unchanged');
    expect(r.status().nextRefreshMs).toBe(clock.nowMs() + 5_000);
  });

  it('backs off exponentially while the endpoint is down, never past the interval, and recovers when it returns', async () => {
    await bootstrap([caB1]);
    endpoint.body = bundleJson(TD, [caB1], 1n, 20);
    const { r } = refresher();
    await r.start();
    await tick(r, 0);
    expect(r.status().bundleSequence).toBe(1n);
    await endpoint.stop();

    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      const due = r.status().nextRefreshMs! - clock.nowMs();
      await tick(r, due);
      delays.push(r.status().nextRefreshMs! - clock.nowMs());
    }
    expect(delays).toEqual([2_000, 4_000, 8_000, 16_000, 20_000, 20_000]);
    const s = r.status();
    expect(s.consecutiveFailures).toBe(6);
    expect(s.errors.get('connect')).toBe(6);
    expect(s.bundleSequence).toBe(1n); // the last good bundle stays
    expect(await storedSequence()).toBe(1n);

    endpoint.body = bundleJson(TD, [caB1, caB2], 2n, 20);
    await endpoint.start();
    await tick(r, r.status().nextRefreshMs! - clock.nowMs());
    expect(r.status()).toMatchObject({ consecutiveFailures: 0, bundleSequence: 2n });
    expect(r.status().nextRefreshMs).toBe(clock.nowMs() + 20_000);
  });

  it('stops polling when stopped', async () => {
    await bootstrap([caB1]);
    const { r } = refresher();
    await r.start();
    r.stop();
    await tick(r, 120_000);
    expect(endpoint.requests).toBe(0);
    expect(r.status().nextRefreshMs).toBeUndefined();
  });
});
