import { readFileSync, readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { ConfigReader } from '../../common/config/load.js';
import { shown } from '../../common/config/shown.js';
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

/** A reader that collects every problem of `source` for one ExperimentInvalidError. */
function collecting(doc: unknown, source: string): ConfigReader {
  return ConfigReader.collecting(doc, (problems) => new ExperimentInvalidError(source, [...problems]));
}

const TOLERANCE_KEYS = ['min', 'max', 'equals'] as const;

/** A bare number is `equals`; otherwise a mapping of bounds. */
function tolerance(parent: ConfigReader): Tolerance {
  const value = parent.raw('tolerance').value;
  if (typeof value === 'number') return { equals: value };
  const r = parent.section('tolerance');
  const t: Tolerance = {};
  for (const k of TOLERANCE_KEYS) {
    const n = r.number(k, Number.NaN);
    if (!Number.isNaN(n)) t[k] = n;
  }
  const range = r.list('range');
  if (r.raw('range').value !== undefined) {
    if (range.length !== 2 || range.some((x) => typeof x !== 'number')) r.report('range', `expected [min, max] (got ${shown(r.raw('range').value)})`);
    else [t.min, t.max] = range as [number, number];
  }
  if (r.raw('empty').value !== undefined) t.empty = r.oneOf('empty', ['fail', 'pass'] as const, 'fail');
  r.rejectUnknown();
  if (t.min === undefined && t.max === undefined && t.equals === undefined) r.report('', 'needs min, max, equals or range');
  return t;
}

function probe(r: ConfigReader): Probe | undefined {
  const name = r.requiredString('name');
  const type = r.requiredOneOf('type', ['promql', 'probe'] as const);
  if (type === 'promql') {
    const query = r.requiredString('query');
    if (r.raw('tolerance').value === undefined) {
      r.report('tolerance', 'is required (a steady-state probe must carry one)');
      return undefined;
    }
    return { name, type, query, tolerance: tolerance(r) };
  }
  if (type === 'probe') return { name, type, module: r.requiredString('module'), target: r.requiredString('target'), expect: r.oneOf('expect', ['success', 'failure'] as const, 'success') };
  return undefined;
}

export const FAULT_KINDS = ['process-kill', 'process-freeze', 'ca-rotate', 'entry-delete', 'network', 'clock-skew', 'datastore', 'bundle-endpoint', 'issuance-storm', 'authority-withhold', 'attestation-flood', 'cpu-throttle', 'bad-csr', 'key-compromise'] as const;

const server = (r: ConfigReader): string => r.optionalString('server') ?? 'server';
const authorityKind = (r: ConfigReader) => r.oneOf('kind', ['x509', 'jwt'] as const, 'x509');

function fault(r: ConfigReader): FaultSpec | undefined {
  const kind = r.requiredOneOf('fault', FAULT_KINDS);
  switch (kind) {
    case 'process-kill':
    case 'process-freeze':
      return { fault: kind, target: r.requiredString('target') };
    case 'ca-rotate':
      // The bound of the wait between prepare and activate: agents cut off must not stall a game day.
      return { fault: kind, server: server(r), kind: authorityKind(r), propagationTimeoutMs: r.durationMs('propagation_timeout', 30_000, { max: '10m' }) };
    case 'entry-delete':
      return { fault: kind, server: server(r), spiffeId: r.requiredString('spiffe_id') };
    case 'network': {
      const mode = r.requiredOneOf('mode', ['partition', 'latency', 'reset'] as const) ?? 'partition';
      const latencyMs = mode === 'latency' ? r.durationMs('latency') : 0;
      return { fault: kind, agent: r.requiredString('agent'), mode, latencyMs };
    }
    case 'clock-skew': {
      const offset = r.requiredString('offset');
      if (offset && !/^[+-]\d+(\.\d+)?[smhd]?$/.test(offset)) r.report('offset', `expected an offset such as +300, -10m or +2d (got ${shown(offset)})`);
      return { fault: kind, target: r.requiredString('target'), offset };
    }
    case 'datastore':
      return { fault: kind, server: server(r), mode: r.oneOf('mode', ['loss', 'corrupt'] as const, 'corrupt') };
    case 'bundle-endpoint': {
      const trustDomain = r.optionalString('trust_domain');
      if (trustDomain && !/^[a-z0-9._-]+$/.test(trustDomain)) r.report('trust_domain', `expected a trust domain name such as peer.example (got ${shown(trustDomain)})`);
      return { fault: kind, server: server(r), trustDomain, mode: r.oneOf('mode', ['unavailable', 'malformed', 'stale'] as const, 'unavailable') };
    }
    case 'issuance-storm': {
      const count = r.number('count', 50, { integer: true, min: 1, max: 500, unit: 'workloads' });
      return { fault: kind, agent: r.requiredString('agent'), count, timeoutMs: r.durationMs('timeout', 60_000, { min: '1s' }) };
    }
    case 'key-compromise': {
      const timeoutMs = r.durationMs('timeout', 120_000, { min: '5s', why: 'as each wait spans at least one agent sync' });
      return { fault: kind, server: server(r), kind: authorityKind(r), timeoutMs };
    }
    case 'authority-withhold':
      return { fault: kind, server: server(r), kind: authorityKind(r) };
    case 'attestation-flood': {
      const count = r.number('count', 30, { integer: true, min: 1, max: 1000, unit: 'attestations' });
      const ratePerSecond = r.number('rate', 10, { min: 0.1, max: 100, unit: 'attestations per second' });
      return { fault: kind, server: server(r), count, ratePerSecond };
    }
    case 'cpu-throttle':
      return cpuThrottle(r);
    case 'bad-csr': {
      const ratePerSecond = r.number('rate', 5, { min: 0.1, max: 100, unit: 'CSRs per second' });
      const batch = r.number('batch', 5, { integer: true, min: 1, max: 50, unit: 'CSRs per call' });
      return { fault: kind, agent: r.requiredString('agent'), ratePerSecond, batch };
    }
    default:
      return undefined;
  }
}

function cpuThrottle(r: ConfigReader): FaultSpec {
  // `quota: 5` or `quota: 5%`: a percentage of one CPU.
  const raw = r.raw('quota').value ?? 1;
  const quota = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+(\.\d+)?%$/.test(raw.trim()) ? Number(raw.trim().slice(0, -1)) : NaN;
  const quotaOk = Number.isFinite(quota) && quota >= 0.1 && quota <= 100;
  if (!quotaOk) r.report('quota', `must be a percentage of one CPU from 0.1 to 100, such as 5 or 5% (got ${shown(raw)})`);
  const before = r.problems.length;
  const periodMs = r.durationMs('period', 1000, { min: '10ms', max: '1s' });
  // The kernel refuses a CFS quota under 1 ms per period.
  const cpuMs = (periodMs * quota) / 100;
  if (quotaOk && r.problems.length === before && cpuMs < 1) r.report('quota', `${quota}% of a ${periodMs}ms period is ${cpuMs.toFixed(2)}ms of CPU; the kernel's minimum is 1ms per period (raise quota or period)`);
  return { fault: 'cpu-throttle', target: r.requiredString('target'), quotaPercent: quotaOk ? quota : 1, periodMs };
}

function step(r: ConfigReader): MethodStep | undefined {
  const f = fault(r);
  if (!f) return undefined;
  const background = r.boolean('background', false);
  const untilAlerts = r.boolean('until_alerts', false);
  return { ...f, name: r.optionalString('name') ?? f.fault, durationMs: r.durationMs('duration'), pauseAfterMs: r.durationMs('pause_after', 0), background, untilAlerts };
}

/** The component a step acts on and the key it is named under, for the blast-radius check. */
function targetOf(s: MethodStep): { key: string; target: string } {
  if ('target' in s) return { key: 'target', target: s.target };
  return 'agent' in s ? { key: 'agent', target: s.agent } : { key: 'server', target: s.server };
}

/** Validates a parsed document; throws ExperimentInvalidError listing every problem. */
export function validateExperiment(doc: unknown, id: string, source = id): Experiment {
  const r = collecting(doc, source);
  const version = r.raw('version').value;
  if (version !== undefined && version !== 1) r.report('version', `must be 1 (got ${shown(version)})`);
  const title = r.requiredString('title');
  const description = r.requiredString('description');
  const tags = r.strings('tags');
  const runbook = r.optionalString('runbook');
  if (r.raw('rollbacks').value !== undefined) r.report('rollbacks', 'not written by hand: every fault carries its own guaranteed rollback');

  const br = r.section('blast-radius');
  const blastRadius = { agents: br.strings('agents'), workloads: br.strings('workloads'), servers: br.strings('servers') };

  if (r.raw('steady-state-hypothesis').value === undefined) r.report('steady-state-hypothesis', 'is required');
  const ss = r.section('steady-state-hypothesis');
  const probes = ss.items('probes', { required: 'a list of probes' }).map(probe).filter((p): p is Probe => !!p);

  const steps = r.items('method', { required: 'an empty list checks the hypothesis only' })
    .map((sr) => ({ sr, s: step(sr) })).filter((x): x is { sr: ConfigReader; s: MethodStep } => !!x.s);
  const method = steps.map(({ s }) => s);
  const names = new Set<string>();
  // Blast radius: every fault target must be declared, so a typo cannot hit the wrong component.
  const declared = new Set([...blastRadius.agents, ...blastRadius.workloads, ...blastRadius.servers]);
  for (const { sr, s } of steps) {
    if (names.has(s.name)) sr.report('name', `${shown(s.name)} is used twice (a step without a name is named after its fault)`);
    names.add(s.name);
    const { key, target } = targetOf(s);
    if (target && !declared.has(target)) sr.report(key, `${shown(target)} is outside the blast radius (declare it under blast-radius)`);
  }

  const expectedAlerts = r.items('expected-alerts').map((ar): ExpectedAlert => {
    const name = ar.requiredString('name');
    const lr = ar.section('labels');
    const labels: Record<string, string> = {};
    for (const k of lr.keys()) labels[k] = lr.optionalString(k) ?? '';
    return { name, labels, withinMs: ar.durationMs('within') };
  });

  for (const { sr, s } of steps) if (s.untilAlerts && expectedAlerts.length === 0) sr.report('until_alerts', 'needs expected-alerts to wait for');

  const haltConditions = r.items('halt-conditions').map((hr): HaltCondition => {
    const name = hr.requiredString('name');
    const query = hr.requiredString('query');
    if (hr.raw('tolerance').value === undefined) hr.report('tolerance', 'is required');
    return { name, query, tolerance: hr.raw('tolerance').value === undefined ? {} : tolerance(hr) };
  });

  const rt = r.section('runtime');
  const runtime = {
    steadyStateTimeoutMs: rt.durationMs('steady_state_timeout', 60_000),
    recoveryTimeoutMs: rt.durationMs('recovery_timeout', 120_000),
    pollIntervalMs: rt.durationMs('poll_interval', 2_000),
  };
  r.rejectUnknown();
  r.done();
  return { version: 1, id, title, description, tags, runbook, blastRadius, steadyState: { title: ss.optionalString('title') ?? title, probes }, method, expectedAlerts, haltConditions, runtime };
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
  let doc: unknown;
  try {
    doc = parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ExperimentInvalidError(file, [`not valid YAML: ${(err as Error).message.split('\n')[0]}`]);
  }
  const r = collecting(doc, file);
  const suite: Suite = { id: path.basename(file, '.yaml'), title: r.requiredString('title'), description: r.optionalString('description') ?? '', experiments: r.strings('experiments'), file };
  if (suite.experiments.length === 0) r.report('experiments', 'must list at least one experiment');
  suite.experiments.forEach((e, i) => {
    try {
      resolveExperiment(e, path.dirname(file));
    } catch (err) {
      r.report(`experiments[${i}]`, (err as Error).message);
    }
  });
  r.done();
  return suite;
}
