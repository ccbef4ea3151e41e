// Incremental sync and push against a real `svidscope server run` process over real mTLS: the
// agent's own ServerClient sends what it holds and gets exactly the changes (create, update,
// delete, reparent, node alias, expiry); an agent of the first protocol still gets full lists; an
// entry created through the admin API reaches a real agent's Workload API stream long before its
// 60 s poll would; a banned agent's change stream is closed with its code.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nullLogger } from '../../src/common/log.js';
import { ServerClient, type ServerCallError } from '../../src/identity-plane/server-api/node-client.js';
import { connectAdmin, type AdminClient } from '../../src/identity-plane/server-api/admin-client.js';
import { entrySetDigest } from '../../src/identity-plane/server-api/entry-sync.js';
import type { ChangeNotificationMsg, EntryMsg, SyncResponseMsg } from '../../src/identity-plane/server-api/messages.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../src/identity-plane/spiffe/bundle/index.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { encodePem } from '../../src/identity-plane/spiffe/x509/index.js';
import { createSelfSignedCa } from '../../src/identity-plane/spiffe/mint/index.js';
import { createWorkloadApiClient, type X509Context } from '../../src/identity-plane/workload-api/index.js';
import { scrapeSeries } from '../support/metrics.js';
import { freePort, httpOk, spawnCli, waitFor } from '../support/process.js';
import { attestAgentAt, removeDir, tempDir } from '../support/server.js';

const TD = 'example.org';
const SERVER_ID = `spiffe://${TD}/spire/server`;
const dir = tempDir('push-sync');
const children: ReturnType<typeof spawnCli>[] = [];
const clients: ServerClient[] = [];
let admin: AdminClient;
let address: string;
let serverOps: string;
let bundlePem: string;

beforeAll(async () => {
  const [port, ops] = [await freePort(), await freePort()];
  const data = path.join(dir, 'server');
  mkdirSync(data, { recursive: true });
  writeFileSync(path.join(data, 'server.yaml'), stringify({ trust_domain: TD, data_dir: data, bind: `127.0.0.1:${port}`, health_bind: `127.0.0.1:${ops}` }));
  const proc = spawnCli(['server', 'run', '--config', path.join(data, 'server.yaml')]);
  children.push(proc);
  serverOps = `http://127.0.0.1:${ops}`;
  await waitFor('server ready', () => httpOk(`${serverOps}/ready`), 60_000, proc.logs);
  address = `127.0.0.1:${port}`;
  admin = connectAdmin(path.join(data, 'admin.sock'));
  const b = await admin.call<{ document: Buffer }>('GetBundle', {});
  bundlePem = x509BundleToPem(parseSpiffeBundle(mustTrustDomain(TD), b.document));
}, 90_000);

afterAll(async () => {
  for (const c of clients) c.close();
  admin?.close();
  for (const c of children) c.child.kill('SIGTERM');
  await Promise.all(children.map((c) => c.child.catch(() => undefined)));
  removeDir(dir);
});

/** An agent as the fleet simulator is one: attested with a join token, the agent's own client, and the view it holds. */
async function newAgent() {
  const token = (await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 })).value;
  const identity = await attestAgentAt(address, bundlePem, token);
  const client = new ServerClient({ addresses: [address], trustDomain: mustTrustDomain(TD), logger: nullLogger() });
  clients.push(client);
  client.setTrust(bundlePem);
  client.setIdentity(identity.chainDer.map((d) => encodePem('CERTIFICATE', d)).join(''), identity.key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  const held = new Map<string, string>();
  /** One incremental sync: applies the answer to `held` and returns it, checked against its digest. */
  const sync = async (): Promise<SyncResponseMsg> => {
    const res = await client.sync({ known_revision: '0', incremental: true, known_entries: [...held].map(([id, revision]) => ({ id, revision })) });
    if (res.unchanged) return res;
    expect(res.incremental).toBe(true);
    for (const id of res.deleted_ids ?? []) held.delete(id);
    for (const e of res.entries) held.set(e.id, e.revision_number);
    expect(entrySetDigest([...held].map(([id, revision]) => ({ id, revision }))).equals(res.digest!)).toBe(true);
    return res;
  };
  return { id: identity.spiffeId, client, held, sync };
}

