// The game-day rotation is the key-compromise procedure: prepare, wait until the agents serve the
// bundle that holds the new key, then activate; an agent that never catches up bounds the wait
// (propagation_timeout) instead of stalling the run. Real server; the agents are stand-ins that
// serve /metrics with the bundle sequence the test decides, so the wait is observed exactly.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseExperimentText, planExperiment } from '../../src/chaos/index.js';
import { systemClock } from '../../src/common/clock.js';
import { faultImpl } from '../../src/chaos/faults/index.js';
import type { EndpointsFile, StackComponent, StackView } from '../../src/chaos/stack.js';
import { removeDir, startTestServer, type TestServer } from '../support/server.js';
import { problems } from './support.js';

const steps = (method: string) => parseExperimentText(`title: t\ndescription: d\nsteady-state-hypothesis: { probes: [] }\nblast-radius: { servers: [server] }\nmethod:\n${method}`, 't');

/** A stand-in agent: /ready and /metrics, with the bundle sequence it reports set by the test. */
async function fakeAgent(onScrape?: () => Promise<void>): Promise<{ sequence: number; url: string; server: Server }> {
  const state = { sequence: 0, url: '', server: undefined as unknown as Server };
  state.server = createServer((req, res) => {
    void (async () => {
      await onScrape?.();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(req.url === '/metrics' ? `# TYPE svidscope_agent_bundle_sequence gauge\nsvidscope_agent_bundle_sequence ${state.sequence}\n` : 'ok');
    })();
  });
  await new Promise<void>((r) => state.server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}`;
  return state;
}

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
}, 30_000);
afterAll(async () => {
  await t?.stop();
  if (t) removeDir(t.dir);
});

type Slots = { slots: { kind: string; phase: string; key_id: string }[] };
const phases = async (kind: string) => (await t.admin.call<Slots>('CaStatus', {})).slots.filter((s) => s.kind === kind);
const sequence = async () => Number((await t.admin.call<{ sequence_number: string }>('GetBundle', {})).sequence_number);

function stackWith(agents: { name: string; url: string; trustDomain?: string }[]): StackView {
  const components: StackComponent[] = [
    { name: 'server', kind: 'server', adminSocket: t.server.adminSocket, serverAddress: t.server.address, trustDomain: 'example.org' },
    ...agents.map((a) => ({ name: a.name, kind: 'agent' as const, health: `${a.url}/ready`, trustDomain: a.trustDomain ?? 'example.org' })),
  ];
  return { dataDir: t.dir, endpoints: { dataDir: t.dir, trustDomain: 'example.org' } as EndpointsFile, components: new Map(components.map((c) => [c.name, c])) };
}

describe('ca-rotate: prepare → propagation → activate', () => {
  it('validates propagation_timeout (default 30s) and plans the three steps', () => {
    const e = steps('  - { name: r, fault: ca-rotate, duration: 1s }\n  - { name: j, fault: ca-rotate, kind: jwt, propagation_timeout: 5s, duration: 1s }\n');
    expect(e.method.map((m) => m.fault === 'ca-rotate' && m.propagationTimeoutMs)).toEqual([30_000, 5_000]);
    expect(planExperiment(e, undefined)).toContain('     inject:   AuthorityLifecycle prepare {kind: jwt} on server, wait until every agent of its trust domain serves the bundle holding the new JWT key (at most 5s), then AuthorityLifecycle activate of that key');
    expect(problems('title: t\ndescription: d\nsteady-state-hypothesis: { probes: [] }\nblast-radius: { servers: [server] }\nmethod:\n  - { name: r, fault: ca-rotate, propagation_timeout: soon, duration: 1s }\n  - { name: s, fault: ca-rotate, propagation_timeout: 11m, duration: 1s }\n'))
      .toEqual(['method[0].propagation_timeout: expected a duration such as 500ms, 30s, 1h30m or 7d (got "soon")', 'method[1].propagation_timeout: must be at most 10m (got "11m")']);
  });

  for (const kind of ['x509', 'jwt'] as const) {
    it(`${kind}: activates only once every agent of the trust domain serves the bundle with the prepared key`, async () => {
      const activeBefore = (await phases(kind)).find((s) => s.phase === 'active')!.key_id;
      const seqBefore = await sequence();
      // What the server's key phases were at each scrape where the agent reported the new bundle.
      const seenWhenCaughtUp: string[] = [];
      const agent = await fakeAgent(async () => {
        if (agent.sequence > seqBefore) seenWhenCaughtUp.push((await phases(kind)).map((s) => s.phase).sort().join(','));
      });
      agent.sequence = seqBefore;
      // An agent of another trust domain is not waited for.
      const other = await fakeAgent();
      try {
        const step = steps(`  - { name: r, fault: ca-rotate, kind: ${kind}, propagation_timeout: 20s, duration: 1s }\n`).method[0];
        const prepared = await faultImpl(step).prepare(step, { stack: stackWith([{ name: 'agent-1', url: agent.url }, { name: 'peer-agent-1', url: other.url, trustDomain: 'peer.example' }]), backupDir: t.dir, progress: () => undefined, clock: systemClock });
        expect(prepared.rollback).toEqual([]);
        const applying = prepared.apply();
        await new Promise((r) => setTimeout(r, 1500));
        // Still waiting: the new key is published (prepared), the old one still signs.
        expect((await phases(kind)).find((s) => s.phase === 'active')!.key_id).toBe(activeBefore);
        const next = (await phases(kind)).find((s) => s.phase === 'prepared')!.key_id;
        agent.sequence = await sequence();
        const out = await applying;
        expect(out).toMatchObject({ kind, activeBefore, preparedKeyId: next, activeAfter: next, propagated: ['agent-1'], lagging: [] });
        expect(out.waitedMs as number).toBeGreaterThanOrEqual(1500);
        expect(seenWhenCaughtUp[0]).toMatch(/prepared/);
        expect((await phases(kind)).find((s) => s.key_id === activeBefore)!.phase).toBe('old');
      } finally {
        agent.server.close();
        other.server.close();
      }
    }, 30_000);
  }

  it('an agent that never catches up bounds the wait: the key is activated and the agent reported lagging', async () => {
    const cutOff = await fakeAgent();
    const lines: string[] = [];
    try {
      const step = steps('  - { name: r, fault: ca-rotate, propagation_timeout: 1s, duration: 1s }\n').method[0];
      const prepared = await faultImpl(step).prepare(step, { stack: stackWith([{ name: 'agent-2', url: cutOff.url }, { name: 'agent-3', url: 'http://127.0.0.1:1' }]), backupDir: t.dir, progress: (l) => lines.push(l), clock: systemClock });
      const out = await prepared.apply();
      expect(out).toMatchObject({ propagated: [], lagging: ['agent-2', 'agent-3'] });
      expect(out.activeAfter).toBe(out.preparedKeyId);
      expect(out.waitedMs as number).toBeLessThan(5_000);
      expect(lines.join('\n')).toMatch(/activating the new X\.509 CA although agent-2, agent-3 did not serve bundle \d+ within 1s/);
    } finally {
      cutOff.server.close();
    }
  });
});
