import { readFileSync, readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { tryParseDurationMs } from '../../common/duration.js';
import { SvidscopeError } from '../../common/errors/catalog.js';
import type { Experiment, ExpectedAlert, FaultSpec, HaltCondition, MethodStep, Probe, Suite, Tolerance } from './schema.js';

/**
 * Validation is complete before anything runs (chaostoolkit `ensure_experiment_is_valid`): every
 * problem is collected, then reported at once as plain sentences naming the field.
 */
export class ExperimentInvalidError extends SvidscopeError {
  constructor(readonly source: string, readonly problems: string[]) {
    super('config-invalid', `chaos: ${source} is not a valid experiment: ${problems.join('; ')}`);
  }
}

type Obj = Record<string, unknown>;

class Reader {
  constructor(readonly problems: string[], readonly where: string) {}
  at(where: string): Reader {
    return new Reader(this.problems, where);
  }
  fail(msg: string): void {
    this.problems.push(this.where ? `${this.where}: ${msg}` : msg);
  }
  obj(v: unknown, what: string): Obj | undefined {
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Obj;
    this.fail(`${what} must be a mapping`);
    return undefined;
  }
  str(o: Obj, key: string, required = true): string | undefined {
    const v = o[key];
    if (v === undefined || v === null || v === '') {
      if (required) this.fail(`${key} is required`);
      return undefined;
    }
    if (typeof v !== 'string') {
      this.fail(`${key} must be a string`);
      return undefined;
    }
    return v;
  }
  oneOf<T extends string>(o: Obj, key: string, allowed: readonly T[], dflt?: T): T | undefined {
    const v = o[key] ?? dflt;
    if (v === undefined) {
      this.fail(`${key} is required (one of ${allowed.join(', ')})`);
      return undefined;
    }
    if (!allowed.includes(v as T)) {
      this.fail(`${key} must be one of ${allowed.join(', ')} (got ${JSON.stringify(v)})`);
      return undefined;
    }
    return v as T;
  }
  list(o: Obj, key: string, required = false): unknown[] {
    const v = o[key];
    if (v === undefined || v === null) {
      if (required) this.fail(`${key} is required (a list)`);
      return [];
    }
    if (!Array.isArray(v)) {
      this.fail(`${key} must be a list`);
      return [];
    }
    return v;
  }
  strings(o: Obj, key: string): string[] {
    const l = this.list(o, key);
    if (l.some((x) => typeof x !== 'string')) this.fail(`${key} must be a list of strings`);
    return l.filter((x): x is string => typeof x === 'string');
  }
  duration(o: Obj, key: string, dflt?: number): number {
    const v = o[key];
    if (v === undefined || v === null) {
      if (dflt === undefined) this.fail(`${key} is required (a duration such as 30s)`);
      return dflt ?? 0;
    }
    const ms = tryParseDurationMs(v);
    if (ms === undefined) this.fail(`${key} must be a duration such as 500ms, 30s, 2m (got ${JSON.stringify(v)})`);
    return ms ?? 0;
  }
}

function tolerance(r: Reader, v: unknown): Tolerance {
  if (typeof v === 'number') return { equals: v };
  const o = r.obj(v, 'tolerance');
  if (!o) return {};
  const t: Tolerance = {};
  for (const k of ['min', 'max', 'equals'] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== 'number') r.fail(`tolerance.${k} must be a number`);
    else t[k] = o[k];
  }
  if (Array.isArray(o.range)) {
    if (o.range.length !== 2 || o.range.some((x) => typeof x !== 'number')) r.fail('tolerance.range must be [min, max]');
    else [t.min, t.max] = o.range as [number, number];
  }
  if (o.empty !== undefined) t.empty = r.oneOf(o, 'empty', ['fail', 'pass'] as const);
  for (const k of Object.keys(o)) if (!['min', 'max', 'equals', 'range', 'empty'].includes(k)) r.fail(`unknown tolerance key '${k}' (use min, max, equals, range, empty)`);
  if (t.min === undefined && t.max === undefined && t.equals === undefined) r.fail('tolerance needs min, max, equals or range');
  return t;
}

