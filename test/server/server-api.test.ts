import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleSet, parseSpiffeBundle } from '../../src/identity-plane/spiffe/bundle/index.js';
import { verifyJwtSvid } from '../../src/identity-plane/spiffe/jwtsvid/index.js';
import { createCsr } from '../../src/identity-plane/spiffe/mint/csr-create.js';
import { generateKeyPair } from '../../src/identity-plane/spiffe/mint/keys.js';
import { verifyX509Svid } from '../../src/identity-plane/spiffe/x509svid/index.js';
import { attestAgent, bundlePemOf, nodeClient, removeDir, startTestServer, type TestServer } from '../support/server.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';

let t: TestServer;
const TD = 'example.org';

beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.stop();
  removeDir(t.dir);
});

const entryMsg = (spiffeId: string, parentId: string, extra: object = {}) => ({
  entry: { spiffe_id: spiffeId, parent_id: parentId, selectors: [{ type: 'unix', value: 'uid:1000' }], ...extra },
});

async function expectStatus(p: Promise<unknown>, code: grpc.status, message?: RegExp): Promise<void> {
  const err = (await p.then(() => undefined, (e: unknown) => e)) as grpc.ServiceError | undefined;
  expect(err, 'the call should have failed').toBeDefined();
  expect(grpc.status[err!.code]).toBe(grpc.status[code]);
  if (message) expect(err!.details).toMatch(message);
}

describe('join-token attestation', () => {
  it('issues an agent SVID once, then refuses the same token', async () => {
    const { value } = await t.admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 });
    const agent = await attestAgent(t, value);
    expect(agent.spiffeId).toBe(`spiffe://${TD}/spire/agent/join_token/${value}`);
    const set = new BundleSet([t.server.bundles.current]);
    const verified = verifyX509Svid(agent.chainDer.map((d) => new X509Certificate(d)), set, { now: new Date() });
    expect(verified.id.toString()).toBe(agent.spiffeId);
    await expectStatus(attestAgent(t, value), grpc.status.INVALID_ARGUMENT, /does not exist or has already been used/);
  });

  it('refuses an expired token and burns it', async () => {
    const { value } = await t.admin.call<{ value: string }>('CreateJoinToken', { ttl: 1 });
    await new Promise((r) => setTimeout(r, 1100));
    await expectStatus(attestAgent(t, value), grpc.status.INVALID_ARGUMENT, /expired/);
    await expectStatus(attestAgent(t, value), grpc.status.INVALID_ARGUMENT, /already been used/);
  });

  it('refuses a CSR with a bad signature without burning the token', async () => {
    const { value } = await t.admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 });
    const key = generateKeyPair();
    const csr = createCsr(key.privateKey, key.publicKey);
    csr[csr.length - 3] ^= 0xff;
    const client = nodeClient(t.server.address, bundlePemOf(t.server));
    await expectStatus(client.call('AttestAgent', { attestation_type: 'join_token', payload: Buffer.from(value), csr }), grpc.status.INVALID_ARGUMENT, /CSR/);
    client.close();
    await expect(attestAgent(t, value)).resolves.toBeDefined();
  });
});

