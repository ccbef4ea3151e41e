import { execa, type ResultPromise } from 'execa';
import path from 'node:path';
import { freeLoopbackPort } from '../../src/common/net.js';

const root = path.resolve(import.meta.dirname, '..', '..');

/**
 * Starts `svidscope <args>` as a real child process (logs kept for failure messages): from source
 * through tsx, or with `compiled` through `bin/svidscope.js` on the build in `dist/`.
 */
export function spawnCli(args: string[], env: Record<string, string> = {}, opts: { compiled?: boolean; nodeArgs?: readonly string[] } = {}): { child: ResultPromise; logs: () => string } {
  const entry = opts.compiled ? [path.join(root, 'bin', 'svidscope.js')] : ['--import', 'tsx', path.join(root, 'src', 'cli', 'index.ts')];
  const child = execa('node', [...(opts.nodeArgs ?? []), ...entry, ...args], {
    reject: false,
    env: { ...env },
    all: true,
    buffer: { all: true },
  });
  let output = '';
  child.all?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  return { child, logs: () => output };
}

/** Stops CLI children started with spawnCli, last started first, and waits for each to exit. */
export async function stopAll(procs: ReturnType<typeof spawnCli>[]): Promise<void> {
  for (const p of [...procs].reverse()) {
    p.child.kill('SIGTERM');
    await p.child.catch(() => undefined);
  }
}

/** A free loopback port (bound and released); good enough for tests that start servers on it next. */
/** A free loopback port for a server a test starts (see freeLoopbackPort: never from the ephemeral range). */
export const freePort = freeLoopbackPort;

/** Polls until `check` resolves truthy or the time is up. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 20_000, logs?: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ''}${logs ? `\n--- logs ---\n${logs().slice(-3000)}` : ''}`);
}

export async function httpOk(url: string): Promise<boolean> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return r.ok;
  } catch {
    return false;
  }
}