function probe(r: Reader, v: unknown): Probe | undefined {
  const o = r.obj(v, 'probe');
  if (!o) return undefined;
  const name = r.str(o, 'name') ?? '';
  const type = r.oneOf(o, 'type', ['promql', 'probe'] as const);
  if (type === 'promql') {
    if (o.tolerance === undefined) {
      r.fail('a steady-state probe must carry a tolerance');
      return undefined;
    }
    return { name, type, query: r.str(o, 'query') ?? '', tolerance: tolerance(r, o.tolerance) };
  }
  if (type === 'probe') return { name, type, module: r.str(o, 'module') ?? '', target: r.str(o, 'target') ?? '', expect: r.oneOf(o, 'expect', ['success', 'failure'] as const, 'success') ?? 'success' };
  return undefined;
}

export const FAULT_KINDS = ['process-kill', 'process-freeze', 'ca-rotate', 'entry-delete', 'network', 'clock-skew', 'datastore', 'bundle-endpoint', 'issuance-storm', 'authority-withhold', 'attestation-flood', 'cpu-throttle', 'bad-csr', 'key-compromise'] as const;

function fault(r: Reader, o: Obj): FaultSpec | undefined {
  const kind = r.oneOf(o, 'fault', FAULT_KINDS);
  switch (kind) {
    case 'process-kill':
    case 'process-freeze':
      return { fault: kind, target: r.str(o, 'target') ?? '' };
    case 'ca-rotate': {
      // The bound of the wait between prepare and activate: agents cut off must not stall a game day.
      const propagationTimeoutMs = r.duration(o, 'propagation_timeout', 30_000);
      if (propagationTimeoutMs > 600_000) r.fail('propagation_timeout must be at most 10m');
      return { fault: kind, server: r.str(o, 'server', false) ?? 'server', kind: r.oneOf(o, 'kind', ['x509', 'jwt'] as const, 'x509') ?? 'x509', propagationTimeoutMs };
    }
    case 'entry-delete':
      return { fault: kind, server: r.str(o, 'server', false) ?? 'server', spiffeId: r.str(o, 'spiffe_id') ?? '' };
    case 'network': {
      const mode = r.oneOf(o, 'mode', ['partition', 'latency', 'reset'] as const) ?? 'partition';
      const latencyMs = mode === 'latency' ? r.duration(o, 'latency') : 0;
      return { fault: kind, agent: r.str(o, 'agent') ?? '', mode, latencyMs };
    }
    case 'clock-skew': {
      const offset = r.str(o, 'offset') ?? '';
      if (offset && !/^[+-]\d+(\.\d+)?[smhd]?$/.test(offset)) r.fail(`offset must look like +300, -10m, +2d (got ${JSON.stringify(offset)})`);
      return { fault: kind, target: r.str(o, 'target') ?? '', offset };
    }
    case 'datastore':
      return { fault: kind, server: r.str(o, 'server', false) ?? 'server', mode: r.oneOf(o, 'mode', ['loss', 'corrupt'] as const, 'corrupt') ?? 'corrupt' };
    case 'bundle-endpoint': {
      const trustDomain = r.str(o, 'trust_domain', false);
      if (trustDomain && !/^[a-z0-9._-]+$/.test(trustDomain)) r.fail(`trust_domain must be a trust domain name such as peer.example (got ${JSON.stringify(trustDomain)})`);
      return { fault: kind, server: r.str(o, 'server', false) ?? 'server', trustDomain, mode: r.oneOf(o, 'mode', ['unavailable', 'malformed', 'stale'] as const, 'unavailable') ?? 'unavailable' };
    }
    case 'issuance-storm': {
      const count = o.count ?? 50;
      if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > 500) r.fail(`count must be a whole number from 1 to 500 (got ${JSON.stringify(count)})`);
      const timeoutMs = r.duration(o, 'timeout', 60_000);
      if (timeoutMs < 1000) r.fail('timeout must be at least 1s');
      return { fault: kind, agent: r.str(o, 'agent') ?? '', count: typeof count === 'number' ? count : 50, timeoutMs };
    }
    case 'key-compromise': {
      const timeoutMs = r.duration(o, 'timeout', 120_000);
      if (timeoutMs < 5_000) r.fail('timeout must be at least 5s (each wait spans at least one agent sync)');
      return { fault: kind, server: r.str(o, 'server', false) ?? 'server', kind: r.oneOf(o, 'kind', ['x509', 'jwt'] as const, 'x509') ?? 'x509', timeoutMs };
    }
    case 'authority-withhold':
      return { fault: kind, server: r.str(o, 'server', false) ?? 'server', kind: r.oneOf(o, 'kind', ['x509', 'jwt'] as const, 'x509') ?? 'x509' };
    case 'attestation-flood': {
      const count = o.count ?? 30;
      const countOk = typeof count === 'number' && Number.isInteger(count) && count >= 1 && count <= 1000;
      if (!countOk) r.fail(`count must be a whole number from 1 to 1000 (got ${JSON.stringify(count)})`);
      const rate = o.rate ?? 10;
      const rateOk = typeof rate === 'number' && Number.isFinite(rate) && rate >= 0.1 && rate <= 100;
      if (!rateOk) r.fail(`rate must be a number of attestations per second from 0.1 to 100 (got ${JSON.stringify(rate)})`);
      return { fault: kind, server: r.str(o, 'server', false) ?? 'server', count: countOk ? count : 30, ratePerSecond: rateOk ? rate : 10 };
    }
    case 'cpu-throttle': {
      // `quota: 5` or `quota: 5%`: a percentage of one CPU.
      const raw = o.quota ?? 1;
      const quota = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+(\.\d+)?%$/.test(raw.trim()) ? Number(raw.trim().slice(0, -1)) : NaN;
      const quotaOk = Number.isFinite(quota) && quota >= 0.1 && quota <= 100;
      if (!quotaOk) r.fail(`quota must be a percentage of one CPU from 0.1 to 100, such as 5 or 5% (got ${JSON.stringify(raw)})`);
      const periodMs = r.duration(o, 'period', 1000);
      const periodOk = periodMs >= 10 && periodMs <= 1000;
      if (!periodOk) r.fail(`period must be a duration from 10ms to 1s (got ${JSON.stringify(o.period)})`);
      // The kernel refuses a CFS quota under 1 ms per period.
      if (quotaOk && periodOk && (periodMs * quota) / 100 < 1) r.fail(`quota ${quota}% of a ${periodMs}ms period is ${((periodMs * quota) / 100).toFixed(2)}ms of CPU; the kernel's minimum is 1ms per period (raise quota or period)`);
      return { fault: kind, target: r.str(o, 'target') ?? '', quotaPercent: quotaOk ? quota : 1, periodMs: periodOk ? periodMs : 1000 };
    }
    case 'bad-csr': {
      const rate = o.rate ?? 5;
      const rateOk = typeof rate === 'number' && Number.isFinite(rate) && rate >= 0.1 && rate <= 100;
      if (!rateOk) r.fail(`rate must be a number of CSRs per second from 0.1 to 100 (got ${JSON.stringify(rate)})`);
      const batch = o.batch ?? 5;
      const batchOk = typeof batch === 'number' && Number.isInteger(batch) && batch >= 1 && batch <= 50;
      if (!batchOk) r.fail(`batch must be a whole number of CSRs per call from 1 to 50 (got ${JSON.stringify(batch)})`);
      return { fault: kind, agent: r.str(o, 'agent') ?? '', ratePerSecond: rateOk ? rate : 5, batch: batchOk ? batch : 5 };
    }
    default:
      return undefined;
  }
}

