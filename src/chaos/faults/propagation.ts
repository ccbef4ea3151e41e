import { agentFamilies } from '../../common/telemetry/names.js';
import { waitFor } from '../proc.js';
import type { StackComponent } from '../stack.js';

const POLL_MS = 500;

/** The own-bundle sequence an agent serves, read from its /metrics; undefined when it does not answer. */
export async function agentBundleSequence(agent: StackComponent): Promise<number | undefined> {
  if (!agent.health) return undefined;
  const url = agent.health.replace(/\/ready$/, '/metrics');
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    if (!res.ok) return undefined;
    const name = agentFamilies.bundleSequence.name;
    for (const line of (await res.text()).split('\n')) {
      if (!line.startsWith(name)) continue;
      const m = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+(\\S+)`).exec(line);
      if (m) return Number(m[1]);
    }
  } catch {
    // Unreachable or partitioned from us as well: it counts as not (yet) holding the key.
  }
  return undefined;
}

export interface Propagation {
  /** Agents serving a bundle at least as new as the sequence waited for. */
  propagated: string[];
  /** Agents that did not within the bound (cut off, down, or slow). */
  lagging: string[];
  waitedMs: number;
}

/**
 * Waits until every agent serves bundle `sequence` or later (the bundle that first held a prepared
 * key), at most `timeoutMs`. Agents are asked directly rather than through Prometheus, whose
 * scrape interval would add up to a scrape's worth of delay to every rotation.
 */
export async function waitForBundle(agents: readonly StackComponent[], sequence: number, timeoutMs: number): Promise<Propagation> {
  const start = Date.now();
  const done = new Set<string>();
  await waitFor(async () => {
    await Promise.all(agents.filter((a) => !done.has(a.name)).map(async (a) => {
      const seq = await agentBundleSequence(a);
      if (seq !== undefined && seq >= sequence) done.add(a.name);
    }));
    return done.size === agents.length;
  }, timeoutMs, POLL_MS);
  return {
    propagated: agents.filter((a) => done.has(a.name)).map((a) => a.name),
    lagging: agents.filter((a) => !done.has(a.name)).map((a) => a.name),
    waitedMs: Date.now() - start,
  };
}
