import TinyQueue from 'tinyqueue';
import type { Clock, TimerHandle } from '../../../common/clock.js';
import { SvidscopeError, type ErrorCode } from '../../../common/errors/catalog.js';
import type { Logger } from '../../../common/log.js';
import type { ChangeNotificationMsg } from '../../server-api/messages.js';
import type { RegistrationEntry } from '../datastore/types.js';
import type { AuthorizationIndex } from '../registration/authorized-index.js';
import type { EntryChangeObserver } from '../registration/entry-cache.js';

/** Default of `watch_max_streams`: one stream per agent of a 10,000-agent fleet, twice over. */
export const DEFAULT_WATCH_MAX_STREAMS = 20_000;
/** Notifications written to one stream and not yet flushed to its connection; one more drops the stream. */
export const WATCH_SEND_BUFFER = 16;
/** Streams one agent may hold at once (an agent needs one; a few cover reconnects that overlap). */
export const WATCH_MAX_STREAMS_PER_AGENT = 4;

/**
 * A bundle change concerns every agent, and each answers it with a GetBundles. The server sends the
 * notification to its streams paced over this much per stream it holds (10,000 streams: 30 s), a
 * slice every BUNDLE_PACE_TICK_MS, never over less than BUNDLE_SPREAD_MIN_MS nor more than
 * BUNDLE_SPREAD_MAX_MS. Written to all streams at once (even in slices per turn of the event
 * loop), the notifications were a burst at both ends: the fleet bench measured syncs waiting
 * ≈ 270 ms (p50) in the two seconds after a CA rotation while 5,000 notifications per simulator
 * process were decoded, against 2.4 ms otherwise. At 2 ms per stream (20 s) of agent-side spread
 * it had measured sync p99 1.2 s while the spread lasted.
 */
export const BUNDLE_SPREAD_PER_STREAM_MS = 3;
export const BUNDLE_SPREAD_MIN_MS = 1000;
export const BUNDLE_SPREAD_MAX_MS = 60_000;
export const BUNDLE_PACE_TICK_MS = 100;
/**
 * The spread a paced bundle notification asks of the agent (`spread_ms`): a second of jitter on
 * receipt, since the server has spread the fleet already (an older agent waits up to this anyway).
 */
export const BUNDLE_AGENT_SPREAD_MS = 1000;

/** Streams a broadcast writes to in one turn of the event loop. */
export const BROADCAST_SLICE = 500;

/** Why a stream was closed by the server (bounded label values). */
export type WatchDropReason = 'slow_consumer' | 'not_attested' | 'banned' | 'stale_serial' | 'svid_expired' | 'shutdown';

/** The transport side of one watch stream (the gRPC call in production, a fake in unit tests). */
export interface NotificationSink {
  /** Writes one notification; `flushed` runs once it has left for the connection. */
  send(msg: ChangeNotificationMsg, flushed: () => void): void;
  /** Ends the stream with the error's status and code. */
  close(err: SvidscopeError): void;
}

export interface WatchRegistration {
  agentId: string;
  /** The agent's node selectors (node aliases match on these). */
  selectors: readonly { type: string; value: string }[];
  /** notAfter of the agent SVID the stream was opened with (epoch ms): past it the stream is closed. */
  svidNotAfterMs: number;
  /** Checks the caller again against the agent view (banned, evicted, SVID replaced); an error closes the stream with it. */
  recheck(): SvidscopeError | undefined;
  /**
   * When recheck's answer could change with time alone, the agent view unchanged (epoch ms;
   * Infinity: never): the end of the renewal grace the stream's SVID is accepted under.
   */
  recheckAt(): number;
  sink: NotificationSink;
}

/** Telemetry hooks; the notifier knows nothing of metrics libraries. */
export interface ChangeNotifierEvents {
  /** Notifications written, by what changed. */
  notified?(reason: 'entries' | 'bundle', streams: number): void;
  /** A stream the server closed, by reason. */
  dropped?(reason: WatchDropReason): void;
  /** A stream refused by a limit (its config key). */
  limitHit?(limit: string): void;
}

export interface ChangeNotifierOptions {
  clock: Clock;
  logger: Logger;
  maxStreams?: number;
  sendBuffer?: number;
  events?: ChangeNotifierEvents;
}