function step(r: Reader, v: unknown): MethodStep | undefined {
  const o = r.obj(v, 'method step');
  if (!o) return undefined;
  const f = fault(r, o);
  if (!f) return undefined;
  if (o.background !== undefined && typeof o.background !== 'boolean') r.fail('background must be true or false');
  if (o.until_alerts !== undefined && typeof o.until_alerts !== 'boolean') r.fail('until_alerts must be true or false');
  return { ...f, name: r.str(o, 'name', false) ?? f.fault, durationMs: r.duration(o, 'duration'), pauseAfterMs: r.duration(o, 'pause_after', 0), background: o.background === true, untilAlerts: o.until_alerts === true };
}

/** Validates a parsed document; throws ExperimentInvalidError listing every problem. */
export function validateExperiment(doc: unknown, id: string, source = id): Experiment {
  const problems: string[] = [];
  const r = new Reader(problems, '');
  const o = r.obj(doc, 'the experiment') ?? {};
  if (o.version !== undefined && o.version !== 1) r.fail('version must be 1');
  const known = ['version', 'title', 'description', 'tags', 'runbook', 'blast-radius', 'steady-state-hypothesis', 'method', 'expected-alerts', 'halt-conditions', 'runtime', 'rollbacks'];
  for (const k of Object.keys(o)) if (!known.includes(k)) r.fail(`unknown key '${k}'`);
  const title = r.str(o, 'title');
  const description = r.str(o, 'description');
  const tags = r.strings(o, 'tags');
  const runbook = r.str(o, 'runbook', false);
  if (o.rollbacks !== undefined) r.fail('rollbacks are not written by hand: every fault carries its own guaranteed rollback');

  const br = o['blast-radius'] === undefined ? {} : (r.at('blast-radius').obj(o['blast-radius'], 'blast-radius') ?? {});
  const blastRadius = { agents: r.at('blast-radius').strings(br, 'agents'), workloads: r.at('blast-radius').strings(br, 'workloads'), servers: r.at('blast-radius').strings(br, 'servers') };

  const ssr = r.at('steady-state-hypothesis');
  const ss = o['steady-state-hypothesis'] === undefined ? (r.fail('steady-state-hypothesis is required'), {}) : (ssr.obj(o['steady-state-hypothesis'], 'steady-state-hypothesis') ?? {});
  const probes = ssr.list(ss, 'probes', true).map((p, i) => probe(ssr.at(`steady-state-hypothesis.probes[${i}]`), p)).filter((p): p is Probe => !!p);

  if (o.method === undefined) r.fail('method is required (an empty list checks the hypothesis only)');
  const method = r.list(o, 'method').map((s, i) => step(r.at(`method[${i}]`), s)).filter((s): s is MethodStep => !!s);
  const names = new Set<string>();
  for (const s of method) {
    if (names.has(s.name)) r.fail(`method: step name '${s.name}' is used twice`);
    names.add(s.name);
  }

  // Blast radius: every fault target must be declared, so a typo cannot hit the wrong component.
  const declared = new Set([...blastRadius.agents, ...blastRadius.workloads, ...blastRadius.servers]);
  for (const s of method) {
    const target = 'target' in s ? s.target : 'agent' in s ? s.agent : s.server;
    if (target && !declared.has(target)) r.fail(`method step '${s.name}': target '${target}' is outside the blast radius (declare it under blast-radius)`);
  }

  const expectedAlerts = r.list(o, 'expected-alerts').map((a, i): ExpectedAlert | undefined => {
    const ar = r.at(`expected-alerts[${i}]`);
    const ao = ar.obj(a, 'expected alert');
    if (!ao) return undefined;
    const labels = ao.labels === undefined ? {} : (ar.obj(ao.labels, 'labels') ?? {});
    for (const [k, v] of Object.entries(labels)) if (typeof v !== 'string') ar.fail(`labels.${k} must be a string`);
    return { name: ar.str(ao, 'name') ?? '', labels: labels as Record<string, string>, withinMs: ar.duration(ao, 'within') };
  }).filter((a): a is ExpectedAlert => !!a);

  for (const s of method) if (s.untilAlerts && expectedAlerts.length === 0) r.fail(`method step '${s.name}': until_alerts needs expected-alerts to wait for`);

  const haltConditions = r.list(o, 'halt-conditions').map((h, i): HaltCondition | undefined => {
    const hr = r.at(`halt-conditions[${i}]`);
    const ho = hr.obj(h, 'halt condition');
    if (!ho) return undefined;
    if (ho.tolerance === undefined) hr.fail('tolerance is required');
    return { name: hr.str(ho, 'name') ?? '', query: hr.str(ho, 'query') ?? '', tolerance: ho.tolerance === undefined ? {} : tolerance(hr, ho.tolerance) };
  }).filter((h): h is HaltCondition => !!h);

  const rt = o.runtime === undefined ? {} : (r.at('runtime').obj(o.runtime, 'runtime') ?? {});
  const rr = r.at('runtime');
  const runtime = {
    steadyStateTimeoutMs: rr.duration(rt, 'steady_state_timeout', 60_000),
    recoveryTimeoutMs: rr.duration(rt, 'recovery_timeout', 120_000),
    pollIntervalMs: rr.duration(rt, 'poll_interval', 2_000),
  };
  if (problems.length > 0) throw new ExperimentInvalidError(source, problems);
  return { version: 1, id, title: title!, description: description!, tags, runbook, blastRadius, steadyState: { title: (typeof ss.title === 'string' ? ss.title : title) ?? '', probes }, method, expectedAlerts, haltConditions, runtime };
}

