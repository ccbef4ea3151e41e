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

  constructor(private readonly serverId: string) {}

  get size(): number {
    return this.byId.size;
  }

  clear(): void {
    this.byId.clear();
    this.byParent.clear();
  }

  upsert(entry: E): void {
    const old = this.byId.get(entry.id);
    if (old && old.parentId !== entry.parentId) this.unlink(old);
    this.byId.set(entry.id, entry);
    let children = this.byParent.get(entry.parentId);
    if (!children) {
      children = new Map();
      this.byParent.set(entry.parentId, children);
    }
    children.set(entry.id, entry);
  }

  delete(id: string): void {
    const old = this.byId.get(id);
    if (!old) return;
    this.byId.delete(id);
    this.unlink(old);
  }

  private unlink(entry: E): void {
    const children = this.byParent.get(entry.parentId);
    if (!children) return;
    children.delete(entry.id);
    if (children.size === 0) this.byParent.delete(entry.parentId);
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
