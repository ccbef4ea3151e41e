import { Command } from 'commander';
import { registerFederationCommands } from '../../../src/cli/admin/federation.js';
import { CommandExit } from '../../../src/cli/output.js';

export interface FederationCliResult {
  code: number;
  out: string[];
  err: string[];
}

/** Runs `svidscope federation …` in process against `socket`. */
export async function federationCli(socket: string, ...argv: string[]): Promise<FederationCliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const program = new Command('svidscope').exitOverride();
  registerFederationCommands(program, { out: (l) => out.push(l), err: (l) => err.push(l) });
  for (const c of program.commands.flatMap((c) => [c, ...c.commands])) c.exitOverride();
  try {
    await program.parseAsync(['federation', ...argv, '--admin-socket', socket], { from: 'user' });
    return { code: 0, out, err };
  } catch (e) {
    if (e instanceof CommandExit) return { code: e.exitCode, out, err };
    throw e;
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const cliJson = (r: FederationCliResult): Record<string, any> => JSON.parse(r.out.join('\n')) as Record<string, unknown>;
