import { lstatSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SvidscopeError } from '../common/errors/catalog.js';
import type { RollbackStep } from './ledger.js';

/** The checkout (src/chaos and dist/chaos both sit two levels below it): `start` steps may only run its CLI. */
const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cliEntry = path.join(projectRoot, 'bin', 'svidscope.js');

/**
 * `chaos recover` runs as whoever calls it (often root) and replays what the ledger says, so the
 * ledger is only as trustworthy as the least privileged user who could have written it. A chaos
 * dir or ledger that is a symlink, owned by another uid, or writable by group/others is refused.
 */
export function assertPrivate(file: string, what: string): void {
  let st;
  try {
    st = lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const uid = process.getuid?.();
  const problem = st.isSymbolicLink() ? 'is a symbolic link'
    : uid !== undefined && st.uid !== uid ? `is owned by uid ${st.uid}, not by the caller (uid ${uid})`
      : (st.mode & 0o022) !== 0 ? `is writable by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')})`
        : undefined;
  if (problem) throw new SvidscopeError('chaos-ledger-untrusted', `chaos: ${what} ${file} ${problem}; refusing to trust it (fix its owner/mode or remove it)`);
}

const within = (root: string, p: string): boolean => {
  const rel = path.relative(path.resolve(root), path.resolve(p));
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
};

/** Node options that make node run code other than the script named after them. */
const CODE_FLAGS = /^(-e|--eval|-p|--print|-r|--require|--import|--loader|--experimental-loader)(=|$)/;
/** Environment that makes a process load code it was not asked to. */
const CODE_ENV = ['LD_PRELOAD', 'LD_AUDIT', 'LD_LIBRARY_PATH'];

/**
 * Every step must be one the project's faults write for this stack: files restored or removed lie in
 * the stack's data dir (backups and scratch in its chaos dir), and a restarted component is this
 * checkout's CLI, run by the node binary that runs us (or a copy `up` put in `<dataDir>/bin`).
 * Returns the problem, or undefined for a step that passes.
 */
export function stepProblem(s: RollbackStep, dataDir: string, chaosDir: string): string | undefined {
  switch (s.op) {
    case 'restore-file':
      if (!within(dataDir, s.path)) return `restore-file path ${s.path} is outside the stack's data dir ${dataDir}`;
      if (s.backup !== null && !within(chaosDir, s.backup)) return `restore-file backup ${s.backup} is outside the chaos dir ${chaosDir}`;
      return undefined;
    case 'remove-path':
      return within(chaosDir, s.path) ? undefined : `remove-path ${s.path} is outside the chaos dir ${chaosDir}`;
    case 'start': {
      const [node, ...rest] = s.argv;
      if (!node || !(path.resolve(node) === process.execPath || within(path.join(dataDir, 'bin'), node))) return `start ${s.component}: ${node} is not the node binary`;
      const entry = rest.indexOf(cliEntry);
      if (entry < 0) return `start ${s.component}: argv does not run ${cliEntry}`;
      const flag = rest.slice(0, entry).find((a) => CODE_FLAGS.test(a));
      if (flag) return `start ${s.component}: node option ${flag} would run other code`;
      if (s.match.config !== undefined && (!within(dataDir, s.match.config) || !rest.includes(s.match.config))) return `start ${s.component}: config ${s.match.config} is not a stack config named in argv`;
      const env = CODE_ENV.find((k) => k in s.env) ?? (/(^|\s)(-r|--require|--import|--loader|--experimental-loader|-e|--eval)\b/.test(s.env.NODE_OPTIONS ?? '') ? 'NODE_OPTIONS' : undefined);
      if (env) return `start ${s.component}: environment ${env} would load other code`;
      return undefined;
    }
    default:
      return undefined;
  }
}

/** Throws `chaos-ledger-step-invalid` naming the ledger and the first step that is not the project's own. */
export function assertSteps(file: string, steps: RollbackStep[], dataDir: string, chaosDir: string): void {
  for (const s of steps) {
    const problem = stepProblem(s, dataDir, chaosDir);
    if (problem) throw new SvidscopeError('chaos-ledger-step-invalid', `chaos: ledger ${file}: ${problem}; refusing to replay it`);
  }
}
