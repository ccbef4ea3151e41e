import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Ledger, parseExperimentText, runExperiment } from '../../src/chaos/index.js';
import type { RollbackStep } from '../../src/chaos/ledger.js';
import { FakeClock } from '../../src/common/clock.js';

/**
 * The runner's rollback ordering, with stand-in fault kinds and rollback player and a fake clock:
 * background faults are undone last-in first-out after the last step, and a rollback that fails is
 * tried once more after every other rollback ran (a fault still in place may have blocked it).
 */
const played: string[] = [];
let failures: Record<string, number> = {};

const faults = {
  impl: () => ({
    plan: () => ({ inject: '', rollback: '' }),
    prepare: async (step: { name: string }) => ({ target: step.name, rollback: [{ op: 'remove-path' as const, path: step.name }], apply: async () => ({}) }),
  }),
  playRollback: async (steps: RollbackStep[]) => {
    const name = (steps[0] as { path: string }).path;
    played.push(name);
    if ((failures[name] ?? 0) > 0) {
      failures[name]--;
      throw new Error(`${name} is blocked`);
    }
    return [`undid ${name}`];
  },
};

/** Settles `p`, moving the fake clock on whenever the runner is left waiting on it. */
async function driven<T>(clock: FakeClock, p: Promise<T>): Promise<T> {
  let done = false;
  void p.finally(() => (done = true)).catch(() => undefined);
  while (!done) {
    await new Promise((r) => setImmediate(r));
    clock.advance(50);
  }
  return p;
}

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
    const clock = new FakeClock();
    return { dataDir, result: driven(clock, runExperiment(experiment, { dataDir, stack, clock, faults })) };
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
    // Every timestamp comes from the run's clock (FakeClock starts at 2030-01-01), none from the wall clock.
    expect(r.journal.start).toBe('2030-01-01T00:00:00.000Z');
    expect(r.journal.duration).toBeGreaterThanOrEqual(0.1);
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
