import { Command, CommanderError } from 'commander';
import { ExitCode } from '../common/errors/catalog.js';
import { CommandExit, processIo, type Io } from './output.js';
import { registerAgentAdminCommands } from './admin/agent.js';
import { registerAgentRunCommands } from './agent/run.js';
import { registerAgentApiCommands } from './agent-api/commands.js';
import { registerSampleWorkload } from './up/sample-workload.js';
import { registerUp } from './up/up.js';
import { registerProbeCommands } from './probe/commands.js';
import { registerExporterCommands } from './exporter/commands.js';
import { registerChaosCommands } from './chaos/commands.js';
import { registerEntryCommands } from './admin/entry.js';
import { registerTokenCommands } from './admin/token.js';
import { registerFederationCommands } from './admin/federation.js';
import { registerAuthorityCommands } from './admin/authority.js';
import { registerBundleCommands } from './bundle/commands.js';
import { registerServerCommands } from './server/run.js';
import { registerSpiffeIdParse } from './spiffe-id/parse.js';
import { registerCaCommands } from './svid/ca.js';
import { registerJwtSvidCommands } from './svid/jwt.js';
import { registerX509SvidCommands } from './svid/x509.js';

export const VERSION = '0.1.0';

/** Builds the whole `svidscope <noun> <verb>` tree. Every command gets --help from commander. */
export function buildProgram(io: Io = processIo): Command {
  const program = new Command('svidscope')
    .description('SPIFFE identity plane with metrics, probes, SLO alerts and game days')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)');

  const spiffeId = program.command('spiffe-id').description('SPIFFE ID utilities');
  registerSpiffeIdParse(spiffeId, io);
  registerX509SvidCommands(program, io);
  registerJwtSvidCommands(program, io);
  registerBundleCommands(program, io);
  registerCaCommands(program, io);
  registerServerCommands(program, io);
  registerEntryCommands(program, io);
  registerTokenCommands(program, io);
  registerFederationCommands(program, io);
  registerAuthorityCommands(program, io);
  const agent = program.command('agent').description('the node agent, and agent administration on the server');
  registerAgentRunCommands(agent, io);
  registerAgentAdminCommands(agent, io);
  registerAgentApiCommands(agent, io);
  registerSampleWorkload(program, io);
  registerProbeCommands(program, io);
  registerExporterCommands(program, io);
  registerChaosCommands(program, io);
  registerUp(program, io);

  return program;
}

/** Runs the CLI and returns the exit code (no process.exit here, so tests can call it in-process). */
export async function runCli(argv: string[], io: Io = processIo): Promise<number> {
  const program = buildProgram(io);
  const wantsJson = argv.includes('--json');
  program.exitOverride();
  program.configureOutput({
    writeOut: (s) => io.out(s.replace(/\n$/, '')),
    writeErr: (s) => {
      if (!wantsJson) io.err(s.replace(/\n$/, ''));
    },
  });
  for (const cmd of allCommands(program)) {
    cmd.exitOverride();
    cmd.configureOutput(program.configureOutput());
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ExitCode.OK;
  } catch (err) {
    if (err instanceof CommandExit) return err.exitCode;
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return ExitCode.OK;
      if (wantsJson) io.out(JSON.stringify({ valid: false, error: 'usage', message: err.message.replace(/^error: /, '') }));
      return ExitCode.USAGE;
    }
    throw err;
  }
}

function allCommands(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allCommands(c)]);
}
