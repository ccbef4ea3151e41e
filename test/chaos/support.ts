import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { ExperimentInvalidError, parseExperimentText } from '../../src/chaos/index.js';
import { findPids, isAlive, processState, signal, waitFor } from '../../src/chaos/proc.js';

export const root = path.resolve(import.meta.dirname, '..', '..');

/**
 * `svidscope up` in a fresh data dir (no federation unless `federation`; with `alertProfile`, its
 * own Prometheus and Alertmanager on that profile), plus a teardown that kills every process of
 * that dir (restarted ones too).
 */
export async function startUp(opts: { alertProfile?: 'gameday' | 'production'; federation?: boolean } = {}): Promise<{ dataDir: string; up: ResultPromise; stop(): Promise<void> }> {
  const dataDir = mkdtempSync(path.join(tmpdir(), opts.federation ? 'svidscope-chaos-fed-' : 'svidscope-chaos-'));
  const monitoring = opts.alertProfile ? ['--alert-profile', opts.alertProfile] : ['--no-monitoring'];
  const federation = opts.federation ? [] : ['--no-federation'];
  const up = execa(process.execPath, [path.join(root, 'bin', 'svidscope.js'), 'up', '--data-dir', dataDir, ...federation, ...monitoring], { reject: false, env: { SVIDSCOPE_FROM_SOURCE: '1' }, stdout: 'ignore', stderr: 'ignore' });
  const ok = await waitFor(() => existsSync(path.join(dataDir, 'endpoints.json')), 180_000, 250);
  if (!ok) throw new Error('svidscope up did not come up');
  const stop = async () => {
    const mine = () => findPids((argv) => argv.some((a) => a.startsWith(dataDir)));
    for (const pid of mine()) signal(pid, 'SIGCONT');
    up.kill('SIGTERM');
    await Promise.race([up, new Promise((r) => setTimeout(r, 15_000))]);
    for (const pid of mine()) signal(pid, 'SIGKILL');
    await waitFor(() => mine().length === 0, 10_000);
  };
  return { dataDir, up, stop };
}

/** No stopped process of the stack, and every component present exactly once. */
export function stackProcesses(dataDir: string): { pid: number; state: string; argv: string }[] {
  return findPids((argv) => argv.some((a) => a.startsWith(dataDir)) && argv.includes('run') || argv.includes('sample') && argv.some((a) => a.startsWith(dataDir)))
    .filter(isAlive).map((pid) => ({ pid, state: processState(pid) ?? '?', argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ') }));
}

/** The real `svidscope` executable, from source. */
export const cli = (args: string[]) => execa(process.execPath, [path.join(root, 'bin', 'svidscope.js'), ...args], { reject: false, cwd: root, env: { SVIDSCOPE_FROM_SOURCE: '1' } });

/** The problems an invalid experiment text is rejected with (fails the test when it is valid). */
export function problems(text: string): string[] {
  try {
    parseExperimentText(text, 't');
  } catch (err) {
    expect(err).toBeInstanceOf(ExperimentInvalidError);
    return (err as ExperimentInvalidError).problems;
  }
  throw new Error('expected invalid');
}
