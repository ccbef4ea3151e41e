import { copyFileSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import type { MethodStep } from '../experiment/schema.js';
import type { RollbackStep } from '../ledger.js';
import { isAlive, respawn, signal, snapshot, waitFor } from '../proc.js';
import { component } from '../stack.js';
import { onePid } from './process.js';
import { startStep, type FaultContext, type FaultKindImpl, type PreparedFault } from './types.js';
import { SvidscopeError } from '../../common/errors/catalog.js';

type Ds = Extract<MethodStep, { fault: 'datastore' }>;

/**
 * Datastore loss or corruption (SQLite): the server is stopped (SIGTERM, so the WAL is
 * checkpointed), the files are backed up, then removed or overwritten, and the server is started
 * again on the damage. The rollback stops it, restores the backup and starts it again.
 */
export const datastore: FaultKindImpl<Ds> = {
  plan: (s) => ({ inject: `stop ${s.server}, back up its SQLite datastore, ${s.mode === 'loss' ? 'delete it' : 'overwrite its first pages'}, start ${s.server}`, rollback: `stop ${s.server}, restore the backup, start ${s.server}` }),
  async prepare(s: Ds, ctx: FaultContext): Promise<PreparedFault> {
    const c = component(ctx.stack, s.server);
    const pid = onePid(c);
    const snap = snapshot(pid);
    const cfg = parse(readFileSync(c.config!, 'utf8')) as { data_dir?: string; datastore?: { kind?: string; path?: string } };
    if (cfg.datastore?.kind && cfg.datastore.kind !== 'sqlite') throw new SvidscopeError('chaos-target-invalid', 'chaos: the datastore fault supports SQLite only');
    const db = path.resolve(cfg.data_dir ?? c.dataDir!, cfg.datastore?.path ?? 'datastore.sqlite3');
    const files = [db, `${db}-wal`, `${db}-shm`];
    mkdirSync(ctx.backupDir, { recursive: true });
    const backupOf = (f: string) => path.join(ctx.backupDir, `${path.basename(f)}.bak`);
    const rollback: RollbackStep[] = [
      { op: 'stop', component: c.name, match: { config: c.config } },
      // WAL/SHM written by the damaged server must not be replayed over the restored file.
      ...files.map((f, i): RollbackStep => ({ op: 'restore-file', path: f, backup: backupOf(f), orRemove: i > 0 })),
      startStep(c, snap, true),
    ];
    return {
      target: c.name,
      rollback,
      async apply() {
        signal(pid, 'SIGTERM');
        if (!(await waitFor(() => !isAlive(pid), 15_000, undefined, ctx.clock))) {
          signal(pid, 'SIGKILL');
          await waitFor(() => !isAlive(pid), 5_000, undefined, ctx.clock);
        }
        for (const f of files) {
          if (!existsSync(f)) continue;
          copyFileSync(f, `${backupOf(f)}.tmp`);
          renameSync(`${backupOf(f)}.tmp`, backupOf(f));
        }
        if (s.mode === 'loss') for (const f of files) rmSync(f, { force: true });
        else {
          const fd = openSync(db, 'r+');
          writeSync(fd, Buffer.alloc(8192, 0x5a), 0, 8192, 0);
          closeSync(fd);
          for (const f of files.slice(1)) rmSync(f, { force: true });
        }
        const newPid = respawn(snap, c.log);
        return { datastore: db, mode: s.mode, serverPid: newPid };
      },
    };
  },
};
