// The Workload API's shared encoded answers: streams of callers with the same selectors are sent
// the very same bytes (one encoding), and a rotated SVID, a new trust bundle or a new federated
// bundle gives every stream, and every caller after, a fresh answer; callers with other selectors
// never share one. Decoded with the standard proto, so the bytes are what a client reads.
import * as grpc from '@grpc/grpc-js';
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { nullLogger } from '../../src/common/log.js';
import { ResponseCache, selectorsKey } from '../../src/identity-plane/agent/endpoints/response-cache.js';
import { createWorkloadHandler, workloadApiServerDefinition } from '../../src/identity-plane/agent/endpoints/workload-handler.js';
import { WorkloadCache, type CachedX509Svid, type Selector } from '../../src/identity-plane/agent/manager/cache.js';
import type { EntryMsg } from '../../src/identity-plane/server-api/messages.js';
import { createSpiffeBundle } from '../../src/identity-plane/spiffe/bundle/index.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { createSelfSignedCa } from '../../src/identity-plane/spiffe/mint/index.js';
import { workloadApiService, type X509BundlesResponseMessage, type X509SvidResponseMessage } from '../../src/identity-plane/workload-api/index.js';

const MIN = 60_000;
const sel = (...s: string[]): Selector[] => s.map((x) => ({ type: 'unix', value: x }));

function entry(id: string, selectors: Selector[], extra: Partial<EntryMsg> = {}): EntryMsg {
  return { id, spiffe_id: `spiffe://example.org/${id}`, parent_id: 'spiffe://example.org/agent', selectors, x509_svid_ttl: 0, federates_with: [], admin: false, downstream: false, expires_at: '0', dns_names: [], revision_number: '1', jwt_svid_ttl: 0, hint: '', created_at: '1', ...extra };
}

function svid(entryId: string, clock: FakeClock, leaf: string, lifetimeMs = 60 * MIN): CachedX509Svid {
  return { entryId, spiffeId: `spiffe://example.org/${entryId}`, chain: [Buffer.from(leaf)], keyDer: Buffer.from(`key-${leaf}`), notBefore: clock.nowMs(), notAfter: clock.nowMs() + lifetimeMs, entryRevision: '1', hint: '', authorityIds: [] };
}

function bundle(td: string, seq: number, clock: FakeClock) {
  const ca = createSelfSignedCa({ trustDomain: mustTrustDomain(td), ttlSeconds: 3600, now: clock.now() });
  return { bundle: createSpiffeBundle({ trustDomain: mustTrustDomain(td), sequenceNumber: seq, x509Authorities: [ca.certificate] }), der: ca.der };
}

function setup() {
  const clock = new FakeClock();
  const cache = new WorkloadCache(clock);
  // The caller's selectors travel in the fake call, as the attestor would find them for its process.
  const handler = createWorkloadHandler({
    cache, clock, logger: nullLogger(),
    attestor: { attest: async (call) => (call as unknown as { selectors: Selector[] }).selectors },
    jwt: { fetchJwtSvid: async () => ({ token: 'token', expiresAt: clock.nowMs() + MIN }) },
    jwtAudience: { maxCount: 4, maxBytes: 256 },
  });
  return { clock, cache, handler };
}

/** A server stream as the handler sees one, for a caller with these selectors; records what it writes. */
function open(handler: grpc.UntypedServiceImplementation, method: string, selectors: Selector[]) {
  const metadata = new grpc.Metadata();
  metadata.set('workload.spiffe.io', 'true');
  const call = Object.assign(new EventEmitter(), { metadata, selectors, written: [] as Buffer[], write(m: Buffer) { call.written.push(m); return true; }, end() {} });
  (handler[method] as (c: unknown) => void)(call);
  return call;
}

const settle = () => new Promise((resolve) => setImmediate(resolve));
const decodeX509 = (b: Buffer) => workloadApiService().service.FetchX509SVID.responseDeserialize(b) as X509SvidResponseMessage;
const decodeBundles = (b: Buffer) => workloadApiService().service.FetchX509Bundles.responseDeserialize(b) as X509BundlesResponseMessage;

