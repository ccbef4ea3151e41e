/**
 * The fleet simulator at a tiny size against a real server process: 5 simulated agents × 3 entries
 * in a worker process, with churn and a CA rotation, for a few seconds. Checks that its report is
 * consistent (every agent attested, every entry and change arrived, an SVID per entry, no errors),
 * not how fast anything was.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import fleet, { parseFleetOptions } from '../../bench/fleet.bench.js';

describe('fleet simulator', () => {
  it('runs a tiny fleet and reports every entry received, every change propagated and no errors', async () => {
    const lines: string[] = [];
    const dir = mkdtempSync(path.join(tmpdir(), 'fleet-test-'));
    const serverOutput = path.join(dir, 'server.out');
    const f = await fleet({ log: (l) => lines.push(l), args: ['--from-source', '--agents', '5', '--entries-per-agent', '3', '--duration', '4', '--sync-interval', '0.5', '--churn', '3', '--rotate-ca-at', '1', '--setup-timeout', '40',
      '--server-output', serverOutput, '--server-node-options=--trace-gc'] });
    const context = lines.join('\n');
    // The server's own output reached the file (V8's GC trace among it), and the simulator's bundle is gone.
    expect(existsSync(serverOutput), context).toBe(true);
    expect(readFileSync(serverOutput, 'utf8')).toMatch(/^--- server server-0, pid \d+/);
    expect(readFileSync(serverOutput, 'utf8')).toMatch(/Scavenge|Mark-Compact/);
    rmSync(dir, { recursive: true, force: true });
    expect(readdirSync(path.join(import.meta.dirname, '..', '..', 'bench', 'out')).filter((n) => n.startsWith('fleet-simulator-'))).toEqual([]);
    // The peak is told apart: the setup's high-water mark, and the window's sampled one, neither above the whole run's.
    expect(Number(f.serverPeakRssSetupMiB), context).toBeGreaterThan(0);
    expect(Number(f.serverPeakRssSetupMiB), context).toBeLessThanOrEqual(Number(f.serverPeakRssMiB));
    expect(Number(f.serverPeakRssWindowMiB), context).toBeLessThanOrEqual(Number(f.serverPeakRssMiB));
    expect(f, context).toMatchObject({ agents: 5, entries: 15, attested: 5, converged: true, entryCreateRefused: 0, errors: 0, errorsByKind: 'none', windowErrors: 0 });
    // 12 churn writes in 4 s at 3/s: a third each create, update, delete.
    expect(f.churnWrites, context).toBeGreaterThanOrEqual(9);
    expect(f.propagated, context).toBe(f.churnWrites);
    // Creates and deletes alternate, so the count ends within one of where it started.
    expect(Math.abs(Number(f.entriesExpected) - 15), context).toBeLessThanOrEqual(1);
    expect(f.entriesHeld, context).toBe(f.entriesExpected);
    expect(f.svidsHeld, context).toBe(f.entriesHeld);
    expect(f.caRotationAgentsUpdated, context).toBe(5);
    expect(Number(f.syncs)).toBeGreaterThan(5);
    expect(Number(f.issued)).toBeGreaterThan(0);
    // Push and incremental sync are the default: every agent holds its stream, notifications arrived, deltas were applied.
    expect(f.watchesOpenAtEnd, context).toBe(5);
    expect(Number(f.notifications), context).toBeGreaterThan(0);
    expect(String(f.syncKinds), context).toMatch(/incremental:[1-9]/);
    for (const k of ['syncP50Ms', 'syncP99Ms', 'propagationP50Ms', 'issueCallP50Ms', 'serverPeakRssMiB', 'datastoreOpsPerS']) expect(Number(f[k]), k).toBeGreaterThan(0);
    expect(Number(f.serverCpuSecondsPerSecond)).toBeGreaterThanOrEqual(0);
    // The pause accounting: read from the server's own GC histogram, and each sync either clear of the simulator's pauses or not.
    expect(Number(f.serverMajorGcs), context).toBeGreaterThanOrEqual(Number(f.serverMajorGcsOver100Ms));
    expect(Number(f.serverMajorGcsOver100Ms), context).toBeGreaterThanOrEqual(0);
    expect(Number(f.serverGcPauseMsPerS), context).toBeGreaterThanOrEqual(0);
    expect(Number(f.syncsClearOfSimulatorGc), context).toBeGreaterThan(0);
    expect(Number(f.syncsClearOfSimulatorGc), context).toBeLessThanOrEqual(Number(f.syncs));
    expect(() => JSON.stringify(f)).not.toThrow();
  }, 90_000);

  it('refuses options it cannot honour', () => {
    expect(() => parseFleetOptions(['--datastore', 'mysql'])).toThrow(/sqlite or postgres/);
    expect(() => parseFleetOptions(['--agents', '0'])).toThrow(/--agents/);
    expect(() => parseFleetOptions(['--bogus', '1'])).toThrow();
    expect(() => parseFleetOptions(['--servers', '2'])).toThrow(/--datastore postgres/);
    expect(() => parseFleetOptions(['--kill-one-at', '5'])).toThrow(/--servers 2/);
    expect(parseFleetOptions([])).toMatchObject({ agents: 100, entriesPerAgent: 10, syncIntervalSeconds: 5, durationSeconds: 30, datastore: 'sqlite', workers: 1, rotateCaAtSeconds: 15, push: true, incremental: true });
    expect(parseFleetOptions(['--push', 'off', '--incremental', 'off'])).toMatchObject({ push: false, incremental: false });
    expect(() => parseFleetOptions(['--push', 'maybe'])).toThrow(/on or off/);
    expect(() => parseFleetOptions(['--simulator-nice', '20'])).toThrow(/--simulator-nice/);
    expect(parseFleetOptions(['--simulator-nice', '10', '--server-node-options=--max-semi-space-size=4 --trace-gc'])).toMatchObject({ simulatorNice: 10, serverNodeOptions: '--max-semi-space-size=4 --trace-gc' });
    expect(parseFleetOptions(['--server-output', '/tmp/x.log'])).toMatchObject({ serverOutput: '/tmp/x.log' });
  });
});
