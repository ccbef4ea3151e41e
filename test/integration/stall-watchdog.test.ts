import { execa } from 'execa';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..', '..');
const fixtureDir = path.join(root, 'test', 'integration', 'fixtures', 'stall');
const work = mkdtempSync(path.join(tmpdir(), 'svidscope-stall-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('stall watchdog (test/support/stall-watchdog.ts, scripts/test-summary.mjs)', () => {
  it('ends a worker whose main thread is blocked, names the file, and the summary counts it failed', { timeout: 120_000 }, async () => {
    // vitest from another directory, as scripts/test.sh runs it: the watchdog writes under its cwd.
    const run = await execa(
      process.execPath,
      [path.join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', path.join(fixtureDir, 'vitest.config.mjs'),
        `--reporter=${path.join(root, 'test', 'support', 'stall-watchdog.ts')}`, '--reporter=json', `--outputFile.json=${path.join(work, 'report.json')}`],
      { cwd: work, reject: false, env: { SVIDSCOPE_TEST_STALL_MINUTES: '0.2', SVIDSCOPE_TEST_PROGRESS_MINUTES: '0.1' }, timeout: 100_000 },
    );
    const stuck = path.relative(work, path.join(fixtureDir, 'stuck.fixture.ts'));
    // vitest itself ends (it would wait forever without the watchdog) and fails the run.
    expect(run.timedOut).toBe(false);
    expect(run.exitCode).not.toBe(0);
    expect(run.stderr).toContain(`[stall-watchdog] still running: ${stuck}`);
    expect(run.stderr).toMatch(/stuck\.fixture\.ts has run for [\d.]+ min \(limit 0\.2\): ending its worker/);
    expect(run.stderr).toContain('Builtin_AtomicsWait'); // gdb's native stack of the main thread
    // What the worker was doing: blocked in a futex wait, not running JavaScript.
    expect(run.stderr).toMatch(/worker \d+: State:\s+S \(sleeping\)/);
    expect(run.stderr).toContain('the main thread is not running JavaScript');

    const stalledList = path.join(work, '.svidscope', 'stalled-files.txt');
    expect(readFileSync(stalledList, 'utf8').trim()).toBe(stuck);
    expect(existsSync(path.join(work, 'report.json'))).toBe(true);

    // vitest's JSON marks the ended file passed with its tests pending; the summary does not.
    const summary = await execa(process.execPath, [path.join(root, 'scripts', 'test-summary.mjs'), '--stalled', stalledList, 'report.json'], { cwd: work, reject: false });
    expect(summary.stdout).toBe('tests: 0 passed, 1 failed, 0 skipped');
    expect(summary.exitCode).toBe(1);
    expect(summary.stderr).toContain('stuck.fixture.ts: stalled, and its worker was ended by the stall watchdog');
  });
});
