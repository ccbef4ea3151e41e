import type { Command } from 'commander';
import { readYamlConfig } from '../../common/config/load.js';
import { createLogger } from '../../common/log.js';
import { buildServerConfig, type ServerFlagOverrides } from '../../identity-plane/server/config.js';
import { startServer } from '../../identity-plane/server/server.js';
import { startTracing } from '../../common/telemetry/tracing.js';
import { formatDuration } from '../../common/duration.js';
import { ExitCode, SvidscopeError } from '../../common/errors/catalog.js';
import { lintServerConfig } from '../../identity-plane/server/config-lint.js';
import { CommandExit, printResult, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { waitForShutdownSignal } from '../signals.js';

/** The flags of `run`: `--config` plus the overrides the config builder takes. */
interface RunFlags extends ServerFlagOverrides {
  config?: string;
}

export function registerServerCommands(program: Command, io: Io): void {
  const server = program.command('server').description('the identity plane server: CA, registration, attestation, SVID signing');

  const withConfigFlags = (cmd: Command) => cmd
    .option('--config <file>', 'YAML config file (every key documented in the README)')
    .option('--trust-domain <td>', 'overrides trust_domain')
    .option('--data-dir <dir>', 'overrides data_dir (keys, journal, SQLite database)')
    .option('--bind <host:port>', 'overrides bind (agent API, mTLS)')
    .option('--admin-socket <path>', 'overrides admin_socket')
    .option('--health-bind <host:port>', 'overrides health_bind (/live, /ready, /metrics)')
    .option('--log-level <level>', 'overrides log_level');

  withConfigFlags(server.command('run').description('run the server until SIGTERM or Ctrl-C'))
    .action(withErrors(io, async (f: RunFlags) => {
      const config = buildServerConfig(f.config ? readYamlConfig(f.config) : {}, f);
      const logger = createLogger({ name: 'server', level: config.logLevel });
      // Unsafe rotation settings do not stop the server: they are one warning each (`server check-config` explains them).
      for (const finding of lintServerConfig(config)) logger.warn({ code: finding.code, setting: finding.setting, severity: finding.severity }, `config: ${finding.message}`);
      const tracing = await startTracing({ serviceName: 'svidscope-server', logger });
      const running = await startServer(config, { logger, tracer: tracing.tracer });
      await waitForShutdownSignal(logger);
      await running.stop();
      await tracing.shutdown();
    }));

  withConfigFlags(server.command('check-config').description('validate the configuration and lint settings that make key rotation or revocation unsafe'))
    .option('--strict', 'fail on warnings too')
    .option('--json', 'print one JSON object')
    .addHelpText('after', '\nExit codes: 0 valid, no error findings (warnings allowed unless --strict); 1 error findings (or warnings with --strict); 2 invalid configuration or usage.\nFindings: SVID and JWT TTLs against the CA/JWT key lifetime and activation window, the published refresh hint against the propagation window, and refresh intervals that keep a revoked key trusted (README: Server configuration).')
    .action(withErrors(io, async (f: RunFlags & { json?: boolean; strict?: boolean }) => {
      const config = buildServerConfig(f.config ? readYamlConfig(f.config) : {}, f);
      const findings = lintServerConfig(config);
      const failed = findings.some((x) => x.severity === 'error' || f.strict);
      const { ttlSeconds, prepareFraction, activateFraction } = config.ca;
      if (f.json) {
        io.out(JSON.stringify({ valid: !failed, trustDomain: config.trustDomain.name, findings }));
      } else {
        io.out(`trust domain ${config.trustDomain.name}: CA/JWT key lifetime ${formatDuration(ttlSeconds)}, successor published after ${formatDuration(ttlSeconds * prepareFraction)}, active after ${formatDuration(ttlSeconds * activateFraction)}`);
        for (const x of findings) io.out(`${x.severity}: ${x.setting}: ${x.message} [${x.code}]`);
        io.out(findings.length === 0 ? 'no findings' : `${findings.filter((x) => x.severity === 'error').length} error(s), ${findings.filter((x) => x.severity === 'warning').length} warning(s)`);
      }
      if (failed) throw new CommandExit(ExitCode.INVALID);
    }));

  server.command('healthcheck').description('ask a running server whether it is ready; exit 0 if so')
    .option('--health-url <url>', 'the server\'s ops endpoint', 'http://127.0.0.1:8080')
    .option('--live', 'check liveness instead of readiness')
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: { healthUrl: string; live?: boolean; json?: boolean }) => {
      await healthcheck(io, f, 'server');
    }));
}

export async function healthcheck(io: Io, f: { healthUrl: string; live?: boolean; json?: boolean }, what: string): Promise<void> {
  const url = `${f.healthUrl.replace(/\/$/, '')}/${f.live ? 'live' : 'ready'}`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  } catch (err) {
    throw new SvidscopeError('unavailable', `${what} is not reachable at ${url}: ${(err as Error).message}`);
  }
  const body = (await res.json().catch(() => ({}))) as { checks?: Record<string, string> };
  if (!res.ok) {
    const failing = Object.entries(body.checks ?? {}).filter(([, v]) => v !== 'ok').map(([k, v]) => `${k}: ${v}`).join('; ');
    throw new SvidscopeError('unavailable', `${what} is not ${f.live ? 'live' : 'ready'} (${res.status})${failing ? `: ${failing}` : ''}`);
  }
  printResult(io, f, { url, checks: body.checks ?? {} }, () => [`${what} is ${f.live ? 'live' : 'ready'} (${url})`]);
}