interface Watch extends WatchRegistration {
  selectorKeys: Set<string>;
  /** Writes not flushed yet. */
  outstanding: number;
  closed: boolean;
  /** The next time this stream must be checked again with nothing else changed (epoch ms). */
  dueMs: number;
}

/** One entry of the due queue; stale once the watch closed or its dueMs moved. */
interface Due {
  dueMs: number;
  watch: Watch;
}
const byDue = (a: Due, b: Due) => a.dueMs - b.dueMs;

const DROP_REASON: Partial<Record<ErrorCode, WatchDropReason>> = {
  'agent-not-attested': 'not_attested',
  'agent-banned': 'banned',
  'agent-svid-stale': 'stale_serial',
};

const selectorKey = (s: { type: string; value: string }) => `${s.type}:${s.value}`;

/**
 * The push side of the agent API: the open WatchChanges streams, by agent and by node selector,
 * and who to tell when something changes. An entry change reaches the agents that could hold the
 * entry before or after it (the agent IDs its ancestors hang from, and agents whose selectors
 * match a node alias on the way up), found by walking up the authorization index: O(the entry's
 * ancestors + the matching agents), never the fleet. Bundle and taint changes reach every stream.
 * A notification only says "sync now"; the agent's incremental sync fetches what changed, so a
 * lost or coalesced notification costs nothing but latency, and polling stays the safety net.
 */
export class ChangeNotifier implements EntryChangeObserver {
  private readonly byAgent = new Map<string, Set<Watch>>();
  private readonly bySelector = new Map<string, Set<Watch>>();
  private count = 0;
  private readonly maxStreams: number;
  private readonly sendBuffer: number;
  private readonly events: ChangeNotifierEvents;
  /** Affected by the pull in progress (EntryChangeObserver), sent at done(). */
  private pendingAgents = new Set<string>();
  private pendingAliases: RegistrationEntry[] = [];
  private pendingAll = false;
  /**
   * Streams by the time they must be checked again (their SVID's notAfter, or the end of the
   * renewal grace it is accepted under): the periodic tick checks only those that came due, where
   * checking all 10,000 streams of a fleet every tick held the event loop ≈ 75 ms every 5 s.
   */
  private due = new TinyQueue<Due>([], byDue);
  private bundleState: (() => Promise<Buffer>) | undefined;
  /** The timer of a bundle notification being paced out to the streams. */
  private pacing: TimerHandle | undefined;

  constructor(private readonly opts: ChangeNotifierOptions) {
    this.maxStreams = opts.maxStreams ?? DEFAULT_WATCH_MAX_STREAMS;
    this.sendBuffer = opts.sendBuffer ?? WATCH_SEND_BUFFER;
    this.events = opts.events ?? {};
  }

  /** Open watch streams. */
  get streamCount(): number {
    return this.count;
  }

  /**
   * Registers a stream and sends its first message. Refused (RESOURCE_EXHAUSTED) past
   * `watch_max_streams`, or past the per-agent bound. Returns the function that unregisters it
   * (the stream ended or was cancelled by the agent).
   */
  open(reg: WatchRegistration): () => void {
    if (this.count >= this.maxStreams) {
      this.events.limitHit?.('watch_max_streams');
      throw new SvidscopeError('watch-streams-exhausted', `the server holds watch_max_streams (${this.maxStreams}) change streams; the agent keeps polling`);
    }
    const mine = this.byAgent.get(reg.agentId);
    if ((mine?.size ?? 0) >= WATCH_MAX_STREAMS_PER_AGENT) {
      this.events.limitHit?.('watch_max_streams_per_agent');
      throw new SvidscopeError('watch-streams-exhausted', `agent ${reg.agentId} holds ${WATCH_MAX_STREAMS_PER_AGENT} change streams already`);
    }
    const w: Watch = { ...reg, selectorKeys: new Set(reg.selectors.map(selectorKey)), outstanding: 0, closed: false, dueMs: Infinity };
    add(this.byAgent, reg.agentId, w);
    for (const k of w.selectorKeys) add(this.bySelector, k, w);
    this.count++;
    this.schedule(w);
    this.send(w, { entries: false, bundle: false, initial: true });
    return () => this.remove(w);
  }

  // ---- EntryChangeObserver: fed by EntryCache as it applies the change feed