describe('agent-authenticated API', () => {
  it('requires a client certificate', async () => {
    const client = nodeClient(t.server.address, bundlePemOf(t.server));
    await expectStatus(client.call('SyncAuthorizedEntries', { known_revision: 0 }), grpc.status.UNAUTHENTICATED);
    client.close();
  });

  it('mints SVIDs only for entries the agent is authorized for, with per-item status', async () => {
    const a = await attestAgent(t);
    const b = await attestAgent(t);
    const mine = await t.admin.call<{ id: string }>('CreateEntry', entryMsg(`spiffe://${TD}/web`, a.spiffeId, { dns_names: ['web.example.org'] }));
    const theirs = await t.admin.call<{ id: string }>('CreateEntry', entryMsg(`spiffe://${TD}/db`, b.spiffeId));
    const client = nodeClient(t.server.address, bundlePemOf(t.server), a);
    const sync = await client.call<{ entries: { id: string }[]; revision: string; unchanged: boolean }>('SyncAuthorizedEntries', { known_revision: 0 });
    expect(sync.entries.map((e) => e.id)).toEqual([mine.id]);
    const again = await client.call<{ unchanged: boolean }>('SyncAuthorizedEntries', { known_revision: sync.revision });
    expect(again.unchanged).toBe(true);

    const wk = generateKeyPair();
    const good = createCsr(wk.privateKey, wk.publicKey);
    const bad = Buffer.from(good);
    bad[bad.length - 3] ^= 0xff;
    const res = await client.call<{ results: { status_code: number; status_message: string; svid?: { cert_chain: Buffer[]; spiffe_id: string } }[] }>('BatchNewX509SVID', {
      params: [{ entry_id: mine.id, csr: good }, { entry_id: theirs.id, csr: good }, { entry_id: mine.id, csr: bad }],
    });
    expect(res.results.map((r) => grpc.status[r.status_code])).toEqual(['OK', 'PERMISSION_DENIED', 'INVALID_ARGUMENT']);
    const leaf = new X509Certificate(res.results[0].svid!.cert_chain[0]);
    expect(leaf.subjectAltName).toContain(`URI:spiffe://${TD}/web`);
    expect(leaf.subjectAltName).toContain('DNS:web.example.org');
    expect(leaf.publicKey.equals(wk.publicKey)).toBe(true);

    const jwt = await client.call<{ svid: { token: string } }>('NewJWTSVID', { entry_id: mine.id, audience: ['api'] });
    const verified = await verifyJwtSvid(jwt.svid.token, new BundleSet([t.server.bundles.current]), { audience: ['api'], now: new Date(), leewaySeconds: 0 });
    expect(verified.id.toString()).toBe(`spiffe://${TD}/web`);
    await expectStatus(client.call('NewJWTSVID', { entry_id: theirs.id, audience: ['api'] }), grpc.status.PERMISSION_DENIED);
    await expectStatus(client.call('NewJWTSVID', { entry_id: mine.id, audience: [] }), grpc.status.INVALID_ARGUMENT);
    client.close();
  });

  it('refuses a sync request that does not decode, naming the rule it broke, and serves the next one', async () => {
    const a = await attestAgent(t);
    const client = nodeClient(t.server.address, bundlePemOf(t.server), a);
    // known_entries (field 3) sent as a varint: the server's decoder refuses it instead of guessing.
    await expectStatus(client.raw('SyncAuthorizedEntries', Buffer.from([0x18, 0x01])), grpc.status.INVALID_ARGUMENT, /field 3 has wire type 0/);
    // A length running past the end of the message.
    await expectStatus(client.raw('SyncAuthorizedEntries', Buffer.from([0x1a, 0x40, 0x0a])), grpc.status.INVALID_ARGUMENT, /runs past the end/);
    const ok = await client.call<{ unchanged: boolean; entries: unknown[] }>('SyncAuthorizedEntries', { incremental: true, known_entries: [] });
    expect(ok.entries).toEqual([]);
    client.close();
  });

  it('renews the agent SVID, and refuses a banned or evicted agent', async () => {
    const a = await attestAgent(t);
    let client = nodeClient(t.server.address, bundlePemOf(t.server), a);
    const key = generateKeyPair();
    const renewed = await client.call<{ svid: { cert_chain: Buffer[]; spiffe_id: string } }>('RenewAgent', { csr: createCsr(key.privateKey, key.publicKey) });
    expect(renewed.svid.spiffe_id).toBe(a.spiffeId);
    client.close();

    await t.admin.call('BanAgent', { id: a.spiffeId });
    client = nodeClient(t.server.address, bundlePemOf(t.server), a);
    await expectStatus(client.call('GetBundles', {}), grpc.status.PERMISSION_DENIED, /banned/);
    client.close();

    const b = await attestAgent(t);
    await t.admin.call('EvictAgent', { id: b.spiffeId });
    client = nodeClient(t.server.address, bundlePemOf(t.server), b);
    await expectStatus(client.call('GetBundles', {}), grpc.status.PERMISSION_DENIED, /evicted/);
    client.close();
  });

  it('serves its bundle with sequence and refresh hint', async () => {
    const a = await attestAgent(t);
    const client = nodeClient(t.server.address, bundlePemOf(t.server), a);
    const res = await client.call<{ bundle: { trust_domain: string; document: Buffer; sequence_number: string } }>('GetBundles', {});
    const bundle = parseSpiffeBundle(mustTrustDomain(TD), res.bundle.document);
    expect(bundle.x509Authorities.length).toBeGreaterThanOrEqual(1);
    expect(bundle.jwtAuthorities.size).toBeGreaterThanOrEqual(1);
    expect(bundle.refreshHintSeconds).toBe(300);
    expect(BigInt(res.bundle.sequence_number)).toBe(bundle.sequenceNumber);
    client.close();
  });
});

