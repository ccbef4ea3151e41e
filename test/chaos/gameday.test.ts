import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertmanagerClient, Ledger, loadStack, loadSuite, PrometheusClient, resolveExperiment, runGameday } from '../../src/chaos/index.js';
import { httpOk } from '../../src/chaos/proc.js';
import { relayMode } from '../../src/chaos/relay.js';
import { connectAdmin } from '../../src/identity-plane/server-api/admin-client.js';
import { root, stackProcesses, startUp } from './support.js';
import { systemClock } from '../../src/common/clock.js';

const experimentsDir = path.join(root, 'experiments');

/**
 * The acceptance game day: the shipped suite against `svidscope up --alert-profile gameday`, with
 * the real Prometheus and Alertmanager it starts (2 s scrapes, every `for` 10 s). The `it` timeout
 * is the game day's budget: 10 minutes.
 */
describe('game day against svidscope up with Prometheus and Alertmanager', () => {
  let up: Awaited<ReturnType<typeof startUp>>;
  let monitoring: { prometheus?: string; alertmanager?: string; unavailable?: string };
  beforeAll(async () => {
    up = await startUp({ alertProfile: 'gameday' });
    monitoring = JSON.parse(readFileSync(path.join(up.dataDir, 'endpoints.json'), 'utf8')).monitoring;
  }, 240_000);
  afterAll(async () => {
    await up?.stop();
  }, 60_000);

  it('every experiment passes, every expected alert fires in Prometheus and Alertmanager, and nothing is left behind', async () => {
    expect(monitoring.prometheus, `svidscope up started no Prometheus: ${monitoring.unavailable} (npm test installs it as root)`).toBeDefined();
    const prom = new PrometheusClient(monitoring.prometheus!);
    const am = new AlertmanagerClient(monitoring.alertmanager!);
    const stack = loadStack(up.dataDir);
    const configs = ['agent-1', 'agent-2', 'server'].map((n) => readFileSync(path.join(up.dataDir, `${n}.yaml`), 'utf8'));
    const admin = connectAdmin(stack.endpoints.server.adminSocket);
    const entriesBefore = (await admin.call<{ entries: { spiffe_id: string }[] }>('ListEntries', {})).entries.map((e) => e.spiffe_id).sort();

    const suite = loadSuite('gameday', experimentsDir);
    const r = await runGameday('gameday', experimentsDir, { dataDir: up.dataDir, stack, prometheus: prom, alertmanager: am, progress: (l) => process.stderr.write(`${l}\n`), clock: systemClock });

    expect(r.results.map((x) => x.experiment)).toEqual(suite.experiments);
    expect(r.results.filter((x) => x.verdict !== 'passed'), JSON.stringify(r.results, null, 2)).toEqual([]);

    // Every expected alert fired, as Prometheus itself recorded it (ALERTS history), and reached
    // Alertmanager (the harness saw it active there, through its API, after the injection).
    for (const res of r.results) {
      const exp = resolveExperiment(res.experiment, experimentsDir);
      const journal = JSON.parse(readFileSync(path.join(path.dirname(res.report), 'journal.json'), 'utf8'));
      for (const a of exp.expectedAlerts) {
        const seen = await prom.query(`max_over_time(ALERTS{alertname="${a.name}",alertstate="firing"}[30m])`);
        expect(seen.length, `${res.experiment}: ${a.name} in Prometheus' ALERTS`).toBeGreaterThan(0);
        const record = journal.alerts.find((x: { name: string }) => x.name === a.name);
        expect(record, `${res.experiment}: ${a.name}`).toMatchObject({ fired: true, checked_alertmanager: true });
        expect(record.alertmanager_delay_seconds).toBeLessThanOrEqual(a.withinMs / 1000);
      }
    }

    // Nothing left behind: no stopped process, no skewed clock, no chaos cgroup, no ledger entry,
    // configs, entries and datastore intact, every authority published, everything healthy.
    const procs = stackProcesses(up.dataDir);
    expect(procs.filter((p) => p.state === 'T')).toEqual([]);
    for (const p of procs) expect(readFileSync(`/proc/${p.pid}/environ`, 'utf8'), p.argv).not.toMatch(/faketime/);
    for (const root of ['/sys/fs/cgroup/cpu', '/sys/fs/cgroup']) {
      if (existsSync(root)) expect(readdirSync(root).filter((d) => d.startsWith('svidscope-chaos-'))).toEqual([]);
    }
    expect(new Ledger(up.dataDir).read().runs).toEqual([]);
    expect(['agent-1', 'agent-2', 'server'].map((n) => readFileSync(path.join(up.dataDir, `${n}.yaml`), 'utf8'))).toEqual(configs);
    expect((parse(configs[1]) as { server_address: string }).server_address).toBe(stack.endpoints.agents[1].relay!.address);
    for (const a of stack.endpoints.agents) expect(await relayMode(a.relay!.control), a.name).toEqual({ kind: 'pass' });
    expect(existsSync(path.join(up.dataDir, 'server', 'datastore.sqlite3'))).toBe(true);
    expect((await admin.call<{ entries: { spiffe_id: string }[] }>('ListEntries', {})).entries.map((e) => e.spiffe_id).sort()).toEqual(entriesBefore);
    const ca = await admin.call<{ slots: { withheld: boolean }[] }>('CaStatus', {});
    expect(ca.slots.filter((s) => s.withheld)).toEqual([]);
    admin.close();
    for (const c of stack.components.values()) if (c.health) expect(await httpOk(c.health, 3000), c.name).toBe(true);
    expect(readFileSync(path.join(up.dataDir, 'chaos', 'metrics.prom'), 'utf8')).toMatch(/svidscope_chaos_fault_active\{experiment="agent-crash",fault="kill agent-2"\} 0/);
  }, 600_000);

  it('then the identity-faults suite (faults that must not page) passes on the same stack, leaving nothing behind', async () => {
    expect(monitoring.prometheus).toBeDefined();
    const stack = loadStack(up.dataDir);
    const suite = loadSuite('identity-faults', experimentsDir);
    const r = await runGameday('identity-faults', experimentsDir, { dataDir: up.dataDir, stack, prometheus: new PrometheusClient(monitoring.prometheus!), alertmanager: new AlertmanagerClient(monitoring.alertmanager!), progress: (l) => process.stderr.write(`${l}\n`), clock: systemClock });
    expect(r.results.map((x) => x.experiment)).toEqual(suite.experiments);
    expect(r.results.filter((x) => x.verdict !== 'passed'), JSON.stringify(r.results, null, 2)).toEqual([]);
    expect(new Ledger(up.dataDir).read().runs).toEqual([]);
    for (const a of stack.endpoints.agents) expect(await relayMode(a.relay!.control), a.name).toEqual({ kind: 'pass' });
    expect(stackProcesses(up.dataDir).filter((p) => p.state === 'T')).toEqual([]);
  }, 300_000);
});