  touched(entry: RegistrationEntry, index: AuthorizationIndex<RegistrationEntry>): void {
    if (this.count === 0 || this.pendingAll) return;
    const { parentIds, aliases } = index.reachedFrom(entry);
    for (const id of parentIds) if (this.byAgent.has(id)) this.pendingAgents.add(id);
    for (const a of aliases) this.pendingAliases.push(a);
  }

  reset(): void {
    this.pendingAll = true;
  }

  done(): void {
    const all = this.pendingAll;
    const agents = this.pendingAgents;
    const aliases = this.pendingAliases;
    this.pendingAll = false;
    this.pendingAgents = new Set();
    this.pendingAliases = [];
    if (this.count === 0) return;
    if (all) {
      this.broadcast({ entries: true, bundle: false, initial: false });
      return;
    }
    const targets = new Set<Watch>();
    for (const id of agents) for (const w of this.byAgent.get(id) ?? []) targets.add(w);
    for (const alias of aliases) for (const w of this.matching(alias.selectors)) targets.add(w);
    if (targets.size === 0) return;
    for (const w of targets) this.send(w, { entries: true, bundle: false, initial: false });
    this.events.notified?.('entries', targets.size);
  }

  /**
   * Where the notification's bundle state comes from (the node service's bundle view): with it,
   * agents answer a bundle change with GetBundles alone, not an entry sync as well, which halves
   * the calls a fleet makes while the change spreads.
   */
  useBundleState(state: () => Promise<Buffer>): void {
    this.bundleState = state;
  }

  /** The trust bundle or the tainted authorities changed: every agent fetches bundles. */
  bundleChanged(): void {
    if (this.count === 0) return;
    const send = (bundle_state?: Buffer) => this.paceBundleNotification({ entries: false, bundle: true, initial: false, spread_ms: BUNDLE_AGENT_SPREAD_MS, bundle_state });
    if (!this.bundleState) return send();
    // Without a state (it could not be read) agents sync in full, as with an older server.
    this.bundleState().then(send, (err: unknown) => {
      this.opts.logger.warn({ err }, 'could not read the bundle state for a bundle notification; agents will sync in full');
      send();
    });
  }

  /**
   * Checks the streams of these agents (all, on a full reload) against the agent view: a banned or
   * evicted agent's stream, or one opened with an SVID a renewal replaced (past its grace), is
   * closed with the refusal's code. Called on agent-feed changes.
   */
  reauthenticate(agentIds: readonly string[] | 'all'): void {
    const now = this.opts.clock.nowMs();
    const watches = agentIds === 'all' ? this.allWatches() : agentIds.flatMap((id) => [...(this.byAgent.get(id) ?? [])]);
    for (const w of watches) this.check(w, now);
  }

  /**
   * Checks the streams whose time came (an SVID past its notAfter, a renewal grace ended): called
   * on the server's periodic tick, since these end without a feed change. O(streams due).
   */
  checkDue(): void {
    const now = this.opts.clock.nowMs();
    for (let top = this.due.peek(); top && top.dueMs <= now; top = this.due.peek()) {
      this.due.pop();
      if (!top.watch.closed && top.watch.dueMs === top.dueMs) this.check(top.watch, now);
    }
  }

  /** Streams waiting in the due queue, live or stale (for tests of its bound). */
  get dueQueueLength(): number {
    return this.due.length;
  }

  /** Closes every stream (server shutdown); agents reconnect elsewhere or later. */
  closeAll(): void {
    this.stopPacing();
    for (const w of this.allWatches()) this.drop(w, 'shutdown', new SvidscopeError('unavailable', 'the server is shutting down'));
  }

  private matching(selectors: readonly { type: string; value: string }[]): Iterable<Watch> {
    if (selectors.length === 0) return this.allWatches();
    // Candidates from the rarest selector, then the subset check on each.
    let smallest: Set<Watch> | undefined;
    for (const s of selectors) {
      const set = this.bySelector.get(selectorKey(s));
      if (!set) return [];
      if (!smallest || set.size < smallest.size) smallest = set;
    }
    return [...smallest!].filter((w) => selectors.every((s) => w.selectorKeys.has(selectorKey(s))));
  }

  private check(w: Watch, now: number): void {
    if (w.closed) return;
    const err = w.recheck();
    if (err) {
      this.drop(w, DROP_REASON[err.code] ?? 'not_attested', err);
    } else if (now >= w.svidNotAfterMs) {
      this.drop(w, 'svid_expired', new SvidscopeError('agent-svid-stale', `the agent SVID ${w.agentId} opened this stream with has expired; reconnect with the current one`));
    } else {
      this.schedule(w);
    }
  }

