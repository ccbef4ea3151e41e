import type { AuthorizableEntry } from './authorized.js';

/**
 * Entries indexed by parent ID, maintained one change at a time from the entry change feed, so an
 * agent's authorized set costs O(node aliases + the entries it reaches) instead of a copy and a
 * by-parent map of every entry on every agent RPC. Gives the same set as `authorizedEntries`
 * (property-tested against it): expired entries are skipped at query time, so expiry needs no
 * event of its own.
 */
export class AuthorizationIndex<E extends AuthorizableEntry> {
  private readonly byId = new Map<string, E>();
  private readonly byParent = new Map<string, Map<string, E>>();
  /**
   * Entries by their own SPIFFE ID: the upward walk (which agents reach an entry) follows parents
   * through it. Nearly every SPIFFE ID has one entry, so that entry is the value itself and a Map
   * appears only for a shared ID: a Map per entry was ≈ 200 B, 20 MiB of heap at 100,000 entries.
   */
  private readonly bySpiffeId = new Map<string, E | Map<string, E>>();

  constructor(private readonly serverId: string) {}

  /** Index sizes (the authorization index gauge): entries, distinct parent IDs, node aliases. */
  sizes(): { entries: number; parents: number; aliases: number } {
    return { entries: this.byId.size, parents: this.byParent.size, aliases: this.byParent.get(this.serverId)?.size ?? 0 };
  }

  get size(): number {
    return this.byId.size;
  }

  clear(): void {
    this.byId.clear();
    this.byParent.clear();
    this.bySpiffeId.clear();
  }

  upsert(entry: E): void {
    const old = this.byId.get(entry.id);
    if (old) this.unlink(old);
    this.byId.set(entry.id, entry);
    link(this.byParent, entry.parentId, entry);
    linkOne(this.bySpiffeId, entry.spiffeId, entry);
  }

  delete(id: string): void {
    const old = this.byId.get(id);
    if (!old) return;
    this.byId.delete(id);
    this.unlink(old);
  }

  private unlink(entry: E): void {
    unlink(this.byParent, entry.parentId, entry.id);
    unlinkOne(this.bySpiffeId, entry.spiffeId, entry.id);
  }

  /**
   * Who may be authorized for `entry` through the current graph: the IDs its ancestors hang from
   * (agent IDs among them) and the node aliases on the way up. The change notifier tells exactly
   * these agents, plus those matching the aliases' selectors. Costs O(the entry's ancestors).
   * Expiry is ignored: an expired ancestor still names who held the entry until it expired.
   */
  reachedFrom(entry: E): { parentIds: Set<string>; aliases: E[] } {
    const parentIds = new Set<string>();
    const aliases: E[] = [];
    const seen = new Set<string>([entry.id]);
    const stack = [entry];
    while (stack.length > 0) {
      const e = stack.pop()!;
      if (e.parentId === this.serverId) {
        aliases.push(e);
        continue;
      }
      if (parentIds.has(e.parentId)) continue;
      parentIds.add(e.parentId);
      for (const up of membersOf(this.bySpiffeId.get(e.parentId))) {
        if (seen.has(up.id)) continue;
        seen.add(up.id);
        stack.push(up);
      }
    }
    return { parentIds, aliases };
  }

  /** The entries the agent may obtain SVIDs for, at `nowMs`. */
  authorized(agentId: string, nodeSelectors: readonly { type: string; value: string }[], nowMs: number): E[] {
    const live = (e: E): boolean => !e.expiresAt || e.expiresAt.getTime() > nowMs;
    const roots = [agentId];
    const aliases = this.byParent.get(this.serverId);
    if (aliases) {
      const nodeSet = new Set(nodeSelectors.map((s) => `${s.type}:${s.value}`));
      for (const alias of aliases.values()) {
        if (live(alias) && alias.selectors.every((s) => nodeSet.has(`${s.type}:${s.value}`))) roots.push(alias.spiffeId);
      }
    }
    // The common shape: no node alias applies and the agent's entries have no children of their
    // own (workloads under an agent). Then the answer is its live children, and the walk's sets
    // (allocated on every sync of every agent) are not needed; any deeper graph takes the walk.
    if (roots.length === 1) {
      const children = this.byParent.get(agentId);
      if (!children) return [];
      let flat = true;
      for (const child of children.values()) {
        if (this.byParent.has(child.spiffeId)) {
          flat = false;
          break;
        }
      }
      if (flat) {
        const out: E[] = [];
        for (const child of children.values()) if (live(child)) out.push(child);
        return out;
      }
    }
    const included = new Map<string, E>();
    const visited = new Set<string>();
    // An index pointer instead of shift(): shift is O(n) per call on long queues.
    for (let i = 0; i < roots.length; i++) {
      const parent = roots[i]!;
      if (visited.has(parent)) continue;
      visited.add(parent);
      for (const child of this.byParent.get(parent)?.values() ?? []) {
        if (included.has(child.id) || !live(child)) continue;
        included.set(child.id, child);
        roots.push(child.spiffeId);
      }
    }
    return [...included.values()];
  }
}

function link<E extends { id: string }>(map: Map<string, Map<string, E>>, key: string, entry: E): void {
  let group = map.get(key);
  if (!group) {
    group = new Map();
    map.set(key, group);
  }
  group.set(entry.id, entry);
}

function unlink<E>(map: Map<string, Map<string, E>>, key: string, id: string): void {
  const group = map.get(key);
  if (!group) return;
  group.delete(id);
  if (group.size === 0) map.delete(key);
}

/** `link` for a map whose groups are mostly of one: a lone entry is stored as itself. */
function linkOne<E extends { id: string }>(map: Map<string, E | Map<string, E>>, key: string, entry: E): void {
  const present = map.get(key);
  if (present === undefined || (!(present instanceof Map) && present.id === entry.id)) map.set(key, entry);
  else if (present instanceof Map) present.set(entry.id, entry);
  else map.set(key, new Map([[present.id, present], [entry.id, entry]]));
}

function unlinkOne<E extends { id: string }>(map: Map<string, E | Map<string, E>>, key: string, id: string): void {
  const present = map.get(key);
  if (present === undefined) return;
  if (!(present instanceof Map)) {
    if (present.id === id) map.delete(key);
    return;
  }
  present.delete(id);
  // Back to a lone entry when one is left, so a group that shrank costs what a single one does.
  if (present.size === 1) map.set(key, present.values().next().value!);
  else if (present.size === 0) map.delete(key);
}

function membersOf<E>(group: E | Map<string, E> | undefined): Iterable<E> {
  if (group === undefined) return [];
  return group instanceof Map ? group.values() : [group];
}
