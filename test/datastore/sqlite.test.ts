/**
 * SQLite backend: the shared suite, plus what only an embedded file database has: schema-version refusal,
 * on-disk pragmas, and durability when the writing process is killed with SIGKILL.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { latestSchemaVersion, openDatastore } from '../../src/identity-plane/server/datastore/index.js';
import { expectCode } from './fixtures.js';
import { runDatastoreSuite } from './suite.js';

const root = mkdtempSync(join(tmpdir(), 'svidscope-sqlite-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
const freshPath = () => join(root, `store-${++counter}`, 'datastore.sqlite3');

runDatastoreSuite('sqlite', async () => {
  const path = freshPath();
  return () => openDatastore({ kind: 'sqlite', path });
});

describe('sqlite datastore', () => {
  it('opens in wal mode with foreign keys and records the schema version', async () => {
    const path = freshPath();
    await (await openDatastore({ kind: 'sqlite', path })).close();
    const db = new Database(path, { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.prepare('SELECT MAX(version) AS v FROM schema_version').get()).toEqual({ v: latestSchemaVersion });
    } finally {
      db.close();
    }
  });

  it('refuses a database whose schema is newer than this build', async () => {
    const path = freshPath();
    await (await openDatastore({ kind: 'sqlite', path })).close();
    const db = new Database(path);
    db.prepare('INSERT INTO schema_version (version, description) VALUES (?, ?)').run(latestSchemaVersion + 1, 'from the future');
    db.close();
    await expectCode(openDatastore({ kind: 'sqlite', path }), 'config-invalid', new RegExp(`schema version ${latestSchemaVersion + 1} is newer than this build supports \\(${latestSchemaVersion}\\)`));
  });

  it('reports an unwritable location as io-error', async () => {
    const blocker = join(root, 'not-a-directory');
    writeFileSync(blocker, 'x');
    await expectCode(openDatastore({ kind: 'sqlite', path: join(blocker, 'nope.sqlite3') }), 'io-error', /cannot open sqlite database/);
  });

  it('loses no committed entry and stays consistent when the writer is killed with SIGKILL', async () => {
    const path = freshPath();
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'crash-writer.ts'), path], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const committed: string[] = [];
    let buffered = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    // Kill at a point that varies from run to run, once enough commits are in: mid-transaction most of the time.
    const target = 150 + Math.floor(Math.random() * 150);
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? ''; // a partial line was not fully printed: not counted as acknowledged
        committed.push(...lines.filter((l) => l && l !== 'ready'));
        if (committed.length >= target) resolve();
      });
      child.on('exit', () => reject(new Error(`crash writer exited early: ${stderr}`)));
    });
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    if (buffered && buffered !== 'ready') committed.push(...[buffered].filter((l) => /^[0-9a-f-]{36}$/.test(l)));

    const raw = new Database(path);
    try {
      expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(raw.pragma('foreign_key_check')).toEqual([]);
    } finally {
      raw.close();
    }
    const ds = await openDatastore({ kind: 'sqlite', path });
    try {
      const stored = new Set((await ds.listEntries()).map((e) => e.id));
      const missing = committed.filter((id) => !stored.has(id));
      expect(missing).toEqual([]);
      expect(stored.size).toBeGreaterThanOrEqual(committed.length);
      // Every stored entry is whole: both selectors arrived with it (no partial transaction).
      for (const e of await ds.listEntries()) expect(e.selectors).toHaveLength(2);
    } finally {
      await ds.close();
    }
  });
});

describe('sqlite file permissions', () => {
  it('creates the database owner-only, with its WAL files', async () => {
    const { mkdtempSync, statSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const path = await import('node:path');
    const dir = mkdtempSync(path.join(tmpdir(), 'svidscope-perm-'));
    const file = path.join(dir, 'db', 'store.sqlite3');
    const store = await openDatastore({ kind: 'sqlite', path: file });
    await store.createJoinToken({ token: 'secret', expiresAt: new Date(Date.now() + 60_000) });
    for (const f of [file, `${file}-wal`]) expect(statSync(f).mode & 0o777).toBe(0o600);
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
});
