/**
 * The user and group name databases (`/etc/passwd`, `/etc/group`) as id → name maps, parsed once and
 * reread only when the file changes. Attesting a caller used to read and parse both files every
 * time; with a thousand workloads starting together that was most of the attestation's cost.
 *
 * Freshness: the file is stat-ed at most once per `recheckMs` (default 1 s), and reparsed when its
 * inode, size, mtime or ctime differ. A rename over the file (how `useradd`/`vipw` write) changes
 * the inode; an in-place write changes mtime and ctime, and nobody but root can set ctime back.
 * A user added now is therefore resolvable by name within one recheck interval.
 */
import fs from 'node:fs';
import { systemClock, type Clock } from '../../../common/clock.js';

export interface NameDatabaseOptions {
  readonly clock?: Clock;
  /** How long a stat result is trusted before the file is looked at again. Default 1 s. */
  readonly recheckMs?: number;
}

interface Loaded {
  readonly signature: string;
  readonly names: ReadonlyMap<string, string>;
}

const EMPTY: ReadonlyMap<string, string> = new Map();
const DEFAULT_RECHECK_MS = 1_000;

export class NameDatabase {
  private loaded: Loaded | undefined;
  private checkedAtMs = -Infinity;
  /** One refresh at a time; concurrent attestations share it. */
  private refreshing: Promise<ReadonlyMap<string, string>> | undefined;
  private readonly clock: Clock;
  private readonly recheckMs: number;

  constructor(
    readonly path: string,
    opts: NameDatabaseOptions = {},
  ) {
    this.clock = opts.clock ?? systemClock;
    this.recheckMs = opts.recheckMs ?? DEFAULT_RECHECK_MS;
  }

  /** id → name; the first row for an id wins, as getpwuid/getgrgid do over files. */
  async names(): Promise<ReadonlyMap<string, string>> {
    if (this.loaded && this.clock.nowMs() - this.checkedAtMs < this.recheckMs) return this.loaded.names;
    this.refreshing ??= this.refresh().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async refresh(): Promise<ReadonlyMap<string, string>> {
    const checkedAt = this.clock.nowMs();
    let signature: string;
    try {
      const st = await fs.promises.stat(this.path, { bigint: true });
      signature = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    } catch {
      // No database: names are simply unresolvable, ids still attest.
      this.loaded = { signature: 'missing', names: EMPTY };
      this.checkedAtMs = checkedAt;
      return EMPTY;
    }
    if (this.loaded?.signature !== signature) {
      let text: string;
      try {
        text = await fs.promises.readFile(this.path, 'utf8');
      } catch {
        text = '';
      }
      this.loaded = { signature, names: parseNameDatabase(text) };
    }
    this.checkedAtMs = checkedAt;
    return this.loaded.names;
  }
}

/** Parses passwd/group rows (`name:x:id:…`) into id → name; comments and malformed rows are skipped. */
export function parseNameDatabase(text: string): Map<string, string> {
  const names = new Map<string, string>();
  for (const row of text.split('\n')) {
    const cols = row.split(':');
    if (cols.length < 3 || row.startsWith('#') || !/^\d+$/.test(cols[2])) continue;
    if (!names.has(cols[2])) names.set(cols[2], cols[0]);
  }
  return names;
}