describe('admin API validation', () => {
  const cases: [string, object, string, RegExp][] = [
    ['foreign trust domain', entryMsg('spiffe://other.org/x', `spiffe://${TD}/a`), 'INVALID_ARGUMENT', /not in trust domain/],
    ['reserved path', entryMsg(`spiffe://${TD}/spire/x`, `spiffe://${TD}/a`), 'INVALID_ARGUMENT', /reserved/],
    ['bad SPIFFE ID', entryMsg(`spiffe://${TD}/a/../b`, `spiffe://${TD}/a`), 'INVALID_ARGUMENT', /dot segments/],
    ['no selectors', { entry: { spiffe_id: `spiffe://${TD}/x`, parent_id: `spiffe://${TD}/a`, selectors: [] } }, 'INVALID_ARGUMENT', /selector/],
    ['bad selector type', { entry: { spiffe_id: `spiffe://${TD}/x`, parent_id: `spiffe://${TD}/a`, selectors: [{ type: 'Un ix', value: 'x' }] } }, 'INVALID_ARGUMENT', /selector type/],
    ['negative TTL', entryMsg(`spiffe://${TD}/x`, `spiffe://${TD}/a`, { x509_svid_ttl: -5 }), 'INVALID_ARGUMENT', /x509_svid_ttl/],
    ['TTL above the CA lifetime', entryMsg(`spiffe://${TD}/x`, `spiffe://${TD}/a`, { jwt_svid_ttl: 10_000_000 }), 'INVALID_ARGUMENT', /exceeds/],
    ['unknown federated trust domain', entryMsg(`spiffe://${TD}/x`, `spiffe://${TD}/a`, { federates_with: ['peer.org'] }), 'INVALID_ARGUMENT', /unknown trust domain peer.org/],
    ['hint too long', entryMsg(`spiffe://${TD}/x`, `spiffe://${TD}/a`, { hint: 'h'.repeat(1025) }), 'INVALID_ARGUMENT', /hint/],
  ];
  it.each(cases)('refuses %s', async (_name, req, code, message) => {
    const before = await t.admin.call<{ entries: unknown[] }>('ListEntries', {});
    const err = await t.admin.call('CreateEntry', req).then(() => undefined, (e: Error & { code?: string }) => e);
    expect(err).toBeDefined();
    expect(err!.message).toMatch(message);
    expect(code).toBe('INVALID_ARGUMENT');
    const after = await t.admin.call<{ entries: unknown[] }>('ListEntries', {});
    expect(after.entries.length).toBe(before.entries.length);
  });

  it('refuses a duplicate entry with already-exists and unknown ids with not-found', async () => {
    const req = entryMsg(`spiffe://${TD}/dup`, `spiffe://${TD}/a`);
    await t.admin.call('CreateEntry', req);
    await expect(t.admin.call('CreateEntry', req)).rejects.toMatchObject({ code: 'already-exists' });
    await expect(t.admin.call('GetEntry', { id: 'no-such-entry' })).rejects.toMatchObject({ code: 'not-found' });
    await expect(t.admin.call('DeleteEntry', { id: 'no-such-entry' })).rejects.toMatchObject({ code: 'not-found' });
  });

  it('keeps the admin socket owner-only', () => {
    expect(statSync(t.server.adminSocket).mode & 0o777).toBe(0o600);
  });
});
