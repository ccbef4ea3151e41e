import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { RollbackStep } from '../../src/chaos/ledger.js';

/**
 * The runner's rollback ordering, with fault kinds and rollback playing replaced: background
 * faults are undone last-in first-out after the last step, and a rollback that fails is tried
 * once more after every other rollback ran (a fault still in place may have blocked it).
 */
const played: string[] = [];
let failures: Record<string, number> = {};

vi.mock(import('../../src/chaos/ledger.js'), async (original) => ({
  ...(await original()),
  playRollback: vi.fn(async (steps: RollbackStep[]) => {
    const name = (steps[0] as { path: string }).path;
    played.push(name);
    if ((failures[name] ?? 0) > 0) {
      failures[name]--;
      throw new Error(`${name} is blocked`);
    }
    return [`undid ${name}`];
  }),
}));
vi.mock(import('../../src/chaos/faults/index.js'), async (original) => ({
  ...(await original()),
  faultImpl: () => ({
    plan: () => ({ inject: '', rollback: '' }),
    prepare: async (step: { name: string }) => ({ target: step.name, rollback: [{ op: 'remove-path', path: step.name }], apply: async () => ({}) }),
  }),
}));

const { Ledger, parseExperimentText, runExperiment } = await import('../../src/chaos/index.js');

const experiment = parseExperimentText(`
title: two faults
description: a throttle in the background, and a deletion whose undo needs the throttled server
steady-state-hypothesis: { probes: [] }
blast-radius: { servers: [server] }
method:
  - { name: throttle, fault: process-freeze, target: server, duration: 100ms, background: true }
  - { name: delete, fault: process-freeze, target: server, duration: 100ms }
`, 'two-faults');

describe('rollback order and retry', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    played.length = 0;
    failures = {};
  });
  const run = () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'svidscope-runner-'));
    dirs.push(dataDir);
    const stack = { dataDir, endpoints: {} as never, components: new Map() };
    return { dataDir, result: runExperiment(experiment, { dataDir, stack }) };
  };

  it('a rollback blocked by a background fault succeeds on its second attempt, after that fault is undone', async () => {
    failures = { delete: 1 };
    const { dataDir, result } = run();
    const r = await result;
    expect(played).toEqual(['delete', 'throttle', 'delete']);
    expect(r.journal.rollbacks.map((x) => `${x.step}:${x.status}`)).toEqual(['delete:failed', 'throttle:succeeded', 'delete:succeeded']);
    expect(r.journal.rollbacks[2].notes[0]).toBe('second attempt, after the other rollbacks');
    expect(r.journal.verdict).toBe('passed');
    expect(new Ledger(dataDir).read().runs).toEqual([]);
  });

  it('a rollback that fails twice fails the run and stays in the ledger for chaos recover', async () => {
    failures = { delete: 2 };
    const { dataDir, result } = run();
    const r = await result;
    expect(r.journal.rollbacks.map((x) => `${x.step}:${x.status}`)).toEqual(['delete:failed', 'throttle:succeeded', 'delete:failed']);
    expect(r.journal.verdict).toBe('failed');
    expect(r.journal.leftovers).toEqual(['delete on delete']);
    expect(new Ledger(dataDir).read().runs.flatMap((x) => x.faults.map((f) => f.step))).toEqual(['delete']);
  });
});
