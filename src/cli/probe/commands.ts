/**
 * `svidscope probe <module> --target …`: one probe from the terminal, a readable report (each
 * check, pass/fail, timings) or one JSON object, and an exit code for scripts: 0 success,
 * 1 the probe failed, 2 usage or configuration error.
 * `svidscope prober run --config …`: the long-running prober (`/probe`, `/metrics`).
 */
import type { Command } from 'commander';
import { parseDurationSeconds } from '../../common/duration.js';
import { ExitCode, isSvidscopeError } from '../../common/errors/catalog.js';
import { createLogger } from '../../common/log.js';
import {
  buildModule,
  buildProberConfig,
  defaultModules,
  FAILURE_REASONS,
  formatReport,
  isModuleKind,
  loadProberConfig,
  MODULE_KINDS,
  reportJson,
  runProbe,
  startProber,
  type ModuleConfig,
} from '../../probes/index.js';
import { readYamlConfig } from '../../common/config/load.js';
import { CommandExit, jsonReplacer, usageError, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { waitForShutdownSignal } from '../signals.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Flags that set one module setting each: `--foo-bar` sets `foo_bar`. Lists repeat the flag. */
const SETTING_FLAGS: ReadonlyArray<readonly [flag: string, key: string, help: string, list?: boolean]> = [
  ['expected-spiffe-id', 'expected_spiffe_id', 'x509_svid: require (and pick) this SPIFFE ID'],
  ['expected-trust-domain', 'expected_trust_domain', 'x509_svid, jwt_svid: require this trust domain'],
  ['spiffe-id', 'spiffe_id', 'jwt_svid, rotation_watch: the identity to fetch or watch'],
  ['audience', 'audience', 'jwt_svid: audience to request (repeatable; default svidscope-probe)', true],
  ['validate-audience', 'validate_audience', 'jwt_svid: audience to validate for (default: the first requested)'],
  ['server-target', 'server_target', 'mtls: Workload API of the server side (default: --target, two entries)'],
  ['client-spiffe-id', 'client_spiffe_id', 'mtls: the client identity'],
  ['server-spiffe-id', 'server_spiffe_id', 'mtls: the server identity'],
  ['allowed-server-id', 'allowed_server_ids', 'mtls: SPIFFE ID or spiffe://<td> the client accepts (repeatable)', true],
  ['allowed-client-id', 'allowed_client_ids', 'mtls: SPIFFE ID or spiffe://<td> the server accepts (repeatable)', true],
  ['trust-domain', 'trust_domain', 'bundle_endpoint: trust domain of the fetched bundle (required)'],
  ['profile', 'profile', 'bundle_endpoint: https_web (default) or https_spiffe'],
  ['ca-file', 'ca_file', 'bundle_endpoint (https_web): PEM CA file (default: bundled web roots)'],
  ['endpoint-spiffe-id', 'endpoint_spiffe_id', 'bundle_endpoint (https_spiffe): SPIFFE ID the endpoint must present'],
  ['bundle-file', 'bundle_file', 'bundle_endpoint (https_spiffe): bundle of the endpoint\'s trust domain'],
  ['bundle-source', 'bundle_source', 'bundle_endpoint (https_spiffe): Workload API to take that bundle from'],
  ['max-age', 'max_age', 'bundle_endpoint: stale_bundle when the newest authority is older'],
  ['duration', 'duration', 'rotation_watch: how long to hold the stream (default 30s)'],
  ['require-rotation', 'require_rotation', 'rotation_watch: fail unless a rotation arrives (true/false)'],
  ['min-ttl-ratio', 'min_ttl_ratio', 'rotation_overdue below this fraction of lifetime left (default 0.1; 0 = off)'],
  ['clock-skew', 'clock_skew', 'clock-skew tolerance for validity checks (default 5s)'],
];

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function coerce(value: string): unknown {
  if (value === 'true' || value === 'false') return value === 'true';
  return value;
}

/** The module to run: a configured one (with --config) or a kind with its defaults, with the flags layered on top. */
export function resolveModule(name: string, configFile: string | undefined, flags: Record<string, unknown>, sets: readonly string[], timeout: string | undefined): ModuleConfig {
  const modules = configFile ? buildProberConfig(readYamlConfig(configFile)).modules : defaultModules();
  const base = modules.get(name);
  if (!base) {
    throw usageError(`unknown module ${JSON.stringify(name)}: use one of ${MODULE_KINDS.join(', ')}${configFile ? ` or a module of ${configFile}` : ''}`);
  }
  const raw: Record<string, unknown> = { ...base.raw };
  for (const [flag, key, , list] of SETTING_FLAGS) {
    const v = flags[camel(flag)];
    if (v === undefined) continue;
    raw[key] = list ? v : coerce(String(v));
  }
  for (const s of sets) {
    const at = s.indexOf('=');
    if (at <= 0) throw usageError(`--set ${JSON.stringify(s)}: expected key=value`);
    raw[s.slice(0, at)] = coerce(s.slice(at + 1));
  }
  const timeoutSeconds = timeout === undefined ? (configFile ? base.timeoutSeconds : undefined) : parseDurationSeconds(timeout, '--timeout');
  try {
    return buildModule(base.name, base.kind, raw, timeoutSeconds, `module ${base.name}`);
  } catch (err) {
    const m = isSvidscopeError(err) ? /module [^.]+\.([a-z_]+): unknown key/.exec(err.message) : null;
    if (m) throw usageError(`--${m[1].replace(/_/g, '-')} does not apply to the ${base.kind} module`);
    throw err;
  }
}

interface ProbeFlags extends Record<string, unknown> {
  target: string;
  config?: string;
  timeout?: string;
  set?: string[];
  json?: boolean;
}

export function registerProbeCommands(program: Command, io: Io): void {
  const probe = program.command('probe').description('probe a Workload API or bundle endpoint once, as a workload would, and report each check')
    .argument('<module>', `module kind (${MODULE_KINDS.join(', ')}) or a module name from --config`)
    .requiredOption('--target <target>', 'Workload API address (unix:///path, tcp://ip:port, /path) or bundle endpoint URL')
    .option('--config <file>', 'prober config file whose modules to use')
    .option('--timeout <duration>', 'probe timeout (default 10s; rotation_watch: duration + 10s)')
    .option('--set <key=value>', 'any module setting (repeatable)', collect)
    .option('--json', 'print one JSON object');
  for (const [flag, , help, list] of SETTING_FLAGS) {
    if (list) probe.option(`--${flag} <value>`, help, collect);
    else probe.option(`--${flag} <value>`, help);
  }
  probe.addHelpText('after', `\nExit codes: 0 success, 1 the probe failed, 2 usage or configuration error.\nFailure reasons: ${FAILURE_REASONS.join(', ')} (see docs/probes.md).`);
  probe.action(withErrors(io, async (name: string, f: ProbeFlags) => {
    if (!isModuleKind(name) && !f.config) throw usageError(`unknown module ${JSON.stringify(name)}: use one of ${MODULE_KINDS.join(', ')} or pass --config`);
    const module = resolveModule(name, f.config, f, f.set ?? [], f.timeout);
    const result = await runProbe(module, f.target);
    if (f.json) io.out(JSON.stringify({ valid: result.success, ...reportJson(result) }, jsonReplacer));
    else for (const line of formatReport(result)) io.out(line);
    if (!result.success) throw new CommandExit(ExitCode.INVALID);
  }));

  const prober = program.command('prober').description('the long-running prober: /probe (multi-target) and /metrics (scheduled targets)');
  prober.command('run').description('serve /probe, /metrics, /live and /ready; probe the configured targets on their intervals')
    .requiredOption('--config <file>', 'prober config (YAML; see docs/probes.md)')
    .option('--listen <host:port>', 'overrides listen from the config')
    .option('--log-level <level>', 'overrides log_level from the config')
    .action(withErrors(io, async (f: { config: string; listen?: string; logLevel?: string }) => {
      const doc = readYamlConfig(f.config);
      if (f.listen) doc.listen = f.listen;
      if (f.logLevel) doc.log_level = f.logLevel;
      const config = f.listen || f.logLevel ? buildProberConfig(doc) : loadProberConfig(f.config);
      const logger = createLogger({ name: 'prober', level: config.logLevel });
      const running = await startProber(config, { logger });
      io.out(`prober listening on ${running.url} (${config.targets.length} scheduled target(s))`);
      await waitForShutdownSignal(logger);
      await running.stop();
    }));
}

