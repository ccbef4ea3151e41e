import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Ledger, parseExperimentText, planExperiment, recover, runExperiment } from '../../src/chaos/index.js';
import { cgroupDirOf, cgroupProcs, cpuHierarchy, throttleUnavailable } from '../../src/chaos/cgroup.js';
import type { FloodOutput } from '../../src/chaos/faults/attestation.js';
import type { BadCsrOutput } from '../../src/chaos/faults/bad-csr.js';
import { faultImpl } from '../../src/chaos/faults/index.js';
import { playRollback, type RollbackStep } from '../../src/chaos/ledger.js';
import { isAlive, signal, sleep, snapshot, waitFor } from '../../src/chaos/proc.js';
import type { EndpointsFile, StackComponent, StackView } from '../../src/chaos/stack.js';
import { AgentSvidStore } from '../../src/identity-plane/agent/svid-store.js';
import { parseSpiffeBundle } from '../../src/identity-plane/spiffe/bundle/index.js';
import { scrape, total } from '../support/metrics.js';
import { attestAgent, bundlePemOf, removeDir, startTestServer, tempDir, type TestServer } from '../support/server.js';
import { problems } from './support.js';
import { systemClock } from '../../src/common/clock.js';
import { EXAMPLE_ORG } from '../support/trust-domains.js';


const head = 'title: t\ndescription: d\nsteady-state-hypothesis: { probes: [] }\nblast-radius: { servers: [server], agents: [agent-1] }\n';

/** A stack made of the given components (the faults only look components up by name). */
function fakeStack(dataDir: string, components: StackComponent[]): StackView {
  return { dataDir, endpoints: { dataDir, trustDomain: 'example.org' } as EndpointsFile, components: new Map(components.map((c) => [c.name, c])) };
}

