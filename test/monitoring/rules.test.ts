// The committed rules and Alertmanager config, checked by the real tools: promtool check/test
// rules (every alert firing and not firing, every recording rule) and amtool (config and routing).
import { execa } from 'execa';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { resolveConfig, EXPORTER_LIFETIME_BUCKETS } from '../../src/monitoring/config.js';
import { ALERTMANAGER_FILE, monitoringArtefacts, RULE_FILES } from '../../src/monitoring/artefacts.js';
import { allAlerts, alertNames, recordingGroups } from '../../src/monitoring/rules.js';
import { runbookExperiments } from '../../src/monitoring/runbooks.js';
import { loadExperimentFile, loadSuite } from '../../src/chaos/experiment/validate.js';
import { slos } from '../../src/monitoring/slos.js';
import { num } from '../../src/monitoring/promql.js';
import { LIFETIME_BUCKETS } from '../../src/exporter/names.js';
import { burnCases, expectedAlerts, keyCompromiseCases, serverLoadCases, symptomCases, sloSeries, ticketCase, type AlertCase } from './promtool-cases.js';

const root = path.resolve(import.meta.dirname, '..', '..');
const work = mkdtempSync(path.join(tmpdir(), 'svidscope-promtool-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const c = resolveConfig();
const rules = allAlerts(c);
const ruleFiles = [RULE_FILES.recording, RULE_FILES.alerting].map((f) => path.join(root, f));

function alertCases(): AlertCase[] {
  return [...slos(c).flatMap((s) => [...burnCases(s.name, s.alert), ticketCase(s.name, s.alert, s.target)]), ...symptomCases(), ...keyCompromiseCases(), ...serverLoadCases()];
}

function promtoolTestFile(cases: AlertCase[], recording: boolean): Record<string, unknown> {
  const tests: Record<string, unknown>[] = cases.map((k) => ({
    name: `${k.alert}: ${k.name}`,
    interval: '1m',
    input_series: k.series,
    alert_rule_test: [{ eval_time: k.evalTime, alertname: k.alert, exp_alerts: expectedAlerts(rules, k) }],
  }));
  if (recording) {
    // One group per SLO: 25% errors (0.5 of 2 per second) for 2 hours; every recorded series of that SLO at 1h.
    for (const slo of slos(c)) {
      const byScope = `{cluster="c1", slo="${slo.name}", trust_domain="example.org"}`;
      const budget = Number(num(1 - slo.target));
      const expect: Record<string, number> = {
        'slo:sli_errors:rate5m': 0.5,
        'slo:sli_requests:rate5m': 2,
        [`slo:sli_error:ratio_rate${c.sloPeriod}`]: 0.25,
        'slo:period_error_budget_remaining:ratio': 1 - 0.25 / budget,
      };
      for (const g of recordingGroups(c).filter((g) => g.name === `svidscope-slo-${slo.name}-rules`)) {
        for (const r of g.rules) if (/^slo:sli_error:ratio_rate\d+[mhd]$/.test(r.record) && r.record !== `slo:sli_error:ratio_rate${c.sloPeriod}`) expect[r.record] = 0.25;
      }
      // Rounded: long windows extrapolate, which leaves float noise in the last digits.
      const samples = Object.entries(expect).map(([record, value]) => ({ expr: `round(${record}{slo="${slo.name}"}, 0.0001)`, eval_time: '1h', exp_samples: [{ labels: byScope, value }] }));
      samples.push({ expr: `slo:objective:ratio{slo="${slo.name}"}`, eval_time: '1h', exp_samples: [{ labels: `slo:objective:ratio{slo="${slo.name}"}`, value: slo.target }] });
      samples.push({ expr: `slo:error_budget:ratio{slo="${slo.name}"}`, eval_time: '1h', exp_samples: [{ labels: `slo:error_budget:ratio{slo="${slo.name}"}`, value: budget }] });
      tests.push({ name: `recording rules of ${slo.name}`, interval: '1m', input_series: sloSeries(slo.name, 30, 120, 120), promql_expr_test: samples });
    }
  }
  return { rule_files: ruleFiles, evaluation_interval: '1m', tests };
}

describe('rules and alerts', () => {
  it('promtool check rules accepts the committed rule files', async () => {
    const r = await execa('promtool', ['check', 'rules', ...ruleFiles], { reject: false });
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('SUCCESS');
  });

  it('the promtool tests cover every alert (firing and not firing) and every recording rule', () => {
    const cases = alertCases();
    for (const name of alertNames(c)) {
      expect(cases.some((k) => k.alert === name && k.firing.length > 0), `${name} has a firing case`).toBe(true);
      expect(cases.some((k) => k.alert === name && k.firing.length === 0), `${name} has a not-firing case`).toBe(true);
    }
    // Every rule (each burn window pair) fires in some case.
    for (const r of rules) {
      const fired = cases.some((k) => k.alert === r.alert && k.firing.some((fa) => Object.entries(fa.ruleLabels ?? {}).every(([n, v]) => r.labels[n] === v)));
      expect(fired, `${r.alert} ${JSON.stringify(r.labels)}`).toBe(true);
    }
    const file = promtoolTestFile(cases, true) as { tests: { promql_expr_test?: { expr: string }[] }[] };
    const tested = new Set(file.tests.flatMap((t) => (t.promql_expr_test ?? []).map((p) => p.expr)));
    for (const g of recordingGroups(c)) for (const r of g.rules) expect([...tested].some((e) => e.includes(`${r.record}{slo="${r.labels!.slo}"}`)), `${r.record} ${r.labels!.slo}`).toBe(true);
  });

  it('promtool test rules passes for every case', async () => {
    const cases = alertCases();
    const slow = cases.filter((k) => k.evalTime.includes('h'));
    // Two files so the long ticket case runs next to the rest (two cores).
    const files = [['fast', promtoolTestFile(cases.filter((k) => !slow.includes(k)), true)], ['slow', promtoolTestFile(slow, false)]] as const;
    const results = await Promise.all(files.map(async ([name, doc]) => {
      const f = path.join(work, `${name}.test.yaml`);
      writeFileSync(f, stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false }));
      return execa('promtool', ['test', 'rules', f], { reject: false });
    }));
    for (const r of results) expect(r.exitCode, (r.stdout + r.stderr).slice(-6000)).toBe(0);
  }, 120_000);

  it('every alert has a severity, a summary without templates, a templated description and a runbook that exists', () => {
    for (const r of rules) {
      expect(['page', 'ticket']).toContain(r.labels.severity);
      expect(r.alert).toMatch(/^([A-Z]+[a-z0-9]+)+$/);
      expect(r.alert.length).toBeLessThanOrEqual(40);
      expect(r.annotations.summary).toMatch(/^[A-Z].*\.$/);
      expect(r.annotations.summary).not.toContain('{{');
      expect(r.annotations.description).toMatch(/\{\{ \$labels\.\w+ \}\}/);
      expect(r.annotations.runbook_url).toBe(`${c.runbookBaseUrl}/${r.alert}.md`);
      expect(readFileSync(path.join(root, 'runbooks', `${r.alert}.md`), 'utf8')).toContain(`# ${r.alert}`);
      expect(r.for).toMatch(/^\d+[smh]$/);
    }
  });

  it('every runbook names a shipped experiment; the ones that prove their alert expect it and run in the game day', () => {
    const gameday = loadSuite('gameday', path.join(root, 'experiments')).experiments;
    for (const e of runbookExperiments(c)) {
      expect(existsSync(path.join(root, e.file)), `${e.alert}: ${e.file}`).toBe(true);
      const exp = loadExperimentFile(path.join(root, e.file));
      if (!e.proves) continue; // its runbook says why (typed), and what the experiment rehearses instead
      expect(exp.expectedAlerts.map((a) => a.name), `${e.alert}: ${e.file} expects it`).toContain(e.alert);
      expect(gameday, `${e.alert}: ${exp.id} in experiments/gameday.yaml`).toContain(exp.id);
    }
  });

  it('rule groups stay within the mixtool limits', () => {
    const doc = readFileSync(path.join(root, RULE_FILES.alerting), 'utf8') + readFileSync(path.join(root, RULE_FILES.recording), 'utf8');
    for (const m of doc.matchAll(/- name: (\S+)/g)) expect(m[1].length, m[1]).toBeLessThanOrEqual(40);
    for (const g of recordingGroups(c)) expect(g.rules.length).toBeLessThanOrEqual(20);
  });

  it('amtool accepts the Alertmanager config and routes page and ticket to their receivers', async () => {
    const file = path.join(root, ALERTMANAGER_FILE);
    const check = await execa('amtool', ['check-config', file], { reject: false });
    expect(check.exitCode, check.stdout + check.stderr).toBe(0);
    for (const [severity, receiver] of [['page', 'page'], ['ticket', 'ticket']]) {
      const r = await execa('amtool', ['config', 'routes', 'test', `--config.file=${file}`, `severity=${severity}`, 'alertname=SvidscopeAgentDown'], { reject: false });
      expect(r.stdout.trim(), r.stderr).toBe(receiver);
    }
  });

  it('rejects thresholds that are not histogram bucket boundaries, and knows the exporter buckets', () => {
    expect(() => resolveConfig({ slos: { issuanceLatency: { thresholdSeconds: 0.3 } } })).toThrow(/bucket boundary/);
    expect(() => resolveConfig({ slos: { rotation: { minRemainingRatio: 0.33 } } })).toThrow(/bucket boundary/);
    expect(() => resolveConfig({ slos: { probes: { target: 1.5 } } })).toThrow(/ratio/);
    expect([...EXPORTER_LIFETIME_BUCKETS]).toEqual([...LIFETIME_BUCKETS]);
  });

  it('parameters reach the output: selectors, targets and for durations', () => {
    const custom = monitoringArtefacts({ selectors: { agent: 'job="spire-agent"' }, slos: { workloadApi: { target: 0.999 } }, forOverride: '1s', runbookBaseUrl: 'https://runbooks.example' });
    const alerts = custom.find((a) => a.file === RULE_FILES.alerting)!.render();
    expect(alerts).toContain('up{job="spire-agent"} == 0');
    expect(alerts).not.toMatch(/for: (?!1s)/);
    expect(alerts).toContain('runbook_url: https://runbooks.example/SvidscopeAgentDown.md');
    expect(alerts).toContain('slo:sli_error:ratio_rate1h{slo="workload-api"} > 0.0144');
  });
});
