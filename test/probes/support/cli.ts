import { spawn } from 'node:child_process';
import path from 'node:path';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { portableScript } from '../../support/portable-script.js';
import { cli, type CliResult } from '../../support/cli.js';

const root = path.resolve(import.meta.dirname, '..', '..', '..');

export type { CliResult };

/** Runs `svidscope probe …` in-process with captured output, through the real CLI entry point. */
export const probeCli = (...argv: string[]): Promise<CliResult> => cli(...argv);

let bundled: Promise<string> | undefined;

/**
 * Runs the probe CLI as its own process under another uid/gid (setpriv, no supplementary groups).
 * It runs from a self-contained bundle in a world-readable temp dir: the project tree itself may
 * not be readable by other uids (a CI clone in a 0700 directory).
 */
export async function probeCliAs(user: { uid: number; gid: number }, args: string[]): Promise<CliResult> {
  bundled ??= (async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'svidscope-probe-cli-'));
    chmodSync(dir, 0o755);
    return (await portableScript(path.join(root, 'test', 'probes', 'fixtures', 'probe-cli.ts'), dir)).script;
  })();
  const script = await bundled;
  const child = spawn('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', process.execPath, script, ...args], { cwd: tmpdir(), env: { PATH: process.env.PATH ?? '' } });
  let [stdout, stderr] = ['', ''];
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr })));
}