  /**
   * Queues the stream for its next due time, when that moved. A stale entry stays until it comes
   * due or the queue is rebuilt; the rebuild, when stale entries outnumber live streams, keeps the
   * queue within a small multiple of the streams held.
   */
  private schedule(w: Watch): void {
    const dueMs = Math.min(w.svidNotAfterMs, w.recheckAt());
    if (dueMs === w.dueMs) return;
    w.dueMs = dueMs;
    if (!Number.isFinite(dueMs)) return;
    this.due.push({ dueMs, watch: w });
    if (this.due.length > 2 * this.count + 1024) {
      this.due = new TinyQueue(this.allWatches().filter((x) => Number.isFinite(x.dueMs)).map((x) => ({ dueMs: x.dueMs, watch: x })), byDue);
    }
  }

  private allWatches(): Watch[] {
    const out: Watch[] = [];
    for (const set of this.byAgent.values()) for (const w of set) out.push(w);
    return out;
  }

  /**
   * Tells every stream of an entry change (a full reload), BROADCAST_SLICE of them per turn of the
   * event loop: writing to all of a 10,000-agent fleet's streams at once is one long turn that
   * every call arriving meanwhile waits behind. A stream closed before its turn is skipped.
   */
  private broadcast(msg: ChangeNotificationMsg): void {
    const all = this.allWatches();
    this.events.notified?.('entries', all.length);
    const sendFrom = (at: number) => {
      const end = Math.min(all.length, at + BROADCAST_SLICE);
      for (let i = at; i < end; i++) this.send(all[i], msg);
      if (end < all.length) setImmediate(() => sendFrom(end));
    };
    sendFrom(0);
  }

  /**
   * Sends a bundle notification to every stream, paced (see BUNDLE_SPREAD_PER_STREAM_MS). A newer
   * bundle change restarts the pacing with its own message; a stream opened meanwhile needs none
   * (its first message brings the agent to sync).
   */
  private paceBundleNotification(msg: ChangeNotificationMsg): void {
    this.stopPacing();
    const all = this.allWatches();
    this.events.notified?.('bundle', all.length);
    const spreadMs = Math.min(BUNDLE_SPREAD_MAX_MS, Math.max(BUNDLE_SPREAD_MIN_MS, all.length * BUNDLE_SPREAD_PER_STREAM_MS));
    const perTick = Math.ceil(all.length / Math.ceil(spreadMs / BUNDLE_PACE_TICK_MS));
    let next = 0;
    const tick = () => {
      const end = Math.min(all.length, next + perTick);
      for (; next < end; next++) this.send(all[next], msg);
      this.pacing = next < all.length ? this.opts.clock.setTimeout(tick, BUNDLE_PACE_TICK_MS) : undefined;
    };
    tick();
  }

  private stopPacing(): void {
    if (this.pacing) this.opts.clock.clearTimeout(this.pacing);
    this.pacing = undefined;
  }

  private send(w: Watch, msg: ChangeNotificationMsg): void {
    if (w.closed) return;
    // A connection that does not take what was written (a stalled or hostile peer) would make the
    // server buffer every later notification: past the bound the stream goes, and the agent polls.
    if (w.outstanding >= this.sendBuffer) {
      this.drop(w, 'slow_consumer', new SvidscopeError('watch-slow-consumer', `the agent did not read ${this.sendBuffer} change notifications; stream closed, reconnect`));
      return;
    }
    w.outstanding++;
    w.sink.send(msg, () => {
      w.outstanding--;
    });
  }

  private drop(w: Watch, reason: WatchDropReason, err: SvidscopeError): void {
    if (w.closed) return;
    this.remove(w);
    this.events.dropped?.(reason);
    this.opts.logger.debug({ agentId: w.agentId, reason }, 'closed a change stream');
    w.sink.close(err);
  }

  private remove(w: Watch): void {
    if (w.closed) return;
    w.closed = true;
    this.count--;
    del(this.byAgent, w.agentId, w);
    for (const k of w.selectorKeys) del(this.bySelector, k, w);
  }
}

function add<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  let set = map.get(key);
  if (!set) {
    set = new Set();
    map.set(key, set);
  }
  set.add(value);
}

function del<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}
