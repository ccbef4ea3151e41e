/**
 * Limits of the Workload API socket and how their refusals are reported. Every accepted
 * connection holds two descriptors (the socket and the caller's pinned /proc directory), so the
 * connection limits are what stands between one local uid and the agent's descriptor table.
 */
import fs from 'node:fs';
import type { Clock, TimerHandle } from '../../../common/clock.js';
import type { ErrorCode } from '../../../common/errors/catalog.js';
import type { Logger } from '../../../common/log.js';

export interface WorkloadSocketLimits {
  /** Connections open at once, all callers together (`workload_api_max_connections`). */
  readonly maxConnections: number;
  /** Connections open at once per caller uid (`workload_api_max_connections_per_uid`). */
  readonly maxConnectionsPerUid: number;
  /** A connection that has sent no request this long after accept is closed (`workload_api_first_request_timeout`). */
  readonly firstRequestTimeoutMs: number;
}

export const DEFAULT_MAX_CONNECTIONS = 1024;
export const DEFAULT_MAX_CONNECTIONS_PER_UID = 256;
export const DEFAULT_FIRST_REQUEST_TIMEOUT_MS = 10_000;
/** Descriptors kept for everything but Workload API connections: server connection, ops endpoint, files. */
export const FD_RESERVE = 128;
/** Descriptors one Workload API connection holds. */
export const FDS_PER_CONNECTION = 2;

/** Every way the agent refuses a Workload API connection or request (the refusal metric's `reason`). */
export type RefusalReason = 'per_uid_limit' | 'total_limit' | 'first_request_timeout' | 'emfile' | 'exec_after_connect';

export const REFUSAL_CODES: Record<RefusalReason, ErrorCode> = {
  per_uid_limit: 'workload-api-connection-limit',
  total_limit: 'workload-api-connection-limit',
  first_request_timeout: 'workload-api-connection-limit',
  emfile: 'workload-api-fd-exhausted',
  exec_after_connect: 'workload-exec-after-connect',
};

const MESSAGES: Record<RefusalReason, string> = {
  per_uid_limit: 'workload api connections refused: caller uid at workload_api_max_connections_per_uid',
  total_limit: 'workload api connections refused: agent at workload_api_max_connections',
  first_request_timeout: 'workload api connections closed: no request within workload_api_first_request_timeout',
  emfile: 'workload api connections refused: the agent is out of file descriptors (EMFILE/ENFILE)',
  exec_after_connect: 'workload api requests refused: the caller executed another program after it connected',
};

/** How often each kind of refusal is logged at most (plus the first one at once). */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;
const TOP_UIDS = 5;

/**
 * Counts every refusal (the metric) but logs each kind at most once per interval, with how many
 * there were and the uids that caused most of them: an attacker opening thousands of connections
 * must not turn into thousands of log lines.
 */
export class RefusalLog {
  private readonly pending = new Map<RefusalReason, { count: number; uids: Map<number, number> }>();
  private readonly lastLogMs = new Map<RefusalReason, number>();
  private timer: TimerHandle | undefined;

  constructor(
    private readonly log: Logger,
    private readonly clock: Clock,
    private readonly onRefused: (reason: RefusalReason) => void = () => {},
    private readonly intervalMs = REFUSAL_LOG_INTERVAL_MS,
  ) {}

  note(reason: RefusalReason, uid?: number): void {
    this.onRefused(reason);
    let p = this.pending.get(reason);
    if (!p) this.pending.set(reason, (p = { count: 0, uids: new Map() }));
    p.count++;
    if (uid !== undefined) p.uids.set(uid, (p.uids.get(uid) ?? 0) + 1);
    const last = this.lastLogMs.get(reason);
    if (last === undefined || this.clock.nowMs() - last >= this.intervalMs) {
      this.flush(reason);
    } else if (!this.timer) {
      this.timer = this.clock.setTimeout(() => {
        this.timer = undefined;
        for (const r of [...this.pending.keys()]) this.flush(r);
      }, this.intervalMs);
    }
  }

  private flush(reason: RefusalReason): void {
    const p = this.pending.get(reason);
    if (!p || p.count === 0) return;
    this.pending.delete(reason);
    this.lastLogMs.set(reason, this.clock.nowMs());
    const uids = Object.fromEntries([...p.uids].sort((a, b) => b[1] - a[1]).slice(0, TOP_UIDS).map(([u, n]) => [String(u), n]));
    this.log.warn({ code: REFUSAL_CODES[reason], reason, refused: p.count, byUid: uids }, MESSAGES[reason]);
  }

  /** Logs what is pending and stops the timer (listener close). */
  close(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    for (const r of [...this.pending.keys()]) this.flush(r);
  }
}

/** The soft RLIMIT_NOFILE of this process (Node raises it to the hard limit at start), or undefined. */
export function openFileLimit(limitsPath = '/proc/self/limits'): number | undefined {
  try {
    const line = fs.readFileSync(limitsPath, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    if (soft === undefined || soft === 'unlimited') return undefined;
    const n = Number(soft);
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The total connection limit to apply. The default adapts to the descriptor limit, so that the
 * limit, not EMFILE, is what a flood runs into; an explicit value is honoured, with a warning when
 * it cannot fit.
 */
export function effectiveMaxConnections(configured: number | undefined, nofile: number | undefined): { value: number; warning?: string } {
  const fits = nofile === undefined ? Infinity : Math.max(1, Math.floor((nofile - FD_RESERVE) / FDS_PER_CONNECTION));
  if (configured === undefined) {
    if (fits >= DEFAULT_MAX_CONNECTIONS) return { value: DEFAULT_MAX_CONNECTIONS };
    return { value: fits, warning: `workload_api_max_connections lowered from its default ${DEFAULT_MAX_CONNECTIONS} to ${fits}: each connection holds ${FDS_PER_CONNECTION} descriptors and the open-file limit is ${nofile}; raise the limit (e.g. LimitNOFILE) to restore it` };
  }
  if (configured > fits) {
    return { value: configured, warning: `workload_api_max_connections ${configured} needs about ${configured * FDS_PER_CONNECTION + FD_RESERVE} descriptors but the open-file limit is ${nofile}: the agent can run out of descriptors (EMFILE) before the limit applies` };
  }
  return { value: configured };
}
