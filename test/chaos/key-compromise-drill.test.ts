// The key-compromise drill against a real server, with stand-ins for the rest of a federated
// stack that serve /metrics: an agent of the domain, the peer server and two peer agents, one
// whose entries federate with the domain (it serves the domain's bundle as a federated bundle, a
// second behind its server) and one whose entries do not. The drill must not activate the new key
// before the federating peer agent serves it, must not wait for the other, and reports the times.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseExperimentText } from '../../src/chaos/index.js';
import { faultImpl } from '../../src/chaos/faults/index.js';
import type { EndpointsFile, StackComponent, StackView } from '../../src/chaos/stack.js';
import { systemClock } from '../../src/common/clock.js';
import { removeDir, startTestServer, type TestServer } from '../support/server.js';

let t: TestServer;
const stubs: Server[] = [];
beforeAll(async () => {
  t = await startTestServer();
}, 30_000);
afterAll(async () => {
  for (const s of stubs) s.close();
  await t?.stop();
  if (t) removeDir(t.dir);
});

const sequence = async () => Number((await t.admin.call<{ sequence_number: string }>('GetBundle', {})).sequence_number);

/** A component that answers /metrics with what `metrics()` renders at each scrape. */
async function stub(metrics: () => Promise<string>): Promise<string> {
  const server = createServer((req, res) => {
    void metrics().then((body) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(req.url === '/metrics' ? body : 'ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  stubs.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/ready`;
}

describe('key-compromise drill with a federated peer', () => {
  it('waits for the peer\'s federating agents before activating, and reports when they dropped the key', async () => {
    // The peer agent shows each new sequence of example.org one second after its server has it, and
    // remembers when it first showed it.
    const firstShown = new Map<number, number>();
    const seenSince = new Map<number, number>();
    const peerAgentView = async () => {
      const now = Date.now();
      const current = await sequence();
      if (!seenSince.has(current)) seenSince.set(current, now);
      const shown = Math.max(...[...seenSince].filter(([, at]) => now - at >= 1_000).map(([seq]) => seq), 1);
      if (!firstShown.has(shown)) firstShown.set(shown, now);
      return shown;
    };
    const components: StackComponent[] = [
      { name: 'server', kind: 'server', adminSocket: t.server.adminSocket, serverAddress: t.server.address, trustDomain: 'example.org' },
      { name: 'agent-1', kind: 'agent', trustDomain: 'example.org', health: await stub(async () => `svidscope_agent_bundle_sequence ${await sequence()}\n`) },
      { name: 'peer-server', kind: 'server', trustDomain: 'peer.example', adminSocket: '/nonexistent', health: await stub(async () => `svidscope_federation_bundle_sequence{trust_domain="example.org"} ${await sequence()}\n`) },
      { name: 'peer-agent-1', kind: 'agent', trustDomain: 'peer.example', health: await stub(async () => `svidscope_agent_bundle_sequence 3\nsvidscope_agent_federated_bundle_sequence{trust_domain="example.org"} ${await peerAgentView()}\n`) },
      { name: 'peer-agent-2', kind: 'agent', trustDomain: 'peer.example', health: await stub(async () => 'svidscope_agent_bundle_sequence 3\n') },
    ];
    const stack: StackView = { dataDir: t.dir, endpoints: { dataDir: t.dir, trustDomain: 'example.org' } as EndpointsFile, components: new Map(components.map((c) => [c.name, c])) };
    const step = parseExperimentText('title: t\ndescription: d\nsteady-state-hypothesis: { probes: [] }\nblast-radius: { servers: [server] }\nmethod:\n  - { name: k, fault: key-compromise, server: server, kind: x509, timeout: 20s, duration: 1s }\n', 't').method[0];

    const before = await sequence();
    const prepared = await faultImpl(step).prepare(step, { stack, backupDir: t.dir, progress: () => undefined, clock: systemClock });
    const report = await prepared.apply();

    expect(report).toMatchObject({ kind: 'x509', peer: 'peer-server', peerAgents: 'peer-agent-1' });
    for (const k of ['prepareToAgentsSeconds', 'prepareToPeerSeconds', 'prepareToPeerAgentsSeconds', 'timeToClearSeconds', 'revokeToAgentsSeconds', 'revokeToPeerSeconds', 'revokeToPeerAgentsSeconds']) {
      expect(report[k], k).toEqual(expect.any(Number));
    }
    // The peer agent showed the bundle with the prepared key before the old one was tainted (right after activation).
    const slots = (await t.admin.call<{ slots: { key_id: string; tainted: boolean; tainted_at_ms: string }[] }>('CaStatus', {})).slots;
    const taintedAt = Number(slots.find((s) => s.key_id === report.compromisedKeyId)!.tainted_at_ms);
    const preparedSequence = before + 1;
    expect(firstShown.get(preparedSequence)).toBeDefined();
    expect(firstShown.get(preparedSequence)!).toBeLessThanOrEqual(taintedAt);
    // It also showed the revoke's sequence: the drill waited for it.
    expect(Math.max(...firstShown.keys())).toBe(await sequence());
  }, 60_000);
});
