import { SvidscopeError } from '../../common/errors/catalog.js';
import { agentFamilies } from '../../common/telemetry/names.js';
import { waitFor } from '../proc.js';
import type { StackComponent } from '../stack.js';

const POLL_MS = 500;

/** The own-bundle sequence an agent serves, read from its /metrics; undefined when it does not answer. */
export async function agentBundleSequence(agent: StackComponent): Promise<number | undefined> {
  try {
    return sampleValues(await scrapeComponent(agent, 2_000), agentFamilies.bundleSequence.name)[0];
  } catch {
    // Unreachable or partitioned from us as well: it counts as not (yet) holding the key.
    return undefined;
  }
}

/** The sequence of `trustDomain`'s bundle an agent serves as a federated bundle; undefined when it does not answer or serve one. */
export async function agentFederatedSequence(agent: StackComponent, trustDomain: string): Promise<number | undefined> {
  try {
    return sampleValues(await scrapeComponent(agent, 2_000), agentFamilies.federatedBundleSequence.name, { trust_domain: trustDomain })[0];
  } catch {
    return undefined;
  }
}

/** The text exposition of a server's or agent's /metrics (served beside /ready on its ops address). */
export async function scrapeComponent(c: StackComponent, timeoutMs = 5_000): Promise<string> {
  if (!c.health) throw new SvidscopeError('chaos-target-invalid', `chaos: ${c.name} has no ops address in endpoints.json`);
  const url = c.health.replace(/\/ready$/, '/metrics');
  const res = await fetch(url, { headers: { accept: 'text/plain; version=0.0.4' }, signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new SvidscopeError('unavailable', `${url}: HTTP ${res.status}`);
  return res.text();
}

/**
 * Values of the samples of `name` whose labels include `match` (text exposition format). Label
 * values in our metrics never contain `"` or `,`, which keeps this a plain split.
 */
export function sampleValues(text: string, name: string, match: Record<string, string> = {}): number[] {
  const values: number[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    const close = line.lastIndexOf('}');
    const labelText = line[name.length] === '{' ? line.slice(name.length + 1, close) : '';
    const labels = Object.fromEntries(labelText.split(',').filter(Boolean).map((kv) => {
      const eq = kv.indexOf('=');
      return [kv.slice(0, eq), kv.slice(eq + 2, -1)];
    }));
    if (!Object.entries(match).every(([k, v]) => labels[k] === v)) continue;
    values.push(Number(line.slice((close >= 0 ? close : name.length) + 1).trim().split(' ')[0]));
  }
  return values;
}

/** Sum of the matching samples; absent series sum to 0. */
export function sampleSum(text: string, name: string, match: Record<string, string> = {}): number {
  return sampleValues(text, name, match).reduce((a, b) => a + b, 0);
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
