/**
 * The per-agent-RPC cost of an agent's authorized entry set: the full computation over every
 * entry (`authorizedEntries(…, entries.all(), …)`, what each agent RPC did before) against the
 * incrementally maintained by-parent index (`AuthorizationIndex`, what it does now).
 *
 * Fleet shapes: 1,000 agents × 10 entries (10,000), 1,000 × 100 and 10,000 × 10 (100,000), plus
 * 20 node aliases with 5 children each so the alias scan and nested parents are exercised. Each
 * call takes a different agent, round-robin, as agent RPCs would. Synchronous, on one core.
 */
import { authorizedEntries, type AuthorizableEntry } from '../src/identity-plane/server/registration/authorized.js';
import { AuthorizationIndex } from '../src/identity-plane/server/registration/authorized-index.js';
import { serverSpiffeIdString } from '../src/identity-plane/server-api/server-id.js';
import type { BenchContext, BenchFigures } from './run.js';

const SERVER = serverSpiffeIdString('example.org');
const agentId = (a: number): string => `spiffe://example.org/spire/agent/join_token/a${a}`;

function fleet(agents: number, perAgent: number): AuthorizableEntry[] {
  const out: AuthorizableEntry[] = [];
  for (let n = 0; n < 20; n++) {
    const alias = `spiffe://example.org/node/group${n}`;
    out.push({ id: `alias${n}`, spiffeId: alias, parentId: SERVER, selectors: [{ type: 'group', value: String(n) }], expiresAt: null });
    for (let c = 0; c < 5; c++) out.push({ id: `alias${n}-${c}`, spiffeId: `spiffe://example.org/shared/${n}/${c}`, parentId: alias, selectors: [{ type: 'unix', value: `uid:${c}` }], expiresAt: null });
  }
  for (let a = 0; a < agents; a++) {
    for (let e = 0; e < perAgent; e++) {
      out.push({ id: `e${a}-${e}`, spiffeId: `spiffe://example.org/w/${a}/${e}`, parentId: agentId(a), selectors: [{ type: 'unix', value: `uid:${e}` }], expiresAt: null });
    }
  }
  return out;
}

/** Mean milliseconds per call of `fn(agentIndex)` over at least `seconds`. */
function msPerCall(agents: number, seconds: number, fn: (a: number) => unknown): number {
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  let calls = 0;
  let now = start;
  while (now < deadline) {
    fn(calls % agents);
    calls++;
    now = process.hrtime.bigint();
  }
  return Number(now - start) / 1e6 / calls;
}

export default async function run(ctx: BenchContext): Promise<BenchFigures> {
  const figures: BenchFigures = {};
  const now = Date.now();
  for (const [agents, perAgent] of [
    [1000, 10],
    [1000, 100],
    [10000, 10],
  ] as const) {
    const entries = fleet(agents, perAgent);
    const index = new AuthorizationIndex<AuthorizableEntry>(SERVER);
    for (const e of entries) index.upsert(e);
    const selectorsOf = (a: number) => [{ type: 'group', value: String(a % 20) }];
    // Sanity: both give the same set, so the timing compares like with like.
    const full = authorizedEntries(agentId(7), selectorsOf(7), SERVER, entries, now).length;
    const indexed = index.authorized(agentId(7), selectorsOf(7), now).length;
    if (full !== indexed || full !== perAgent + 5) throw new Error(`sets differ: full ${full}, index ${indexed}`);
    // The old path copied the cache's values first (`entries.all()`), so the copy is timed too.
    const map = new Map(entries.map((e) => [e.id, e]));
    const before = msPerCall(agents, 2, (a) => authorizedEntries(agentId(a), selectorsOf(a), SERVER, [...map.values()], now));
    const after = msPerCall(agents, 2, (a) => index.authorized(agentId(a), selectorsOf(a), now));
    const key = `${agents}x${perAgent}`;
    figures[`${key}_full_ms`] = Number(before.toFixed(4));
    figures[`${key}_index_ms`] = Number(after.toFixed(4));
    ctx.log(`${agents} agents × ${perAgent} (${entries.length} entries): full ${before.toFixed(3)} ms/call, index ${(after * 1000).toFixed(1)} µs/call (${Math.round(before / after)}×)`);
  }
  return figures;
}
