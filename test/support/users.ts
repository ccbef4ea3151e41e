import { spawn } from 'node:child_process';

/** A local system user for tests that need distinct uids (created if missing; the tests run as root). */
export { ensureSystemUser as ensureUser } from '../../src/common/os-users.js';

/** Runs `node <script> <args>` as another uid/gid (setpriv, no supplementary groups); resolves with stdout. */
export function runNodeAs(user: { uid: number; gid: number }, script: string, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', process.execPath, script, ...args], { cwd });
  let [stdout, stderr] = ['', ''];
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr })));
}
