import type { Command } from 'commander';
import { readYamlConfig } from '../../common/config/load.js';
import { createLogger } from '../../common/log.js';
import { buildExporterConfig, startExporter, type ExporterFlags } from '../../exporter/index.js';
import { printResult, type Io } from '../output.js';
import { withErrors } from '../run.js';
import { healthcheck } from '../server/run.js';
import { waitForShutdownSignal } from '../signals.js';

interface RunFlags extends ExporterFlags {
  config?: string;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Registers `exporter run`, `exporter check-config` and `exporter healthcheck`. */
export function registerExporterCommands(program: Command, io: Io): void {
  const exporter = program.command('exporter').description('the fleet-level SVID and bundle lifecycle exporter (Prometheus /metrics)');

  const withConfigFlags = (cmd: Command) => cmd
    .option('--config <file>', 'YAML config file (every key documented in docs/exporter.md)')
    .option('--listen <host:port>', 'overrides listen (/metrics, /healthz, /ready)')
    .option('--source <type:name=target>', 'adds a source: workload_api:NAME=SOCKET, files:NAME=DIR[,DIR], server_admin:NAME=SOCKET (repeatable)', collect)
    .option('--per-svid-series', 'overrides per_svid_series (one expiry series per SVID, capped)')
    .option('--log-level <level>', 'overrides log_level');

  withConfigFlags(exporter.command('run').description('run the exporter until SIGTERM or Ctrl-C'))
    .action(withErrors(io, async (f: RunFlags) => {
      const config = buildExporterConfig(f.config ? readYamlConfig(f.config) : {}, f);
      const logger = createLogger({ name: 'exporter', level: config.logLevel });
      const running = await startExporter(config, { logger });
      await waitForShutdownSignal(logger);
      await running.stop();
    }));

  withConfigFlags(exporter.command('check-config').description('validate the configuration and print the effective sources'))
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: RunFlags & { json?: boolean }) => {
      const config = buildExporterConfig(f.config ? readYamlConfig(f.config) : {}, f);
      printResult(io, f, { config }, () => [
        `listen ${config.listen}, scrape timeout ${config.scrapeTimeoutSeconds}s, max series ${config.maxSeries}, per-SVID series ${config.perSvidSeries ? `on (cap ${config.perSvidMaxSeries})` : 'off'}`,
        ...config.sources.map((s) => `source ${s.name}: ${s.type}, every ${s.intervalSeconds}s`),
        `propagation reference: ${config.propagationReferences.join(', ') || '(none)'}`,
      ]);
    }));

  exporter.command('healthcheck').description('ask a running exporter whether it is ready; exit 0 if so')
    .option('--health-url <url>', 'the exporter\'s HTTP endpoint', 'http://127.0.0.1:9190')
    .option('--live', 'check liveness instead of readiness')
    .option('--json', 'print one JSON object')
    .action(withErrors(io, async (f: { healthUrl: string; live?: boolean; json?: boolean }) => {
      await healthcheck(io, f, 'exporter');
    }));
}
