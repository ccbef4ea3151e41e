import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/common/log.js';
import { AlertmanagerClient, Ledger, loadStack, PrometheusClient, runGameday } from '../../src/chaos/index.js';
import { startPrometheusStack, type StackEndpoints } from '../../src/monitoring/stack.js';
import { httpOk } from '../../src/chaos/proc.js';
import { root, stackProcesses, startUp } from './support.js';

/**
 * The acceptance game day: the shipped suite against `svidscope up`, with the real Prometheus and
 * Alertmanager of src/monitoring/stack.ts (rules `for` shortened to 10 s, 2 s scrapes).
 */
describe('game day against svidscope up with Prometheus and Alertmanager', () => {
  let up: Awaited<ReturnType<typeof startUp>>;
  let mon: Awaited<ReturnType<typeof startPrometheusStack>>;
  beforeAll(async () => {
    up = await startUp();
    const endpoints = JSON.parse(readFileSync(path.join(up.dataDir, 'endpoints.json'), 'utf8')) as StackEndpoints;
    mon = await startPrometheusStack({ dataDir: up.dataDir, endpoints, logger: createLogger({ name: 'chaos-test', level: 'warn' }), prometheusPort: 0, alertmanagerPort: 0, scrapeInterval: '2s', config: { forOverride: '10s' } });
  }, 180_000);
  afterAll(async () => {
    if (mon?.installed) await mon.stop();
    await up?.stop();
  }, 60_000);

  it('every experiment reaches a verdict, expected alerts fire, and nothing is left behind', async (ctx) => {
    if (!mon.installed) return ctx.skip();
    const prom = new PrometheusClient(mon.prometheusUrl);
    const am = new AlertmanagerClient(mon.alertmanagerUrl);
    const stack = loadStack(up.dataDir);
    const configs = ['agent-1', 'agent-2', 'server'].map((n) => readFileSync(path.join(up.dataDir, `${n}.yaml`), 'utf8'));
    const lines: string[] = [];
    const r = await runGameday('gameday', path.join(root, 'experiments'), { dataDir: up.dataDir, stack, prometheus: prom, alertmanager: am, progress: (l) => { lines.push(l); process.stderr.write(`${l}\n`); } });

    expect(r.results.map((x) => x.experiment)).toEqual(['agent-crash', 'server-outage', 'prober-down', 'ca-rotation', 'entry-deletion', 'agent-partition']);
    expect(r.results.filter((x) => x.verdict !== 'passed'), JSON.stringify(r.results, null, 2)).toEqual([]);

    // The alerts fired, as Prometheus and Alertmanager themselves recorded them.
    for (const alert of ['SvidscopeAgentDown', 'SvidscopeServerDown', 'SvidscopeProberDown']) {
      const seen = await prom.query(`max_over_time(ALERTS{alertname="${alert}",alertstate="firing"}[20m])`);
      expect(seen.length, alert).toBeGreaterThan(0);
    }
    const journal = JSON.parse(readFileSync(path.join(path.dirname(r.results[0].report), 'journal.json'), 'utf8'));
    expect(journal.alerts[0]).toMatchObject({ name: 'SvidscopeAgentDown', fired: true });
    expect(journal.alerts[0].alertmanager_delay_seconds).toBeGreaterThan(0);

    // Nothing left behind: no stopped process, no ledger entry, configs and datastore intact, all healthy.
    expect(stackProcesses(up.dataDir).filter((p) => p.state === 'T')).toEqual([]);
    expect(new Ledger(up.dataDir).read().runs).toEqual([]);
    expect(['agent-1', 'agent-2', 'server'].map((n) => readFileSync(path.join(up.dataDir, `${n}.yaml`), 'utf8'))).toEqual(configs);
    expect((parse(configs[1]) as { server_address: string }).server_address).toBe(stack.endpoints.server.address);
    expect(existsSync(path.join(up.dataDir, 'server', 'datastore.sqlite3'))).toBe(true);
    for (const c of stack.components.values()) if (c.health) expect(await httpOk(c.health, 3000), c.name).toBe(true);
    expect(readFileSync(path.join(up.dataDir, 'chaos', 'metrics.prom'), 'utf8')).toMatch(/svidscope_chaos_fault_active\{experiment="agent-crash",fault="kill agent-2"\} 0/);
  }, 600_000);
});
