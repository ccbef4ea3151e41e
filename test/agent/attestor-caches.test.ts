// The unix attestor's caches: name databases reread only when they change, binary digests reused
// only for the exact file version, against real files and real processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { BinaryDigestCache } from '../../src/identity-plane/agent/attestor-workload/digest-cache.js';
import { NameDatabase, parseNameDatabase } from '../../src/identity-plane/agent/attestor-workload/name-db.js';
import { attestUnix, createUnixAttestorCaches, type Selector } from '../../src/identity-plane/agent/attestor-workload/unix.js';
import { CallerTracker } from '../../src/identity-plane/agent/peercred/caller.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'svidscope-attestor-caches-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

const values = (selectors: Selector[], kind: string) => selectors.filter((s) => s.value.startsWith(`${kind}:`)).map((s) => s.value.slice(kind.length + 1));
const sha256 = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

async function run(binary: string): Promise<CallerTracker> {
  const child = spawn(binary, ['30']);
  children.push(child);
  await new Promise((resolve) => child.once('spawn', resolve));
  return CallerTracker.track({ pid: child.pid!, uid: process.getuid!(), gid: process.getgid!() });
}

describe('NameDatabase', () => {
  it('parses id → name, first row wins, comments and malformed rows skipped', () => {
    const names = parseNameDatabase('# comment\nroot:x:0:0::/root:/bin/sh\nbad-row\ntoor:x:0:0::/:/bin/sh\nweb:x:abc:1\napp:x:1001:1001::/:/bin/sh\n');
    expect([...names]).toEqual([['0', 'root'], ['1001', 'app']]);
  });

  it('rereads the file only after the recheck interval, and only when it changed', async () => {
    const clock = new FakeClock(1_000_000);
    const file = path.join(tmp, 'passwd');
    fs.writeFileSync(file, 'alice:x:1000:1000::/:/bin/sh\n');
    const db = new NameDatabase(file, { clock, recheckMs: 1_000 });
    expect((await db.names()).get('1000')).toBe('alice');

    // Replaced the way useradd does it (write aside, rename over).
    fs.writeFileSync(`${file}.new`, 'alice:x:1000:1000::/:/bin/sh\nbob:x:1001:1001::/:/bin/sh\n');
    fs.renameSync(`${file}.new`, file);
    expect((await db.names()).get('1001')).toBeUndefined(); // still within the interval
    clock.advance(1_000);
    expect((await db.names()).get('1001')).toBe('bob');

    const before = await db.names();
    clock.advance(1_000);
    expect(await db.names()).toBe(before); // unchanged file: the parsed map is reused as is

    fs.rmSync(file);
    clock.advance(1_000);
    expect((await db.names()).size).toBe(0); // no database: names unresolvable, no error
  });
});

describe('BinaryDigestCache', () => {
  const version = (ino: number) => ({ dev: 1n, ino: BigInt(ino), size: 10n, mtimeNs: 5n, ctimeNs: 6n });

  it('evicts the least recently used version beyond its bound', () => {
    const cache = new BinaryDigestCache(2);
    cache.set(version(1), 'one');
    cache.set(version(2), 'two');
    expect(cache.get(version(1))).toBe('one'); // 1 is now the most recent
    cache.set(version(3), 'three');
    expect(cache.get(version(2))).toBeUndefined();
    expect(cache.get(version(1))).toBe('one');
    expect(cache.get(version(3))).toBe('three');
    expect(cache.size).toBe(2);
    expect(cache.get({ ...version(1), ctimeNs: 7n })).toBeUndefined(); // any field differs: another version
  });
});

describe('attestUnix with caches', () => {
  it('hashes a binary once, and again after it was rewritten in place even with its mtime set back', async () => {
    const binary = path.join(tmp, 'worker');
    fs.copyFileSync('/bin/sleep', binary);
    fs.chmodSync(binary, 0o755);
    const caches = createUnixAttestorCaches();
    const opts = { discoverWorkloadPath: true, workloadSizeLimit: 0, caches };

    const first = await run(binary);
    expect(values(await attestUnix(first, opts), 'sha256')).toEqual([sha256(binary)]);
    expect(caches.digests.size).toBe(1);
    const second = await run(binary);
    expect(values(await attestUnix(second, opts), 'sha256')).toEqual([sha256(binary)]);
    expect(caches.digests.size).toBe(1); // the same version: served from the cache
    for (const c of children.splice(0)) {
      c.kill('SIGKILL');
      await new Promise((resolve) => c.once('exit', resolve));
    }
    first.close();
    second.close();

    // Same inode, same size, mtime restored: only ctime tells this version apart.
    const { atime, mtime } = fs.statSync(binary);
    const bytes = fs.readFileSync(binary);
    bytes[bytes.length - 1] ^= 0xff; // the last byte of a section table padding; sleep still runs
    fs.writeFileSync(binary, bytes);
    fs.utimesSync(binary, atime, mtime);
    const third = await run(binary);
    const digest = values(await attestUnix(third, opts), 'sha256');
    expect(digest).toEqual([sha256(binary)]);
    expect(digest[0]).not.toBe(createHash('sha256').update(fs.readFileSync('/bin/sleep')).digest('hex'));
    expect(caches.digests.size).toBe(2);
    third.close();
  });

  it('resolves user and group names from the configured databases', async () => {
    const passwd = path.join(tmp, 'passwd-names');
    const group = path.join(tmp, 'group-names');
    const uid = process.getuid!();
    const gid = process.getgid!();
    fs.writeFileSync(passwd, `svc-name:x:${uid}:${gid}::/:/bin/sh\n`);
    fs.writeFileSync(group, `grp-name:x:${gid}:\n`);
    const caches = createUnixAttestorCaches({ passwdPath: passwd, groupPath: group });
    const caller = await run('/bin/sleep');
    const selectors = await attestUnix(caller, { discoverWorkloadPath: false, workloadSizeLimit: 0, caches });
    expect(values(selectors, 'user')).toEqual(['svc-name']);
    expect(values(selectors, 'group')).toEqual(['grp-name']);
    caller.close();
  });
});