describe('Workload API shared answers', () => {
  it('sends every stream of one selector set the same encoded bytes, and other selector sets their own', async () => {
    const { clock, cache, handler } = setup();
    const own = bundle('example.org', 1, clock);
    cache.setEntries([entry('web', sel('uid:1000')), entry('db', sel('uid:2000')), entry('web-admin', sel('uid:1000', 'gid:50'))]);
    cache.setBundles(own.bundle, new Map());
    cache.putSvids([svid('web', clock, 'leaf-web'), svid('db', clock, 'leaf-db'), svid('web-admin', clock, 'leaf-web-admin')]);
    const webs = [open(handler, 'FetchX509SVID', sel('uid:1000')), open(handler, 'FetchX509SVID', sel('uid:1000'))];
    const db = open(handler, 'FetchX509SVID', sel('uid:2000'));
    const admin = open(handler, 'FetchX509SVID', sel('uid:1000', 'gid:50'));
    await settle();
    for (const s of [...webs, db, admin]) expect(s.written).toHaveLength(1);
    // One encoding for both callers of uid 1000: the same Buffer, not merely equal bytes.
    expect(webs[1].written[0]).toBe(webs[0].written[0]);
    const web = decodeX509(webs[0].written[0]);
    expect(web.svids.map((s) => [s.spiffe_id, s.x509_svid.toString(), s.x509_svid_key.toString()])).toEqual([['spiffe://example.org/web', 'leaf-web', 'key-leaf-web']]);
    expect(web.svids[0].bundle.equals(own.der)).toBe(true);
    expect(decodeX509(db.written[0]).svids.map((s) => s.x509_svid.toString())).toEqual(['leaf-db']);
    // A caller with more selectors gets what they all authorize, not the shared answer of uid 1000.
    expect(decodeX509(admin.written[0]).svids.map((s) => s.x509_svid.toString()).sort()).toEqual(['leaf-web', 'leaf-web-admin']);
    expect(admin.written[0]).not.toBe(webs[0].written[0]);
  });

  it('gives every stream, and a caller arriving later, the rotated SVID', async () => {
    const { clock, cache, handler } = setup();
    cache.setEntries([entry('web', sel('uid:1000')), entry('db', sel('uid:2000'))]);
    cache.setBundles(bundle('example.org', 1, clock).bundle, new Map());
    cache.putSvids([svid('web', clock, 'leaf-1'), svid('db', clock, 'leaf-db')]);
    const streams = [open(handler, 'FetchX509SVID', sel('uid:1000')), open(handler, 'FetchX509SVID', sel('uid:1000'))];
    const db = open(handler, 'FetchX509SVID', sel('uid:2000'));
    await settle();
    cache.putSvids([svid('web', clock, 'leaf-2')]);
    for (const s of streams) {
      expect(s.written).toHaveLength(2);
      expect(decodeX509(s.written[1]).svids[0].x509_svid.toString()).toBe('leaf-2');
    }
    expect(streams[1].written[1]).toBe(streams[0].written[1]);
    expect(db.written).toHaveLength(1);
    const later = open(handler, 'FetchX509SVID', sel('uid:1000'));
    await settle();
    expect(later.written[0]).toBe(streams[0].written[1]);
  });

  it('gives a new answer when the trust bundle or a federated bundle changes', async () => {
    const { clock, cache, handler } = setup();
    cache.setEntries([entry('web', sel('uid:1000'), { federates_with: ['other.org'] })]);
    const [own1, own2, other1, other2] = [bundle('example.org', 1, clock), bundle('example.org', 2, clock), bundle('other.org', 1, clock), bundle('other.org', 2, clock)];
    cache.setBundles(own1.bundle, new Map([['other.org', other1.bundle]]));
    cache.putSvids([svid('web', clock, 'leaf')]);
    const x509 = open(handler, 'FetchX509SVID', sel('uid:1000'));
    const bundles = open(handler, 'FetchX509Bundles', sel('uid:1000'));
    await settle();
    expect(decodeX509(x509.written[0]).federated_bundles['spiffe://other.org'].equals(other1.der)).toBe(true);

    cache.setBundles(own2.bundle, new Map([['other.org', other1.bundle]]));
    expect(x509.written).toHaveLength(2);
    expect(decodeX509(x509.written[1]).svids[0].bundle.equals(own2.der)).toBe(true);
    expect(decodeBundles(bundles.written[1]).bundles['spiffe://example.org'].equals(own2.der)).toBe(true);

    cache.setBundles(own2.bundle, new Map([['other.org', other2.bundle]]));
    expect(x509.written).toHaveLength(3);
    expect(decodeX509(x509.written[2]).federated_bundles['spiffe://other.org'].equals(other2.der)).toBe(true);
    expect(decodeBundles(bundles.written[2]).bundles['spiffe://other.org'].equals(other2.der)).toBe(true);
    const later = open(handler, 'FetchX509SVID', sel('uid:1000'));
    await settle();
    expect(later.written[0]).toBe(x509.written[2]);
  });

  it('still refuses a caller with no identity', async () => {
    const { clock, cache, handler } = setup();
    cache.setEntries([entry('web', sel('uid:1000'))]);
    cache.setBundles(bundle('example.org', 1, clock).bundle, new Map());
    cache.putSvids([svid('web', clock, 'leaf')]);
    open(handler, 'FetchX509SVID', sel('uid:1000'));
    const stranger = open(handler, 'FetchX509SVID', sel('uid:3000'));
    const err = await new Promise<grpc.ServiceError>((resolve) => stranger.on('error', resolve));
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(stranger.written).toEqual([]);
  });
});

