/**
 * What every source gets and provides. A source runs in the background (a poll loop on the
 * injected Clock, or a long-lived Workload API watch) and hands full snapshots to the state; it
 * never runs on the scrape path.
 */
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import type { ErrorReason } from '../names.js';
import type { SourceSnapshot } from '../state.js';

export interface SourceContext {
  readonly clock: Clock;
  readonly logger: Logger;
  /** The source's current view; marks it up. */
  observe(snapshot: SourceSnapshot): void;
  /** The poll or stream failed: the source is down until the next success. */
  fail(reason: ErrorReason, err: unknown): void;
  /** One item (a file) could not be used; the rest of the poll stands. */
  itemError(reason: ErrorReason, err: unknown): void;
}

export interface Source {
  readonly name: string;
  start(): void;
  stop(): Promise<void>;
}
