import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { FaultProxy, listExperimentFiles, loadExperimentFile, loadSuite, planExperiment } from '../../src/chaos/index.js';
import { withinTolerance } from '../../src/chaos/hypothesis.js';
import path from 'node:path';
import { root, problems } from './support.js';


describe('experiment validation', () => {
  it('lists every problem at once, in plain sentences', () => {
    expect(problems(`
method:
  - { fault: process-kill, target: agent-9, duration: soon }
  - { fault: teleport, duration: 1s }
steady-state-hypothesis:
  probes: [{ name: p, type: promql, query: up }]
expected-alerts: [{ name: X }]
rollbacks: []
`)).toEqual([
      'title: is required',
      'description: is required',
      'rollbacks: not written by hand: every fault carries its own guaranteed rollback',
      'steady-state-hypothesis.probes[0].tolerance: is required (a steady-state probe must carry one)',
      'method[0].duration: expected a duration such as 500ms, 30s, 1h30m or 7d (got "soon")',
      'method[1].fault: must be one of process-kill, process-freeze, ca-rotate, entry-delete, network, clock-skew, datastore, bundle-endpoint, issuance-storm, authority-withhold, attestation-flood, cpu-throttle, bad-csr, key-compromise (got "teleport")',
      'method[0].target: "agent-9" is outside the blast radius (declare it under blast-radius)',
      'expected-alerts[0].within: is required (a duration such as 30s)',
    ]);
  });

  it('rejects bad YAML and bad tolerances', () => {
    expect(problems('title: [')[0]).toMatch(/^not valid YAML/);
    expect(problems(`title: t\ndescription: d\nmethod: []\nsteady-state-hypothesis: { probes: [{ name: p, type: promql, query: up, tolerance: { above: 1 } }] }`))
      .toEqual(['steady-state-hypothesis.probes[0].tolerance.above: unknown key (known here: empty, equals, max, min, range)', 'steady-state-hypothesis.probes[0].tolerance: needs min, max, equals or range']);
  });

  it('every shipped experiment and both suites are valid; every experiment with expected alerts is in the game day', () => {
    const files = listExperimentFiles(path.join(root, 'experiments'));
    expect(files.length).toBeGreaterThanOrEqual(8);
    for (const f of files) expect(() => loadExperimentFile(f)).not.toThrow();
    const gameday = loadSuite('gameday', path.join(root, 'experiments')).experiments;
    expect(loadSuite('identity-faults', path.join(root, 'experiments')).experiments.length).toBeGreaterThan(0);
    // Outside the game day: the datastore fault (server-outage already proves its SvidscopeServerDown)
    // and the CPU starvation, whose latency alerts fire by chance on one machine (see its description).
    const alerting = files.map((f) => loadExperimentFile(f)).filter((e) => e.expectedAlerts.length > 0).map((e) => e.id);
    expect(alerting.filter((id) => !gameday.includes(id)).sort()).toEqual(['datastore-corruption', 'server-cpu-starvation']);
    const plan = planExperiment(loadExperimentFile(path.join(root, 'experiments', 'agent-crash.yaml')), undefined);
    expect(plan).toContain('  - SvidscopeAgentDown firing within 60s of the first injection');
  });

  it('tolerances', () => {
    expect(withinTolerance([{ value: 1 }], { equals: 1 })).toBe(true);
    expect(withinTolerance([{ value: 1 }, { value: 0 }], { min: 1 })).toBe(false);
    expect(withinTolerance([], { min: 1 })).toBe(false);
    expect(withinTolerance([], { min: 1, empty: 'pass' })).toBe(true);
  });
});

describe('fault proxy', () => {
  it('passes, delays, partitions and resets', async () => {
    const echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    const proxy = new FaultProxy({ host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port });
    await proxy.start();
    const roundTrip = (timeoutMs: number) => new Promise<number | 'timeout' | 'error'>((resolve) => {
      const t0 = Date.now();
      const c = net.connect(proxy.port, '127.0.0.1', () => c.write('x'));
      c.once('data', () => (c.destroy(), resolve(Date.now() - t0)));
      c.once('error', () => resolve('error'));
      c.once('close', () => resolve('error'));
      setTimeout(() => (c.destroy(), resolve('timeout')), timeoutMs);
    });
    try {
      expect(typeof (await roundTrip(1000))).toBe('number');
      proxy.setMode({ kind: 'latency', ms: 200 });
      expect(await roundTrip(2000)).toBeGreaterThanOrEqual(380);
      proxy.setMode({ kind: 'partition' });
      expect(await roundTrip(500)).toBe('timeout');
      proxy.setMode({ kind: 'reset' });
      expect(await roundTrip(1000)).toBe('error');
      expect(() => new FaultProxy({ host: '10.0.0.1', port: 1 })).toThrow(/not loopback/);
    } finally {
      await proxy.stop();
      echo.close();
    }
  });
});