describe('ResponseCache', () => {
  const answer = (key: string, validUntilMs = Infinity) => ({ key, message: {}, bytes: Buffer.from(key), entryIds: ['e'], validUntilMs });

  it('answers only at the generation it was filled at and before the earliest notAfter of its SVIDs', () => {
    const source = { generation: 1 };
    const answers = new ResponseCache(source);
    answers.set('a', answer('a', 1_000));
    expect(answers.get('a', 999)?.key).toBe('a');
    expect(answers.get('a', 1_000)).toBeUndefined();
    answers.set('b', answer('b'));
    expect(answers.get('b', 5_000)?.key).toBe('b');
    source.generation = 2;
    expect(answers.get('b', 5_000)).toBeUndefined();
    expect(answers.size).toBe(0);
  });

  it('keeps at most its bound of selector sets, dropping the oldest', () => {
    const answers = new ResponseCache({ generation: 0 }, 2);
    for (const k of ['a', 'b', 'c']) answers.set(k, answer(k));
    expect([answers.get('a', 0), answers.get('b', 0)?.key, answers.get('c', 0)?.key]).toEqual([undefined, 'b', 'c']);
  });

  it('never gives two different selector lists one key, whatever characters their values hold', () => {
    expect(selectorsKey(sel('uid:1', 'gid:2'))).not.toBe(selectorsKey(sel('uid:1')));
    expect(selectorsKey([{ type: 'a', value: 'b:c' }])).not.toBe(selectorsKey([{ type: 'a:b', value: 'c' }]));
    // A program path crafted to spell out another caller's selectors stays one selector.
    expect(selectorsKey(sel('path:/tmp/x\nunix:uid:0', 'uid:1000'))).not.toBe(selectorsKey(sel('path:/tmp/x', 'uid:0', 'uid:1000')));
    expect(selectorsKey(sel('path:/tmp/x5:unix5:uid:0'))).not.toBe(selectorsKey(sel('path:/tmp/x', 'uid:0')));
  });
});

describe('the agent\'s Workload API service definition', () => {
  it('sends an encoded message as it is and encodes any other as the standard definition does', () => {
    const def = workloadApiServerDefinition().FetchX509SVID;
    const bytes = Buffer.from('already encoded');
    expect(def.responseSerialize(bytes)).toBe(bytes);
    const message = { svids: [{ spiffe_id: 'spiffe://example.org/x', x509_svid: Buffer.from('c'), x509_svid_key: Buffer.from('k'), bundle: Buffer.from('b'), hint: '' }], crl: [], federated_bundles: {} };
    expect(def.responseSerialize(message).equals(workloadApiService().service.FetchX509SVID.responseSerialize(message))).toBe(true);
    expect(def.path).toBe('/SpiffeWorkloadAPI/FetchX509SVID');
  });
});
