/**
 * BatchCreateEntries over the real admin socket: per-entry results in order, refused entries (invalid,
 * duplicate in the store or in the batch) not stored while the rest are, the batch-size limit, and the
 * `entry create --file` command that uses it.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_ENTRY_BATCH, type BatchCreateEntriesResultMsg, type EntryMsg } from '../../src/identity-plane/server-api/messages.js';
import { cli, json } from '../support/cli.js';
import { removeDir, startTestServer, type TestServer } from '../support/server.js';

let t: TestServer;
const PARENT = 'spiffe://example.org/spire/agent/join_token/batch';
const entry = (name: string, extra: Partial<EntryMsg> = {}) => ({ spiffe_id: `spiffe://example.org/${name}`, parent_id: PARENT, selectors: [{ type: 'unix', value: 'uid:1000' }], ...extra });
const batch = (entries: object[]) => t.admin.call<{ results: BatchCreateEntriesResultMsg[] }>('BatchCreateEntries', { entries });
const stored = async () => (await t.admin.call<{ entries: EntryMsg[] }>('ListEntries', { filter: { by_parent_id: PARENT } })).entries.map((e) => e.spiffe_id).sort();

beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t.stop();
  removeDir(t.dir);
});

describe('BatchCreateEntries', () => {
  it('answers one result per entry in order, stores the valid ones and none of the refused', async () => {
    await t.admin.call('CreateEntry', { entry: entry('existing') });
    const { results } = await batch([
      entry('a', { dns_names: ['a.example.org'] }),
      entry('existing'), // the same spiffe_id, parent and selectors are stored already
      entry('b', { x509_svid_ttl: 10 ** 9 }), // longer than the CA may sign
      { ...entry('c'), selectors: [] },
      entry('d', { parent_id: 'spiffe://other.org/x' }),
      entry('a', { dns_names: ['a.example.org'] }), // repeats the first entry of this batch
      entry('e', { id: 'fixed-id' }),
    ]);
    expect(results.map((r) => [r.status_code, r.error_code])).toEqual([
      [0, ''], [6, 'already-exists'], [3, 'ttl-invalid'], [3, 'usage'], [3, 'invalid-spiffe-id'], [6, 'already-exists'], [0, ''],
    ]);
    expect(results[0].entry).toMatchObject({ spiffe_id: 'spiffe://example.org/a', dns_names: ['a.example.org'] });
    expect(results[6].entry?.id).toBe('fixed-id');
    expect(results[2].status_message).toMatch(/x509_svid_ttl/);
    expect(await stored()).toEqual(['spiffe://example.org/a', 'spiffe://example.org/e', 'spiffe://example.org/existing']);
    // The stored entries are served at once (the server's entry view was refreshed).
    expect((await t.admin.call<EntryMsg>('GetEntry', { id: 'fixed-id' })).spiffe_id).toBe('spiffe://example.org/e');
  });

  it(`refuses more than ${MAX_ENTRY_BATCH} entries, or none, as a whole and names the limit`, async () => {
    const before = await stored();
    const tooMany = Array.from({ length: MAX_ENTRY_BATCH + 1 }, (_, i) => entry(`many/${i}`));
    await expect(batch(tooMany)).rejects.toMatchObject({ code: 'usage', message: expect.stringMatching(new RegExp(`at most ${MAX_ENTRY_BATCH} entries.*MAX_ENTRY_BATCH.*got ${MAX_ENTRY_BATCH + 1}`)) });
    await expect(batch([])).rejects.toMatchObject({ code: 'usage', message: expect.stringMatching(/empty/) });
    expect(await stored()).toEqual(before);
  });

  it('creates a full batch in one call', async () => {
    const { results } = await batch(Array.from({ length: MAX_ENTRY_BATCH }, (_, i) => entry(`full/${i}`)));
    expect(results.filter((r) => r.status_code === 0)).toHaveLength(MAX_ENTRY_BATCH);
    expect((await t.admin.call<{ entries: EntryMsg[] }>('ListEntries', { filter: { by_spiffe_id: 'spiffe://example.org/full/999' } })).entries).toHaveLength(1);
  });
});

describe('svidscope entry create --file', () => {
  const socket = () => t.server.adminSocket;

  it('creates the entries of a YAML file and reports each refusal with its code and exit status', async () => {
    const file = path.join(t.dir, 'entries.yaml');
    writeFileSync(file, [
      'entries:',
      `  - { spiffeId: spiffe://example.org/file/1, parentId: ${PARENT}, selectors: ["unix:uid:7"], x509SvidTtl: 600 }`,
      `  - { spiffeId: spiffe://example.org/file/2, parentId: ${PARENT}, selectors: [{ type: unix, value: "uid:8" }], hint: two }`,
      `  - { spiffeId: spiffe://example.org/spire/x, parentId: ${PARENT}, selectors: ["unix:uid:9"] }`,
    ].join('\n'));
    const r = await cli('entry', 'create', '--file', file, '--admin-socket', socket(), '--json');
    const out = json(r) as { valid: boolean; created: number; refused: number; results: { index: number; entry?: { spiffeId: string; x509SvidTtl: number; hint: string }; error?: string; message?: string }[] };
    expect(out).toMatchObject({ valid: false, created: 2, refused: 1 });
    expect(out.results[0].entry).toMatchObject({ spiffeId: 'spiffe://example.org/file/1', x509SvidTtl: 600 });
    expect(out.results[1].entry).toMatchObject({ spiffeId: 'spiffe://example.org/file/2', hint: 'two' });
    expect(out.results[2]).toMatchObject({ index: 2, error: 'invalid-spiffe-id', message: expect.stringMatching(/reserved \/spire namespace/) });
    expect(r.code).toBe(1); // invalid-spiffe-id's exit code
    expect(await stored()).toEqual(expect.arrayContaining(['spiffe://example.org/file/1', 'spiffe://example.org/file/2']));
    expect(await stored()).not.toContain('spiffe://example.org/spire/x');
  });

  it('reads what `entry show --json` printed, and refuses a malformed file before calling the server', async () => {
    const shown = json(await cli('entry', 'show', '--spiffe-id', 'spiffe://example.org/file/1', '--admin-socket', socket(), '--json')) as { entries: Record<string, unknown>[] };
    const file = path.join(t.dir, 'again.json');
    writeFileSync(file, JSON.stringify(shown.entries.map((e) => ({ ...e, id: undefined, spiffeId: 'spiffe://example.org/file/copy' }))));
    const ok = await cli('entry', 'create', '--file', file, '--admin-socket', socket());
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/Created 1 of 1 entries/);

    writeFileSync(file, JSON.stringify([{ spiffeId: 'spiffe://example.org/z', parentId: PARENT, selector: ['unix:uid:1'] }]));
    const bad = await cli('entry', 'create', '--file', file, '--admin-socket', socket());
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/entries\[0\]: unknown field "selector"/);
    const mixed = await cli('entry', 'create', '--file', file, '--spiffe-id', 'spiffe://example.org/y', '--admin-socket', socket());
    expect(mixed.stderr).toMatch(/drop --spiffe-id/);
  });
});
