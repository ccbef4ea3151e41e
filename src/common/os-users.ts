import { execFileSync } from 'node:child_process';

/**
 * A local system user with its own uid and group (created when missing; needs root). `svidscope up`
 * runs its sample workloads under such users, and tests use them to prove per-uid attestation.
 */
export function ensureSystemUser(name: string): { uid: number; gid: number } {
  try {
    execFileSync('id', ['-u', name], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['--system', '--no-create-home', '--user-group', '--shell', '/usr/sbin/nologin', name]);
  }
  const id = (flag: string) => Number(execFileSync('id', [flag, name]).toString().trim());
  return { uid: id('-u'), gid: id('-g') };
}
