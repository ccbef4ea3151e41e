import type { Command } from 'commander';
import { readYamlConfig } from '../../common/config/load.js';
import { createLogger } from '../../common/log.js';
import { buildServerConfig } from '../../identity-plane/server/config.js';
import { startServer } from '../../identity-plane/server/server.js';
import { startTracing } from '../../common/telemetry/tracing.js';
import { SvidscopeError } from '../../common/errors/catalog.js';
import { printResult, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { waitForShutdownSignal } from '../signals.js';

interface RunFlags {
  config?: string;
  trustDomain?: string;
  dataDir?: string;
  bind?: string;
  adminSocket?: string;
  healthBind?: string;
  logLevel?: string;
}

export function registerServerCommands(program: Command, io: Io): void {
  const server = program.command('server').description('the identity plane server: CA, registration, attestation, SVID signing');

  server.command('run').description('run the server until SIGTERM or Ctrl-C')
    .option('--config <file>', 'YAML config file (every key documented in the README)')
    .option('--trust-domain <td>', 'overrides trust_domain')
    .option('--data-dir <dir>', 'overrides data_dir (keys, journal, SQLite database)')
    .option('--bind <host:port>', 'overrides bind (agent API, mTLS)')
    .option('--admin-socket <path>', 'overrides admin_socket')
    .option('--health-bind <host:port>', 'overrides health_bind (/live, /ready, /metrics)')
    .option('--log-level <level>', 'overrides log_level')
    .action(withErrors(io, async (f: RunFlags) => {
      const config = buildServerConfig(f.config ? readYamlConfig(f.config) : {}, f);
      const logger = createLogger({ name: 'server', level: config.logLevel });
      const tracing = await startTracing({ serviceName: 'svidscope-server', logger });
      const running = await startServer(config, { logger, tracer: tracing.tracer });
      await waitForShutdownSignal(logger);
      await running.stop();
      await tracing.shutdown();
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