describe('authority-withhold, attestation-flood, cpu-throttle: validation and plan', () => {
  it('accepts the new kinds with their defaults', () => {
    const e = parseExperimentText(`${head}method:
  - { name: a, fault: authority-withhold, duration: 1s }
  - { name: b, fault: attestation-flood, duration: 1s }
  - { name: c, fault: cpu-throttle, target: agent-1, duration: 1s }
  - { name: d, fault: authority-withhold, server: server, kind: jwt, duration: 1s }
  - { name: e, fault: attestation-flood, count: 1000, rate: 0.5, duration: 1s }
  - { name: f, fault: cpu-throttle, target: agent-1, quota: 2.5%, period: 100ms, duration: 1s }
`, 't');
    expect(e.method.map(({ name: _n, durationMs: _d, pauseAfterMs: _p, ...f }) => f)).toEqual([
      expect.objectContaining({ fault: 'authority-withhold', server: 'server', kind: 'x509' }),
      expect.objectContaining({ fault: 'attestation-flood', server: 'server', count: 30, ratePerSecond: 10 }),
      expect.objectContaining({ fault: 'cpu-throttle', target: 'agent-1', quotaPercent: 1, periodMs: 1000 }),
      expect.objectContaining({ fault: 'authority-withhold', server: 'server', kind: 'jwt' }),
      expect.objectContaining({ fault: 'attestation-flood', count: 1000, ratePerSecond: 0.5 }),
      expect.objectContaining({ fault: 'cpu-throttle', quotaPercent: 2.5, periodMs: 100 }),
    ]);
  });

  it('reports every bad parameter in a plain sentence', () => {
    expect(problems(`${head}method:
  - { name: a, fault: authority-withhold, kind: rsa, duration: 1s }
  - { name: b, fault: attestation-flood, count: 0, rate: 0, duration: 1s }
  - { name: c, fault: attestation-flood, count: 1001, rate: fast, duration: 1s }
  - { name: d, fault: attestation-flood, count: 2.5, duration: 1s }
  - { name: e, fault: cpu-throttle, target: agent-1, quota: 0, period: 5ms, duration: 1s }
  - { name: f, fault: cpu-throttle, target: agent-1, quota: 150, period: 2s, duration: 1s }
  - { name: g, fault: cpu-throttle, target: agent-1, quota: lots, duration: 1s }
  - { name: h, fault: cpu-throttle, target: agent-1, quota: 1, period: 10ms, duration: 1s }
  - { name: i, fault: cpu-throttle, duration: 1s }
  - { name: j, fault: cpu-throttle, target: agent-2, duration: 1s }
  - { name: k, fault: attestation-flood, server: peer-server, duration: 1s }
`)).toEqual([
      'method[0].kind: must be one of x509, jwt (got "rsa")',
      'method[1].count: must be from 1 to 1000 attestations (got 0)',
      'method[1].rate: must be from 0.1 to 100 attestations per second (got 0)',
      'method[2].count: must be from 1 to 1000 attestations (got 1001)',
      'method[2].rate: expected a number (got "fast")',
      'method[3].count: expected a whole number (got 2.5)',
      'method[4].quota: must be a percentage of one CPU from 0.1 to 100, such as 5 or 5% (got 0)',
      'method[4].period: must be from 10ms to 1s (got "5ms")',
      'method[5].quota: must be a percentage of one CPU from 0.1 to 100, such as 5 or 5% (got 150)',
      'method[5].period: must be from 10ms to 1s (got "2s")',
      'method[6].quota: must be a percentage of one CPU from 0.1 to 100, such as 5 or 5% (got "lots")',
      "method[7].quota: 1% of a 10ms period is 0.10ms of CPU; the kernel's minimum is 1ms per period (raise quota or period)",
      'method[8].target: is required',
      'method[9].target: "agent-2" is outside the blast radius (declare it under blast-radius)',
      'method[10].server: "peer-server" is outside the blast radius (declare it under blast-radius)',
    ]);
  });

  it('prints dry-run plan lines for each kind', () => {
    const e = parseExperimentText(`${head}method:
  - { name: bad rotation, fault: authority-withhold, kind: jwt, duration: 30s }
  - { name: flood, fault: attestation-flood, count: 40, rate: 20, duration: 10s }
  - { name: starve, fault: cpu-throttle, target: agent-1, quota: 5, period: 100ms, duration: 20s }
`, 't');
    const plan = planExperiment(e, undefined);
    expect(plan).toEqual(expect.arrayContaining([
      '  1. bad rotation [authority-withhold] for 30s',
      "     inject:   WithholdAuthority {kind: jwt, key_id: <the active JWT key, read from CaStatus>, withhold: true} on server: its trust bundle drops the active JWT key while it keeps signing with it",
      '     rollback: WithholdAuthority {withhold: false} for that same key id on server (idempotent; a key gone since counts as done)',
      '  2. flood [attestation-flood] for 10s',
      "     inject:   from the harness, up to 40 AttestAgent calls with random never-issued join tokens to server over TLS, 20/s (about 2s; stops at the step's 10s or at rollback)",
      '     rollback: nothing persistent to undo (the tokens were never issued, so no agent is registered); the rollback stops the flood',
      '  3. starve [cpu-throttle] for 20s',
      "     inject:   move agent-1's processes into a new cgroup svidscope-chaos-<run> limited to 5% of one CPU (5000us per 100000us period; needs root and a writable cpu cgroup)",
      "     rollback: move agent-1's processes back to their original cgroups (only the same processes, by start time), then remove the chaos cgroup",
      'dry run: nothing was changed',
    ]));
  });

  it('names what is missing for a cgroup v2 throttle; parses mountinfo for v1 and v2', () => {
    const dir = tempDir('cg2');
    try {
      writeFileSync(path.join(dir, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
      writeFileSync(path.join(dir, 'cgroup.subtree_control'), 'memory pids\n');
      const v2 = path.join(dir, 'mountinfo-v2');
      writeFileSync(v2, `30 1 0:26 / ${dir} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n`);
      const h = cpuHierarchy(v2);
      expect(h).toEqual({ version: 2, mount: dir, root: '/' });
      if (process.getuid?.() === 0) expect(throttleUnavailable(h)).toMatch(/cgroup v2 cpu controller enabled for the children of .*cgroup\.subtree_control holds "memory pids": enable it with `echo \+cpu >/);
      writeFileSync(path.join(dir, 'cgroup.subtree_control'), 'cpu memory pids\n');
      if (process.getuid?.() === 0) expect(throttleUnavailable(h)).toBeUndefined();
      const v1 = path.join(dir, 'mountinfo-v1');
      writeFileSync(v1, [
        `35 25 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct`,
        `36 25 0:31 /docker/abc /sys/fs/cgroup/cpu\\040x rw,relatime - cgroup cgroup rw,cpu`,
        `37 25 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw`,
      ].join('\n'));
      expect(cpuHierarchy(v1)).toEqual({ version: 1, mount: '/sys/fs/cgroup/cpu x', root: '/docker/abc' });
      expect(throttleUnavailable(undefined)).toMatch(process.getuid?.() === 0 ? /needs the cgroup cpu controller/ : /needs root/);
    } finally {
      removeDir(dir);
    }
  });
});

// ---------------------------------------------------------------------------------------------

const ticks = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]); // utime + stime, in clock ticks (USER_HZ = 100)
};
/** CPU seconds `pid` used over `ms` of wall time. */
async function cpuOver(pid: number, ms: number): Promise<number> {
  const a = ticks(pid);
  await sleep(ms);
  return (ticks(pid) - a) / 100;
}

/**
 * The best of up to `tries` one-second samples: an unthrottled process gets well above a 5 % quota
 * in at least one of them even while other test files load both cores; a throttled one never does.
 */
async function bestCpu(pid: number, tries = 5): Promise<number> {
  let best = 0;
  for (let i = 0; i < tries && best <= 0.25; i++) best = Math.max(best, await cpuOver(pid, 1000));
  return best;
}

const hierarchy = cpuHierarchy();
const canThrottle = throttleUnavailable(hierarchy) === undefined;

describe.skipIf(!canThrottle)('cpu-throttle on a real busy process', () => {
  const dir = tempDir('cpu-throttle');
  const config = path.join(dir, 'busy.yaml');
  const children: ChildProcess[] = [];
  const chaosCgroups: string[] = [];
  const killAll = async () => {
    for (const c of children) if (c.pid && isAlive(c.pid)) signal(c.pid, 'SIGKILL');
    await waitFor(() => children.every((c) => !c.pid || !isAlive(c.pid)), 5_000);
  };
  const busy = () => {
    const c = spawn(process.execPath, ['-e', 'for(;;){}', 'run', config], { stdio: 'ignore' });
    children.push(c);
    return c.pid!;
  };
  const stack = fakeStack(dir, [{ name: 'busy', kind: 'workload', config }]);
  const ctx = (run: string) => ({ stack, backupDir: path.join(dir, 'chaos', 'backups', run), progress: () => undefined, clock: systemClock });
  const step = (run: string) => parseExperimentText(`title: t\ndescription: d\nsteady-state-hypothesis: { probes: [] }\nblast-radius: { workloads: [busy] }\nmethod:\n  - { name: starve ${run}, fault: cpu-throttle, target: busy, quota: 5, period: 100ms, duration: 1s }\n`, 't').method[0];

  // Each test starts its own busy processes; one that fails half-way must not leave them to the next.
  afterEach(killAll, 10_000);
  afterAll(async () => {
    await killAll();
    for (const g of chaosCgroups) {
      try {
        rmdirSync(g);
      } catch {
        // already gone (the tests remove them)
      }
    }
    removeDir(dir);
  }, 20_000);

  it('throttles to the quota, rolls back to the original cgroup, removes the cgroup; replays are harmless', async () => {
    const pid = busy();
    await sleep(300);
    const original = cgroupDirOf(hierarchy!, pid)!;
    expect(await bestCpu(pid)).toBeGreaterThan(0.25); // unthrottled: up to one CPU (less while other tests share the 2 cores)

    const prepared = await faultImpl(step('run1')).prepare(step('run1'), ctx('run1'));
    const cgroup = path.join(hierarchy!.mount, 'svidscope-chaos-run1-starve-run1');
    chaosCgroups.push(cgroup);
    // The inverse is known before anything changes.
    expect(prepared.rollback).toEqual([
      { op: 'cgroup-move-back', hierarchy, cgroup, procs: [{ pid, startTime: snapshot(pid).startTime, cgroup: original }] },
      { op: 'cgroup-remove', hierarchy, cgroup, evacuateTo: original },
    ]);
    expect(existsSync(cgroup)).toBe(false);

    const out = await prepared.apply();
    expect(out).toMatchObject({ cgroup, cgroupVersion: hierarchy!.version, quotaPercent: 5, periodMs: 100, quotaUs: 5000, periodUs: 100_000, pids: [pid] });
    expect(cgroupDirOf(hierarchy!, pid)).toBe(cgroup);
    if (hierarchy!.version === 1) expect(readFileSync(path.join(cgroup, 'cpu.cfs_quota_us'), 'utf8').trim()).toBe('5000');
    const wall = 3;
    const used = await cpuOver(pid, wall * 1000);
    expect(used).toBeLessThan(0.1 * wall); // 5 % of one CPU: about 0.15 s in 3 s

    const notes = await playRollback(prepared.rollback);
    expect(notes[0]).toBe(`moved pid ${pid} back to ${original}`);
    expect(notes[1]).toBe(`removed ${cgroup}`);
    expect(cgroupDirOf(hierarchy!, pid)).toBe(original);
    expect(existsSync(cgroup)).toBe(false);
    expect(await bestCpu(pid)).toBeGreaterThan(0.25);

    // Idempotent: the same rollback replayed twice changes nothing and does not fail.
    for (let i = 0; i < 2; i++) {
      expect(await playRollback(prepared.rollback)).toEqual([`pid ${pid} is not in svidscope-chaos-run1-starve-run1`, `${cgroup} already gone`]);
    }
    expect(cgroupDirOf(hierarchy!, pid)).toBe(original);
    await killAll();
  }, 30_000);

  it('a crashed harness is undone by recover: a reused pid is left alone, children started since are moved out', async () => {
    const pid = busy();
    const stranger = busy(); // stands for a child the throttled component started during the fault
    await sleep(300);
    const original = cgroupDirOf(hierarchy!, pid)!;
    const prepared = await faultImpl(step('run2')).prepare(step('run2'), ctx('run2'));
    const cgroup = path.join(hierarchy!.mount, 'svidscope-chaos-run2-starve-run2');
    chaosCgroups.push(cgroup);
    // Two copies of the component now: the fault throttles both.
    expect((prepared.rollback[0] as Extract<RollbackStep, { op: 'cgroup-move-back' }>).procs.map((p) => p.pid).sort()).toEqual([pid, stranger].sort());
    // Pretend the stranger's pid was recorded for another process (start time changed): it must not be "moved back".
    const rollback = prepared.rollback.map((s) => s.op === 'cgroup-move-back' ? { ...s, procs: s.procs.map((p) => p.pid === stranger ? { ...p, startTime: '1' } : p) } : s);
    await prepared.apply();
    expect(cgroupProcs(cgroup).sort()).toEqual([pid, stranger].sort());

    // A harness that died mid-fault: its ledger entry is replayed by recover().
    const ledger = new Ledger(dir);
    const dead = spawn(process.execPath, ['-e', '0']);
    await new Promise((r) => dead.once('exit', r));
    const fault = { id: '0-starve', step: 'starve', kind: 'cpu-throttle', target: 'busy', state: 'active', injectedAt: new Date().toISOString(), rollback };
    mkdirSync(path.dirname(ledger.file), { recursive: true });
    writeFileSync(ledger.file, JSON.stringify({ version: 1, runs: [{ runId: 'crashed', experiment: 't', harnessPid: dead.pid!, harnessStartTime: '0', startedAt: new Date().toISOString(), faults: [fault] }] }));
    const r = await recover(ledger);
    expect(r.faults).toHaveLength(1);
    expect(r.faults[0]).toMatchObject({ ok: true });
    const sorted = (note: string) => note.split('; ').sort();
    expect(sorted(r.faults[0].notes[0])).toEqual([`moved pid ${pid} back to ${original}`, `pid ${stranger} is gone`].sort());
    expect(r.faults[0].notes[1]).toBe(`removed ${cgroup} (moved 1 other process(es) to ${original})`);
    expect(cgroupDirOf(hierarchy!, pid)).toBe(original);
    expect(cgroupDirOf(hierarchy!, stranger)).toBe(original);
    expect(existsSync(cgroup)).toBe(false);
    expect(ledger.read().runs).toEqual([]);
    const again = await playRollback(rollback);
    expect(sorted(again[0])).toEqual([`pid ${pid} is not in svidscope-chaos-run2-starve-run2`, `pid ${stranger} is gone`].sort());
    expect(again[1]).toBe(`${cgroup} already gone`);
    await killAll();
  }, 30_000);

  it('the rollback of a fault whose process died, or that never got applied, is harmless', async () => {
    const pid = busy();
    await sleep(200);
    const prepared = await faultImpl(step('run3')).prepare(step('run3'), ctx('run3'));
    const cgroup = path.join(hierarchy!.mount, 'svidscope-chaos-run3-starve-run3');
    chaosCgroups.push(cgroup);
    expect(await playRollback(prepared.rollback)).toEqual([`pid ${pid} is not in svidscope-chaos-run3-starve-run3`, `${cgroup} already gone`]);
    await prepared.apply();
    signal(pid, 'SIGKILL');
    await waitFor(() => !isAlive(pid), 5_000);
    expect(await playRollback(prepared.rollback)).toEqual([`pid ${pid} is gone`, `removed ${cgroup}`]);
    // A target that is not running is refused before anything changes.
    await expect(faultImpl(step('run4')).prepare(step('run4'), ctx('run4'))).rejects.toThrow('chaos: busy is not running (no process to throttle)');
  }, 30_000);
});

// ---------------------------------------------------------------------------------------------

describe('attestation-flood and authority-withhold against a real server', () => {
  let t: TestServer;
  let dir: string;
  let stack: StackView;
  beforeAll(async () => {
    t = await startTestServer();
    dir = tempDir('flood');
    mkdirSync(dir, { recursive: true });
    const bundlePem = path.join(dir, 'server-bundle.pem');
    writeFileSync(bundlePem, bundlePemOf(t.server));
    stack = fakeStack(dir, [{ name: 'server', kind: 'server', adminSocket: t.server.adminSocket, serverAddress: t.server.address, trustDomain: 'example.org', bundlePem }]);
  });
  afterAll(async () => {
    await t?.stop();
    if (dir) removeDir(dir);
  });

  const ctx = () => ({ stack, backupDir: path.join(dir, 'chaos', 'backups', 'test'), progress: () => undefined, clock: systemClock });
  const steps = (method: string) => parseExperimentText(`title: t\ndescription: d\nsteady-state-hypothesis: { probes: [] }\nblast-radius: { servers: [server] }\nmethod:\n${method}`, 't');
  const failures = async () => total((await scrape(`${t.server.opsUrl!}/metrics`)).samples, 'svidscope_server_attestations_total', { result: 'failure' });

  it('every attestation with a never-issued token is refused and counted; no agent is registered', async () => {
    const before = await failures();
    const step = steps('  - { name: flood, fault: attestation-flood, count: 25, rate: 50, duration: 30s }\n').method[0];
    const prepared = await faultImpl(step).prepare(step, ctx());
    expect(prepared.rollback).toEqual([]);
    const out = (await prepared.apply()) as FloodOutput;
    expect(await waitFor(() => out.stoppedBy !== 'running', 20_000)).toBe(true);
    await prepared.release!();
    expect(out).toMatchObject({ server: 'server', address: t.server.address, count: 25, attempted: 25, accepted: 0, unanswered: 0, stoppedBy: 'count', byStatus: { INVALID_ARGUMENT: 25 } });
    expect(out.firstError).toMatch(/join token does not exist/);
    expect(await failures()).toBe(before + 25);
    expect((await t.admin.call<{ agents: unknown[] }>('ListAgents', {})).agents).toEqual([]);
  });

  it('stops at the step duration and at release', async () => {
    const byDuration = steps('  - { name: flood, fault: attestation-flood, count: 1000, rate: 20, duration: 1s }\n').method[0];
    const p1 = await faultImpl(byDuration).prepare(byDuration, ctx());
    const o1 = (await p1.apply()) as FloodOutput;
    expect(await waitFor(() => o1.stoppedBy !== 'running', 10_000)).toBe(true);
    await p1.release!();
    expect(o1.stoppedBy).toBe('duration');
    expect(o1.attempted).toBe(20); // t0, t0 + 50 ms, … t0 + 950 ms
    expect(o1.byStatus).toEqual({ INVALID_ARGUMENT: 20 });

    const byRelease = steps('  - { name: flood, fault: attestation-flood, count: 1000, rate: 20, duration: 60s }\n').method[0];
    const p2 = await faultImpl(byRelease).prepare(byRelease, ctx());
    const o2 = (await p2.apply()) as FloodOutput;
    await sleep(500);
    await p2.release!();
    expect(o2.stoppedBy).toBe('release');
    const n = o2.attempted;
    expect(n).toBeGreaterThan(3);
    expect(n).toBeLessThan(30);
    await sleep(300);
    expect(o2.attempted).toBe(n);
    expect(Object.values(o2.byStatus).reduce((a, b) => a + b, 0) + o2.unanswered).toBe(n);
  });

  it('a server that does not answer is a failed injection, not a flood', async () => {
    const dead = fakeStack(dir, [{ ...stack.components.get('server')!, adminSocket: path.join(dir, 'no.sock'), serverAddress: '127.0.0.1:1' }]);
    const step = steps('  - { name: flood, fault: attestation-flood, count: 5, duration: 5s }\n').method[0];
    const prepared = await faultImpl(step).prepare(step, { ...ctx(), stack: dead });
    await expect(prepared.apply()).rejects.toThrow(/attestation-flood could not reach server's node API at 127\.0\.0\.1:1/);
    await prepared.release?.();
  });

  const status = () => t.admin.call<{ slots: { kind: string; phase: string; key_id: string; withheld: boolean }[] }>('CaStatus', {});
  const bundleKeys = async () => {
    const b = await t.admin.call<{ document: Buffer; sequence_number: string }>('GetBundle', {});
    const doc = JSON.parse(Buffer.from(b.document).toString('utf8')) as { keys: { use: string; kid?: string }[] };
    return { sequence: b.sequence_number, x509: parseSpiffeBundle(EXAMPLE_ORG, b.document).x509Authorities.length, jwtKids: doc.keys.filter((k) => k.use === 'jwt-svid').map((k) => k.kid) };
  };

  for (const kind of ['x509', 'jwt'] as const) {
    it(`authority-withhold ${kind}: the bundle drops the active key, the rollback publishes that key again (idempotent)`, async () => {
      const active = (await status()).slots.find((s) => s.kind === kind && s.phase === 'active')!;
      const before = await bundleKeys();
      const step = steps(`  - { name: bad rotation, fault: authority-withhold, kind: ${kind}, duration: 5s }\n`).method[0];
      const prepared = await faultImpl(step).prepare(step, ctx());
      expect(prepared.rollback).toEqual([{ op: 'publish-authority', adminSocket: t.server.adminSocket, kind, keyId: active.key_id }]);
      const out = await prepared.apply();
      expect(out).toMatchObject({ kind, keyId: active.key_id, phase: 'active', withheld: true, bundleSequenceBefore: before.sequence });
      expect(BigInt(out.bundleSequenceAfter as string)).toBeGreaterThan(BigInt(before.sequence));
      expect((await status()).slots.find((s) => s.key_id === active.key_id)!.withheld).toBe(true);
      const during = await bundleKeys();
      if (kind === 'x509') expect(during.x509).toBe(before.x509 - 1);
      else expect(during.jwtKids).not.toContain(active.key_id);
      // Withholding again is refused: the rollback would undo a change this run did not make.
      await expect(faultImpl(step).prepare(step, ctx())).rejects.toThrow(/already withheld/);

      for (let i = 0; i < 2; i++) expect((await playRollback(prepared.rollback))[0]).toMatch(new RegExp(`^published ${kind} key ${active.key_id} in the trust bundle again`));
      expect((await status()).slots.find((s) => s.key_id === active.key_id)!.withheld).toBe(false);
      const after = await bundleKeys();
      expect(after.x509).toBe(before.x509);
      expect(after.jwtKids).toEqual(before.jwtKids);
      // A key gone since (pruned) counts as done.
      expect(await playRollback([{ op: 'publish-authority', adminSocket: t.server.adminSocket, kind, keyId: 'no-such-key' }])).toEqual([`${kind} key no-such-key no longer exists: nothing to publish`]);
    });
  }

  it('through the runner: the journal records the flood counts and both rollbacks', async () => {
    const exp = steps('  - { name: bad rotation, fault: authority-withhold, duration: 1s }\n  - { name: flood, fault: attestation-flood, count: 10, rate: 20, duration: 2s }\n');
    const before = await failures();
    const r = await runExperiment(exp, { dataDir: dir, stack, progress: () => undefined, clock: systemClock });
    expect(r.journal.reasons).toEqual([]);
    expect(r.journal.verdict).toBe('passed');
    expect(r.journal.rollbacks.map((x) => x.status)).toEqual(['succeeded', 'succeeded']);
    expect(r.journal.run[1].output).toMatchObject({ attempted: 10, stoppedBy: 'count', byStatus: { INVALID_ARGUMENT: 10 } });
    expect(await failures()).toBe(before + 10);
    expect((await status()).slots.every((s) => !s.withheld)).toBe(true);
    expect(new Ledger(dir).read().runs).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('bad-csr: validation and plan', () => {
  const agentHead = 'title: t\ndescription: d\nsteady-state-hypothesis: { probes: [] }\nblast-radius: { agents: [agent-1] }\n';

  it('accepts the kind with its defaults', () => {
    const e = parseExperimentText(`${agentHead}method:
  - { name: a, fault: bad-csr, agent: agent-1, duration: 1s }
  - { name: b, fault: bad-csr, agent: agent-1, rate: 0.1, batch: 50, duration: 1s }
  - { name: c, fault: bad-csr, agent: agent-1, rate: 100, batch: 1, duration: 1s }
`, 't');
    expect(e.method.map(({ name: _n, durationMs: _d, pauseAfterMs: _p, background: _b, untilAlerts: _u, ...f }) => f)).toEqual([
      { fault: 'bad-csr', agent: 'agent-1', ratePerSecond: 5, batch: 5 },
      { fault: 'bad-csr', agent: 'agent-1', ratePerSecond: 0.1, batch: 50 },
      { fault: 'bad-csr', agent: 'agent-1', ratePerSecond: 100, batch: 1 },
    ]);
  });

  it('reports every bad parameter in a plain sentence', () => {
    expect(problems(`${agentHead}method:
  - { name: a, fault: bad-csr, agent: agent-1, rate: 0, batch: 0, duration: 1s }
  - { name: b, fault: bad-csr, agent: agent-1, rate: 101, batch: 51, duration: 1s }
  - { name: c, fault: bad-csr, agent: agent-1, rate: fast, batch: 2.5, duration: 1s }
  - { name: d, fault: bad-csr, duration: 1s }
  - { name: e, fault: bad-csr, agent: agent-2, duration: 1s }
  - { name: f, fault: bad-csr, target: agent-1, duration: 1s }
`)).toEqual([
      'method[0].rate: must be from 0.1 to 100 CSRs per second (got 0)',
      'method[0].batch: must be from 1 to 50 CSRs per call (got 0)',
      'method[1].rate: must be from 0.1 to 100 CSRs per second (got 101)',
      'method[1].batch: must be from 1 to 50 CSRs per call (got 51)',
      'method[2].rate: expected a number (got "fast")',
      'method[2].batch: expected a whole number (got 2.5)',
      'method[3].agent: is required',
      'method[5].agent: is required',
      'method[4].agent: "agent-2" is outside the blast radius (declare it under blast-radius)',
    ]);
  });

  it('prints a dry-run plan line', () => {
    const e = parseExperimentText(`${agentHead}method:\n  - { name: garbage csrs, fault: bad-csr, agent: agent-1, rate: 20, batch: 4, duration: 30s }\n`, 't');
    expect(planExperiment(e, undefined)).toEqual(expect.arrayContaining([
      '  1. garbage csrs [bad-csr] for 30s',
      "     inject:   from the harness, as agent-1 (its own SVID and key from <dataDir>/private/, over mTLS), BatchNewX509SVID calls of 4 unparseable CSRs for an entry agent-1 is the parent of, 20 CSRs/s (a call every 0.2s) until the step's 30s or the rollback; every CSR must be refused (INVALID_ARGUMENT). agent-1's process is not touched",
      '     rollback: nothing persistent to undo (nothing is signed, the agent is not touched); the rollback stops the calls',
      'dry run: nothing was changed',
    ]));
  });
});

describe('bad-csr against a real server, as a really attested agent', () => {
  let t: TestServer;
  let dir: string;
  let stack: StackView;
  let agentId: string;
  let entryId: string;
  beforeAll(async () => {
    t = await startTestServer();
    dir = tempDir('bad-csr');
    const bundlePem = path.join(dir, 'server-bundle.pem');
    writeFileSync(bundlePem, bundlePemOf(t.server));
    // agent-1 attests with a join token and keeps its SVID and key as the agent's SVID store does.
    const agent = await attestAgent(t);
    agentId = agent.spiffeId;
    new AgentSvidStore(path.join(dir, 'agent-1', 'private')).save({ chainDer: agent.chainDer, privateKey: agent.key.privateKey });
    entryId = (await t.admin.call<{ id: string }>('CreateEntry', { entry: { spiffe_id: 'spiffe://example.org/chaos/bad-csr', parent_id: agentId, selectors: [{ type: 'unix', value: 'uid:4242' }] } })).id;
    // agent-2 attested too but is the parent of no entry; agent-3 never attested (no SVID on disk).
    const lonely = await attestAgent(t);
    new AgentSvidStore(path.join(dir, 'agent-2', 'private')).save({ chainDer: lonely.chainDer, privateKey: lonely.key.privateKey });
    const server: StackComponent = { name: 'server', kind: 'server', adminSocket: t.server.adminSocket, serverAddress: t.server.address, trustDomain: 'example.org', bundlePem };
    const agentOf = (name: string): StackComponent => ({ name, kind: 'agent', dataDir: path.join(dir, name), serverAddress: t.server.address, trustDomain: 'example.org' });
    stack = fakeStack(dir, [server, agentOf('agent-1'), agentOf('agent-2'), agentOf('agent-3')]);
  });
  afterAll(async () => {
    await t?.stop();
    if (dir) removeDir(dir);
  });

  const ctx = (s = stack) => ({ stack: s, backupDir: path.join(dir, 'chaos', 'backups', 'test'), progress: () => undefined, clock: systemClock });
  const steps = (method: string) => parseExperimentText(`title: t\ndescription: d\nsteady-state-hypothesis: { probes: [] }\nblast-radius: { agents: [agent-1, agent-2, agent-3] }\nmethod:\n${method}`, 't');
  /** The x509-issuance SLI's inputs: errors (failures other than permission_denied), total (issuance count), and SVIDs signed. */
  const sli = async () => {
    const { samples } = await scrape(`${t.server.opsUrl!}/metrics`);
    return {
      errors: samples.filter((x) => x.name === 'svidscope_server_svid_signing_failures_total' && x.labels.svid_type === 'x509' && x.labels.reason !== 'permission_denied').reduce((a, x) => a + x.value, 0),
      csrInvalid: total(samples, 'svidscope_server_svid_signing_failures_total', { svid_type: 'x509', reason: 'csr-invalid' }),
      total: total(samples, 'svidscope_server_svid_issuance_duration_seconds_count', { svid_type: 'x509' }),
      signed: total(samples, 'svidscope_server_svids_issued_total', { svid_type: 'x509' }),
    };
  };

  it('every CSR is refused as INVALID_ARGUMENT and counted once as a signing failure and once in the SLI total; nothing is signed', async () => {
    const before = await sli();
    // 50 CSRs/s in calls of 5: a call every 100 ms, t0 … t0 + 900 ms.
    const step = steps('  - { name: garbage, fault: bad-csr, agent: agent-1, rate: 50, batch: 5, duration: 1s }\n').method[0];
    const prepared = await faultImpl(step).prepare(step, ctx());
    expect(prepared.target).toBe('agent-1');
    expect(prepared.rollback).toEqual([]);
    const out = (await prepared.apply()) as BadCsrOutput;
    expect(await waitFor(() => out.stoppedBy !== 'running', 10_000)).toBe(true);
    await prepared.release!();
    expect(out).toMatchObject({
      agent: 'agent-1', agentId, server: 'server', address: t.server.address, entryId, entrySpiffeId: 'spiffe://example.org/chaos/bad-csr',
      ratePerSecond: 50, batch: 5, attempted: 10, failed: 0, csrsSent: 50, byStatus: { INVALID_ARGUMENT: 50 }, callErrors: {}, signed: 0, unanswered: 0, stoppedBy: 'duration',
    });
    expect(out.firstResult).toMatch(/^INVALID_ARGUMENT: .*the CSR cannot be decoded/);
    const after = await sli();
    expect(after.errors - before.errors).toBe(50);
    expect(after.csrInvalid - before.csrInvalid).toBe(50);
    expect(after.total - before.total).toBe(50);
    expect(after.signed).toBe(before.signed);
  });

  it('stops at release: no call after it, every CSR sent is counted', async () => {
    const before = await sli();
    const step = steps('  - { name: garbage, fault: bad-csr, agent: agent-1, rate: 100, batch: 5, duration: 60s }\n').method[0];
    const prepared = await faultImpl(step).prepare(step, ctx());
    const out = (await prepared.apply()) as BadCsrOutput;
    await sleep(500);
    await prepared.release!();
    expect(out.stoppedBy).toBe('release');
    const n = out.attempted;
    expect(n).toBeGreaterThan(3);
    expect(n).toBeLessThan(30);
    await sleep(400);
    expect(out.attempted).toBe(n);
    expect(out).toMatchObject({ failed: 0, unanswered: 0, signed: 0, csrsSent: n * 5, byStatus: { INVALID_ARGUMENT: n * 5 } });
    const after = await sli();
    expect(after.errors - before.errors).toBe(n * 5);
    expect(after.total - before.total).toBe(n * 5);
    expect(after.signed).toBe(before.signed);
  });

  it('fails the injection clearly: no SVID on disk, no entry, no answer, an evicted agent', async () => {
    const run = async (agent: string, s = stack) => {
      const step = steps(`  - { name: garbage, fault: bad-csr, agent: ${agent}, duration: 5s }\n`).method[0];
      const prepared = await faultImpl(step).prepare(step, ctx(s));
      try {
        return await prepared.apply();
      } finally {
        await prepared.release?.();
      }
    };
    await expect(run('agent-3')).rejects.toThrow(/bad-csr calls the server as agent-3 and needs its SVID and key: .*agent-3\/private\/agent_svid\.pem not found/);
    await expect(run('agent-2')).rejects.toThrow(/bad-csr needs an entry agent-2 may sign for, and server has none with parent_id spiffe:\/\/example\.org\/spire\/agent\//);
    const dead = fakeStack(dir, [{ ...stack.components.get('server')!, serverAddress: '127.0.0.1:1' }, stack.components.get('agent-1')!]);
    const before = await sli();
    await expect(run('agent-1', dead)).rejects.toThrow(/bad-csr could not reach server's node API at 127\.0\.0\.1:1 as agent-1/);
    expect((await sli()).total).toBe(before.total);
    // An agent the server no longer knows is refused before its CSRs are looked at: nothing would reach the SLI.
    const lonely = (await t.admin.call<{ agents: { id: string }[] }>('ListAgents', {})).agents.map((a) => a.id).find((id) => id !== agentId)!;
    await t.admin.call('EvictAgent', { id: lonely });
    await t.admin.call('CreateEntry', { entry: { spiffe_id: 'spiffe://example.org/chaos/bad-csr-evicted', parent_id: lonely, selectors: [{ type: 'unix', value: 'uid:4243' }] } });
    await expect(run('agent-2')).rejects.toThrow(/server refused BatchNewX509SVID from agent-2 .* before any CSR was checked: PERMISSION_DENIED: .*not attested or was evicted/);
  });

  it('through the runner: the journal records the counts, the rollback only stops the loop', async () => {
    const before = await sli();
    const exp = steps('  - { name: garbage, fault: bad-csr, agent: agent-1, rate: 20, batch: 2, duration: 1s }\n');
    const r = await runExperiment(exp, { dataDir: dir, stack, progress: () => undefined, clock: systemClock });
    expect(r.journal.reasons).toEqual([]);
    expect(r.journal.verdict).toBe('passed');
    expect(r.journal.rollbacks.map((x) => x.status)).toEqual(['succeeded']);
    const out = r.journal.run[0].output as BadCsrOutput;
    expect(out).toMatchObject({ attempted: 10, csrsSent: 20, byStatus: { INVALID_ARGUMENT: 20 }, signed: 0, stoppedBy: 'duration' });
    expect((await sli()).errors - before.errors).toBe(20);
    expect(new Ledger(dir).read().runs).toEqual([]);
  });
});