export function parseExperimentText(text: string, id: string, source = id): Experiment {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new ExperimentInvalidError(source, [`not valid YAML: ${(err as Error).message.split('\n')[0]}`]);
  }
  return validateExperiment(doc, id, source);
}

export function loadExperimentFile(file: string): Experiment {
  const id = path.basename(file).replace(/\.(ya?ml|json)$/, '');
  return { ...parseExperimentText(readFileSync(file, 'utf8'), id, file), file };
}

/** Resolves `name` (an id in `dir`, or a path) to an experiment. */
export function resolveExperiment(nameOrPath: string, dir: string): Experiment {
  for (const candidate of [nameOrPath, path.join(dir, `${nameOrPath}.yaml`), path.join(dir, `${nameOrPath}.yml`)]) {
    if (existsSync(candidate) && /\.(ya?ml|json)$/.test(candidate)) return loadExperimentFile(candidate);
  }
  throw new SvidscopeError('not-found', `chaos: no experiment '${nameOrPath}' (looked in ${dir}; try svidscope chaos list)`);
}

/** Every experiment file in `dir` (suites, which carry `experiments:`, are skipped). */
export function listExperimentFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => /\.(ya?ml)$/.test(f)).map((f) => path.join(dir, f))
    .filter((f) => !isSuiteText(readFileSync(f, 'utf8'))).sort();
}

