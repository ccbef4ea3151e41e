/**
 * Which registration entries an agent may obtain SVIDs for: the entries whose parent is the agent,
 * the node-alias entries (parent = the server's ID) whose selectors the agent's node selectors
 * cover, and, recursively, the children of every entry already included (nested parents).
 */
export interface AuthorizableEntry {
  id: string;
  spiffeId: string;
  parentId: string;
  selectors: readonly { type: string; value: string }[];
  expiresAt: Date | null;
}

export function authorizedEntries<E extends AuthorizableEntry>(
  agentId: string,
  nodeSelectors: readonly { type: string; value: string }[],
  serverId: string,
  entries: readonly E[],
  nowMs: number,
): E[] {
  const byParent = new Map<string, E[]>();
  for (const e of entries) {
    if (e.expiresAt && e.expiresAt.getTime() <= nowMs) continue;
    const list = byParent.get(e.parentId);
    if (list) list.push(e);
    else byParent.set(e.parentId, [e]);
  }
  const nodeSet = new Set(nodeSelectors.map((s) => `${s.type}:${s.value}`));
  const roots = [agentId];
  for (const alias of byParent.get(serverId) ?? []) {
    if (alias.selectors.every((s) => nodeSet.has(`${s.type}:${s.value}`))) roots.push(alias.spiffeId);
  }
  const included = new Map<string, E>();
  const visited = new Set<string>();
  const queue = [...roots];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    if (visited.has(parent)) continue;
    visited.add(parent);
    for (const child of byParent.get(parent) ?? []) {
      if (included.has(child.id)) continue;
      included.set(child.id, child);
      queue.push(child.spiffeId);
    }
  }
  return [...included.values()];
}