const create = (spiffeId: string, parentId: string, extra: object = {}) =>
  admin.call<EntryMsg>('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}/${spiffeId}`, parent_id: parentId, selectors: [{ type: 'unix', value: 'uid:4242' }], ...extra } });
const changedIds = (res: SyncResponseMsg) => res.entries.map((e) => e.id).sort();

describe('incremental sync against a real server', () => {
  it('delivers exactly the changes: create, update, delete, reparent, node alias, expiry', async () => {
    const a = await newAgent();
    const b = await newAgent();
    const web = await create('web', a.id);
    const db = await create('db', a.id);
    const sidecar = await create('web/sidecar', web.spiffe_id); // nested under web
    const other = await create('other', b.id);
    const first = await a.sync();
    expect(changedIds(first)).toEqual([web.id, db.id, sidecar.id].sort());
    expect(first.deleted_ids).toEqual([]);
    expect((await a.sync()).unchanged).toBe(true);
    expect(changedIds(await b.sync())).toEqual([other.id]);

    // Update: only that entry, at its new revision.
    const updated = await admin.call<EntryMsg>('UpdateEntry', { entry: { ...db, hint: 'changed' } });
    const upd = await a.sync();
    expect(upd.entries.map((e) => [e.id, e.revision_number, e.hint])).toEqual([[db.id, updated.revision_number, 'changed']]);
    expect(upd.deleted_ids).toEqual([]);

    // Delete.
    await admin.call('DeleteEntry', { id: db.id });
    const del = await a.sync();
    expect(del.entries).toEqual([]);
    expect(del.deleted_ids).toEqual([db.id]);

    // Reparent web to b: a loses web and the sidecar nested under it (whose revision did not move), b gains both.
    await admin.call<EntryMsg>('UpdateEntry', { entry: { ...web, parent_id: b.id } });
    const lost = await a.sync();
    expect(lost.entries).toEqual([]);
    expect([...lost.deleted_ids!].sort()).toEqual([web.id, sidecar.id].sort());
    expect(changedIds(await b.sync())).toEqual([web.id, sidecar.id].sort());

    // Node alias: an alias matching a (join-token agents carry their own ID as a spiffe_id selector) brings its children.
    const alias = await admin.call<EntryMsg>('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}/group`, parent_id: SERVER_ID, selectors: [{ type: 'spiffe_id', value: a.id }] } });
    const member = await create('group/app', alias.spiffe_id);
    expect(changedIds(await a.sync())).toEqual([member.id]);
    expect((await b.sync()).unchanged).toBe(true);

    // Expiry: no change event at all, yet the next sync drops the expired entry.
    const shortLived = await create('short', a.id, { expires_at: String(Math.floor(Date.now() / 1000) + 2) });
    expect(changedIds(await a.sync())).toEqual([shortLived.id]);
    await new Promise((r) => setTimeout(r, 2500));
    const expired = await a.sync();
    expect(expired.deleted_ids).toEqual([shortLived.id]);
    expect([...a.held.keys()].sort()).toEqual([member.id]);
  }, 60_000);

  it('answers an agent of the first protocol (known_revision only) with the full list', async () => {
    const a = await newAgent();
    const one = await create('old-1', a.id);
    const two = await create('old-2', a.id);
    const full = await a.client.sync('0');
    expect(full.incremental).toBe(false);
    expect(full.unchanged).toBe(false);
    expect(changedIds(full)).toEqual([one.id, two.id].sort());
    expect((await a.client.sync(full.revision)).unchanged).toBe(true);
    await admin.call('DeleteEntry', { id: one.id });
    const after = await a.client.sync(full.revision);
    expect(after.incremental).toBe(false);
    expect(changedIds(after)).toEqual([two.id]);
    expect(after.deleted_ids).toEqual([]);
  }, 30_000);
});

describe('push', () => {
  it('closes a banned agent\'s change stream with its code', async () => {
    const a = await newAgent();
    const got: ChangeNotificationMsg[] = [];
    const ended = new Promise<ServerCallError | undefined>((resolve) => a.client.watch((m) => got.push(m), resolve));
    await waitFor('the first message', async () => got.length > 0, 10_000);
    expect(got[0]).toMatchObject({ initial: true });
    await create('pushed', a.id);
    await waitFor('an entry notification', async () => got.some((m) => m.entries), 10_000);
    await admin.call('BanAgent', { id: a.id });
    const err = await ended;
    expect(err?.code).toBe('agent-banned');
  }, 30_000);

  it('keeps the connection and its change stream when trust anchors are only added, and rebuilds both when one is removed', async () => {
    const a = await newAgent();
    let ended: ServerCallError | undefined | 'open' = 'open';
    const got: ChangeNotificationMsg[] = [];
    a.client.watch((m) => got.push(m), (err) => void (ended = err));
    await waitFor('the stream up', async () => got.some((m) => m.initial), 10_000);
    const otherRoot = encodePem('CERTIFICATE', createSelfSignedCa({ trustDomain: mustTrustDomain(TD), ttlSeconds: 3600, now: new Date() }).der);
    // A CA being prepared: the bundle gains an anchor, and the connection verified against the old ones stays.
    a.client.setTrust(bundlePem + otherRoot);
    await a.sync();
    await create('after-widening', a.id);
    await waitFor('an entry notification on the same stream', async () => got.some((m) => m.entries), 10_000);
    expect(ended).toBe('open');
    // The anchor removed again (a revoked CA): the connection it may have verified goes at once.
    a.client.setTrust(bundlePem);
    await waitFor('the stream ended', async () => ended !== 'open', 10_000);
    expect((ended as unknown as ServerCallError | undefined)?.status).toBe(1); // CANCELLED: the client rebuilt its connection
    await a.sync(); // and the next call handshakes again under the narrowed trust
  }, 30_000);

  it('brings an admin-created entry to a real agent\'s Workload API stream long before its 60 s poll', async () => {
    const token = (await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 })).value;
    const agentId = `spiffe://${TD}/spire/agent/join_token/${token}`;
    const uid = process.getuid?.() ?? 0;
    await admin.call('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}/first`, parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${uid}` }] } });
    writeFileSync(path.join(dir, 'bundle.pem'), bundlePem);
    writeFileSync(path.join(dir, 'token'), token, { mode: 0o600 });
    const ops = await freePort();
    const socketPath = path.join(dir, 'agent', 'api.sock');
    writeFileSync(path.join(dir, 'agent.yaml'), stringify({
      trust_domain: TD, server_address: address, data_dir: path.join(dir, 'agent'), socket_path: socketPath,
      trust_bundle_path: path.join(dir, 'bundle.pem'), join_token_file: path.join(dir, 'token'), health_bind: `127.0.0.1:${ops}`, sync_interval: '60s',
    }));
    const agent = spawnCli(['agent', 'run', '--config', path.join(dir, 'agent.yaml')]);
    children.push(agent);
    const metrics = `http://127.0.0.1:${ops}/metrics`;
    await waitFor('agent ready', () => httpOk(`http://127.0.0.1:${ops}/ready`), 60_000, agent.logs);
    await waitFor('the change stream up', async () => (await scrapeSeries(metrics, 'svidscope_agent_push_stream_connected')) === 1, 20_000, agent.logs);
    const client = createWorkloadApiClient({ address: `unix://${socketPath}`, deadlineMs: 10_000 });
    const updates: X509Context[] = [];
    const handle = client.watchX509Context((ctx) => updates.push(ctx), () => undefined);
    try {
      await waitFor('the first SVID on the stream', async () => updates.some((u) => u.svids.length === 1), 20_000, agent.logs);
      const sentAt = Date.now();
      await admin.call('CreateEntry', { entry: { spiffe_id: `spiffe://${TD}/pushed`, parent_id: agentId, selectors: [{ type: 'unix', value: `uid:${uid}` }] } });
      const arrived = await waitFor('the new SVID on the stream', async () => updates.find((u) => u.svids.some((s) => s.id.toString().endsWith('/pushed'))), 30_000, agent.logs);
      // The agent's poll is 60 s away; only the push explains an arrival within seconds (bound generous for a loaded machine).
      expect(Date.now() - sentAt).toBeLessThan(20_000);
      expect(arrived.svids.map((s) => s.id.toString()).sort()).toEqual([`spiffe://${TD}/first`, `spiffe://${TD}/pushed`]);
      expect(await scrapeSeries(metrics, 'svidscope_agent_push_notifications_total{kind="entries"}')).toBeGreaterThanOrEqual(1);
      expect(await scrapeSeries(metrics, 'svidscope_agent_entry_syncs_total{kind="incremental"}')).toBeGreaterThanOrEqual(1);
      expect(await scrapeSeries(`${serverOps}/metrics`, 'svidscope_server_watch_streams')).toBeGreaterThanOrEqual(1);
      expect(await scrapeSeries(`${serverOps}/metrics`, 'svidscope_server_change_notifications_total{reason="entries"}')).toBeGreaterThanOrEqual(1);
    } finally {
      handle.close();
      client.close();
    }
  }, 120_000);
});
