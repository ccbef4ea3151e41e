import { createHash } from 'node:crypto';

/**
 * The incremental entry sync, both ends. The agent describes its view as (entry id, revision)
 * pairs; the server answers the entries that are new or at another revision, and the ids the agent
 * holds that are no longer authorized. The pairs make the delta exact without the server keeping
 * any per-agent history (a reparented ancestor or a node alias that starts matching brings entries
 * with old revisions, which "changed since revision N" would miss), and cost O(the agent's entries)
 * on both sides. The digest of the resulting set lets the agent check what it holds afterwards.
 */
export interface EntryRevisionPair {
  id: string;
  /** Decimal string (proto int64 as proto-loader gives it). */
  revision: string;
}

/** SHA-256 over the set's (id, revision) pairs in id order: equal sets give equal digests, whatever their order. */
export function entrySetDigest(pairs: Iterable<EntryRevisionPair>): Buffer {
  const sorted = [...pairs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const h = createHash('sha256');
  // NUL and newline cannot occur in an entry id (validated UUID-like ids), so the framing is unambiguous.
  for (const p of sorted) h.update(`${p.id}\0${p.revision}\n`);
  return h.digest();
}

export interface EntryDelta<E> {
  /** Authorized entries the agent lacks or holds at another revision. */
  changed: E[];
  /** Ids the agent holds that are not authorized now. */
  deletedIds: string[];
}

/** What an agent holding `known` needs to hold `authorized`. */
export function entryDelta<E>(authorized: readonly E[], pairOf: (e: E) => EntryRevisionPair, known: readonly EntryRevisionPair[]): EntryDelta<E> {
  const held = new Map<string, string>();
  for (const k of known) held.set(k.id, String(k.revision));
  const changed: E[] = [];
  for (const e of authorized) {
    const p = pairOf(e);
    const rev = held.get(p.id);
    if (rev !== p.revision) changed.push(e);
    held.delete(p.id);
  }
  return { changed, deletedIds: [...held.keys()] };
}
