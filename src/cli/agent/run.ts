import type { Command } from 'commander';
import { readYamlConfig } from '../../common/config/load.js';
import { createLogger } from '../../common/log.js';
import { buildAgentConfig, type AgentFlagOverrides } from '../../identity-plane/agent/config.js';
import { startAgent } from '../../identity-plane/agent/agent.js';
import { startTracing } from '../../common/telemetry/tracing.js';
import type { Io } from '../output.js';
import { withErrors } from '../run.js';
import { healthcheck } from '../server/run.js';
import { waitForShutdownSignal } from '../signals.js';

/** The flags of `run`: `--config` plus the overrides the config builder takes. */
interface RunFlags extends AgentFlagOverrides {
  config?: string;
}

/** Registers `agent run` and `agent healthcheck` on the `agent` command. */
export function registerAgentRunCommands(agent: Command, io: Io): void {
  agent.command('run').description('run the node agent (Workload API on a Unix socket) until SIGTERM or Ctrl-C')
    .option('--config <file>', 'YAML config file (every key documented in the README)')
    .option('--trust-domain <td>', 'overrides trust_domain')
    .option('--server-address <host:port[,host:port...]>', 'overrides server_address (several servers on one datastore: the agent moves to the next when its server is unreachable)')
    .option('--data-dir <dir>', 'overrides data_dir (agent SVID, key and last bundle, 0600)')
    .option('--socket-path <path>', 'overrides socket_path (the Workload API socket)')
    .option('--join-token-file <file>', 'overrides join_token_file (a 0600 file holding the token; the safe form)')
    .option('--join-token <token>', 'overrides join_token (VISIBLE to other local users in the process list; prefer --join-token-file)')
    .option('--trust-bundle <file>', 'overrides trust_bundle_path (PEM: the server\'s trust anchors for the first connection)')
    .option('--insecure-bootstrap', 'overrides insecure_bootstrap (trust the server on first contact; test setups only)')
    .option('--health-bind <host:port>', 'overrides health_bind (/live, /ready, /metrics)')
    .option('--log-level <level>', 'overrides log_level')
    .action(withErrors(io, async (f: RunFlags) => {
      const config = buildAgentConfig(f.config ? readYamlConfig(f.config) : {}, f);
      const logger = createLogger({ name: 'agent', level: config.logLevel });
      // /proc/<pid>/cmdline is world-readable: another uid can attest with the token before we do.
      if (f.joinToken) logger.warn({ flag: '--join-token' }, 'the join token on the command line is visible to other local users; use join_token_file (0600) instead');
      const tracing = await startTracing({ serviceName: 'svidscope-agent', logger });
      const running = await startAgent(config, { logger, tracer: tracing.tracer });
      await waitForShutdownSignal(logger);
      await running.stop();
      await tracing.shutdown();
    }));

  agent.command('healthcheck').description('ask a running agent whether it is ready; exit 0 if so')
    .option('--health-url <url>', 'the agent\'s ops endpoint', 'http://127.0.0.1:8088')
    .option('--live', 'check liveness instead of readiness')
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: { healthUrl: string; live?: boolean; json?: boolean }) => {
      await healthcheck(io, f, 'agent');
    }));
}
