/**
 * Encoded Workload API stream answers, shared by every caller with the same selectors: a thousand
 * workloads of one identity starting together cost one lookup and one protobuf encoding, not a
 * thousand. An answer is only reused while the agent's cache is at the generation it was rendered
 * at (any entry, SVID or bundle change moves it) and none of its SVIDs has expired, so a caller
 * always gets exactly what rendering it afresh would give.
 */
import type { Selector, WorkloadCache } from '../manager/cache.js';

/** One encoded answer and what reusing it must still do. */
export interface CachedAnswer {
  /** The stream's change key: a stream writes only when it differs from the last one it sent. */
  readonly key: string;
  /**
   * The response message as rendered, until it is encoded (then only the bytes are kept): the
   * encoding is made when a stream first has to write the answer, not when a stream only checks
   * that its answer did not change.
   */
  message: object | undefined;
  /** The encoding, handed to grpc-js as is by every stream that writes this answer. */
  bytes: Buffer | undefined;
  /** Entries the answer was rendered from (an X509-SVID answer marks them used on every reuse). */
  readonly entryIds: readonly string[];
  /** Reusable only before this instant (epoch ms): the earliest notAfter among its SVIDs. */
  readonly validUntilMs: number;
}

/**
 * Distinct selector sets kept per stream method. Connected callers are at most
 * workload_api_max_connections, so this covers them in the common case; past it the oldest answer
 * is dropped and rendered again when asked (a cost, never a refusal).
 */
export const DEFAULT_RESPONSE_CACHE_ENTRIES = 1024;

/**
 * The caller's selectors as one string (attestation yields them in a fixed order for a given
 * process). Each part is length-prefixed, so no two different selector lists share a key: a
 * separator alone would not do, since values such as a program's path may contain any character,
 * and a crafted path must never make a caller's key equal to another caller's.
 */
export function selectorsKey(selectors: readonly Selector[]): string {
  let key = keysBySelectors.get(selectors);
  if (key !== undefined) return key;
  key = '';
  for (const s of selectors) key += `${s.type.length}:${s.type}${s.value.length}:${s.value}`;
  keysBySelectors.set(selectors, key);
  return key;
}

/**
 * Keys by selector list. The calls that share one attestation (a burst on one connection) share
 * its list, so its key is built once. Lists are never changed after attestation returns them.
 */
const keysBySelectors = new WeakMap<readonly Selector[], string>();

/** The answer's bytes, encoded on first use. */
export function encodedAnswer(answer: CachedAnswer, serialize: (message: object) => Buffer): Buffer {
  if (!answer.bytes) {
    answer.bytes = serialize(answer.message!);
    answer.message = undefined;
  }
  return answer.bytes;
}

export class ResponseCache {
  private readonly answers = new Map<string, CachedAnswer>();
  private generation = -1;

  constructor(
    private readonly cache: Pick<WorkloadCache, 'generation'>,
    private readonly maxEntries = DEFAULT_RESPONSE_CACHE_ENTRIES,
  ) {}

  get size(): number {
    return this.answers.size;
  }

  /** The answer for these selectors, if it is still exactly what rendering now would give. */
  get(callerKey: string, nowMs: number): CachedAnswer | undefined {
    this.sync();
    const hit = this.answers.get(callerKey);
    if (hit && nowMs < hit.validUntilMs) return hit;
    return undefined;
  }

  /** Keeps an answer rendered at the cache's current generation. */
  set(callerKey: string, answer: CachedAnswer): void {
    this.sync();
    this.answers.delete(callerKey);
    if (this.answers.size >= this.maxEntries) this.answers.delete(this.answers.keys().next().value!);
    this.answers.set(callerKey, answer);
  }

  /** Forgets every answer once the agent's cache has changed since they were rendered. */
  private sync(): void {
    if (this.cache.generation === this.generation) return;
    this.answers.clear();
    this.generation = this.cache.generation;
  }
}
