import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Ledger } from '../../src/chaos/index.js';
import { playRollback } from '../../src/chaos/ledger.js';
import { cliProcess } from '../support/cli.js';
import { ensureUser, runNodeAs } from '../support/users.js';

/**
 * Issue 14 item 7: `chaos recover` replays the ledger as its caller (root). A ledger planted by
 * another uid, or one whose steps are not the project's own, must be refused before any step runs.
 */
const root = mkdtempSync(path.join(os.tmpdir(), 'svidscope-ledger-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const isRoot = process.getuid?.() === 0;

/** A ledger whose steps, replayed as root, would leak /etc/shadow and run a shell of the attacker's. */
function hostileLedger(dataDir: string, leak: string, marker: string): string {
  const fault = {
    id: 'f1', step: 'planted', kind: 'process', target: 'agent-1', state: 'active', injectedAt: new Date(0).toISOString(),
    rollback: [
      { op: 'restore-file', path: leak, backup: '/etc/shadow' },
      { op: 'start', component: 'agent-1', match: { config: path.join(dataDir, 'agent-1.yaml') }, argv: ['/bin/sh', '-c', `touch ${marker}`], env: {}, cwd: '/', uid: 0, gid: 0, replace: false },
    ],
  };
  // A harness pid that is surely gone, so recover treats the run as abandoned.
  return JSON.stringify({ version: 1, runs: [{ runId: 'r1', experiment: 'planted', harnessPid: 2 ** 22 - 1, harnessStartTime: '1', startedAt: new Date(0).toISOString(), faults: [fault] }] });
}

function stackDir(name: string, mode = 0o755): string {
  const d = path.join(root, name);
  mkdirSync(d, { recursive: true });
  chmodSync(d, mode);
  return d;
}

describe.runIf(isRoot)('chaos ledger: planted by another uid', () => {
  it('root\'s `chaos recover` refuses a chaos dir and ledger another user wrote, and runs none of its steps', async () => {
    chmodSync(root, 0o755);
    const attacker = ensureUser('svidscope-test-a');
    // The data dir is writable by the attacker (the weakness the issue names).
    const dataDir = stackDir('shared', 0o777);
    const leak = path.join(dataDir, 'shadow-copy');
    const marker = path.join(dataDir, 'ran-as-root');
    const script = path.join(root, 'plant.mjs');
    writeFileSync(script, `import { mkdirSync, writeFileSync } from 'node:fs';
mkdirSync(process.argv[2] + '/chaos', { mode: 0o755 });
writeFileSync(process.argv[2] + '/chaos/state.json', process.argv[3]);
`, { mode: 0o755 });
    const planted = await runNodeAs(attacker, script, [dataDir, hostileLedger(dataDir, leak, marker)], root);
    expect(planted.code, planted.stderr).toBe(0);
    expect(statSync(path.join(dataDir, 'chaos', 'state.json')).uid).toBe(attacker.uid);

    const r = await cliProcess('chaos', 'recover', '--data-dir', dataDir, '--force');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('chaos-ledger-untrusted');
    expect(r.stderr).toContain(path.join(dataDir, 'chaos'));
    expect(existsSync(leak)).toBe(false);
    expect(existsSync(marker)).toBe(false);
  });
});

describe('chaos ledger: trust checks', () => {
  it('refuses a ledger of the caller that group or others can write', async () => {
    const dataDir = stackDir('writable');
    mkdirSync(path.join(dataDir, 'chaos'), { mode: 0o700 });
    const file = path.join(dataDir, 'chaos', 'state.json');
    writeFileSync(file, hostileLedger(dataDir, path.join(dataDir, 'x'), path.join(dataDir, 'y')));
    chmodSync(file, 0o666);
    const r = await cliProcess('chaos', 'recover', '--data-dir', dataDir, '--force');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('chaos-ledger-untrusted');
    expect(r.stderr).toContain('writable by group or others');
  });

  it('refuses a private ledger whose steps are not the project\'s own, before running any of them', async () => {
    const dataDir = stackDir('foreign-steps');
    const leak = path.join(dataDir, 'shadow-copy');
    const marker = path.join(dataDir, 'ran');
    mkdirSync(path.join(dataDir, 'chaos'), { mode: 0o700 });
    writeFileSync(path.join(dataDir, 'chaos', 'state.json'), hostileLedger(dataDir, leak, marker), { mode: 0o600 });
    const r = await cliProcess('chaos', 'recover', '--data-dir', dataDir, '--force');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('chaos-ledger-step-invalid');
    expect(r.stderr).toContain('/etc/shadow');
    expect(existsSync(leak)).toBe(false);
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses a start step whose argv is not the project CLI', async () => {
    const dataDir = stackDir('foreign-start');
    const marker = path.join(dataDir, 'ran');
    const doc = JSON.parse(hostileLedger(dataDir, '', marker)) as { runs: { faults: { rollback: unknown[] }[] }[] };
    doc.runs[0].faults[0].rollback.shift(); // only the start step
    mkdirSync(path.join(dataDir, 'chaos'), { mode: 0o700 });
    writeFileSync(path.join(dataDir, 'chaos', 'state.json'), JSON.stringify(doc), { mode: 0o600 });
    const r = await cliProcess('chaos', 'recover', '--data-dir', dataDir, '--force');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('chaos-ledger-step-invalid');
    expect(r.stderr).toContain('/bin/sh is not the node binary');
    expect(existsSync(marker)).toBe(false);
  });

  it('writes the chaos dir 0700 and the ledger 0600', () => {
    const dataDir = stackDir('fresh');
    const ledger = new Ledger(dataDir);
    ledger.beginRun({ runId: 'r', experiment: 'e', harnessPid: process.pid, harnessStartTime: '1', startedAt: new Date(0).toISOString() });
    expect(statSync(path.join(dataDir, 'chaos')).mode & 0o777).toBe(0o700);
    expect(statSync(ledger.file).mode & 0o777).toBe(0o600);
    expect(ledger.read().runs.map((r) => r.runId)).toEqual(['r']);
  });

  it('refuses a ledger that is a symlink (its target would be read and overwritten)', () => {
    const dataDir = stackDir('symlinked');
    mkdirSync(path.join(dataDir, 'chaos'), { mode: 0o700 });
    const target = path.join(dataDir, 'elsewhere.json');
    writeFileSync(target, JSON.stringify({ version: 1, runs: [] }), { mode: 0o600 });
    symlinkSync(target, path.join(dataDir, 'chaos', 'state.json'));
    expect(() => new Ledger(dataDir).read()).toThrow(expect.objectContaining({ code: 'chaos-ledger-untrusted' }) as Error);
  });

  it('a restore-file step does not write through a symlink planted at its temp name', async () => {
    const dataDir = stackDir('restore');
    mkdirSync(path.join(dataDir, 'chaos'), { mode: 0o700 });
    const target = path.join(dataDir, 'agent-1.yaml');
    const backup = path.join(dataDir, 'chaos', 'agent-1.yaml.orig');
    writeFileSync(target, 'changed\n');
    writeFileSync(backup, 'original\n', { mode: 0o600 });
    const victim = path.join(root, 'victim');
    writeFileSync(victim, 'untouched\n');
    symlinkSync(victim, `${target}.chaos-restore`);
    await playRollback([{ op: 'restore-file', path: target, backup }]);
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
    expect(readFileSync(target, 'utf8')).toBe('original\n');
  });
});