function isSuiteText(text: string): boolean {
  try {
    const d = parse(text) as Obj | null;
    return !!d && typeof d === 'object' && Array.isArray(d.experiments);
  } catch {
    return false;
  }
}

export function loadSuite(nameOrPath: string, dir: string): Suite {
  const file = [nameOrPath, path.join(dir, `${nameOrPath}.yaml`)].find((f) => existsSync(f) && f.endsWith('.yaml'));
  if (!file) throw new SvidscopeError('not-found', `chaos: no suite '${nameOrPath}' (looked in ${dir})`);
  const problems: string[] = [];
  const r = new Reader(problems, '');
  let doc: unknown;
  try {
    doc = parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ExperimentInvalidError(file, [`not valid YAML: ${(err as Error).message.split('\n')[0]}`]);
  }
  const o = r.obj(doc, 'the suite') ?? {};
  const suite: Suite = { id: path.basename(file, '.yaml'), title: r.str(o, 'title') ?? '', description: r.str(o, 'description', false) ?? '', experiments: r.strings(o, 'experiments'), file };
  if (suite.experiments.length === 0) r.fail('experiments must list at least one experiment');
  for (const e of suite.experiments) {
    try {
      resolveExperiment(e, path.dirname(file));
    } catch (err) {
      r.fail((err as Error).message);
    }
  }
  if (problems.length > 0) throw new ExperimentInvalidError(file, problems);
  return suite;
}
