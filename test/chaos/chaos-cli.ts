// Test entry: the chaos commands alone, until main.ts wires registerChaosCommands.
import { Command, CommanderError } from 'commander';
import { registerChaosCommands } from '../../src/cli/chaos/commands.js';
import { CommandExit, processIo } from '../../src/cli/output.js';

const program = new Command('svidscope').exitOverride();
registerChaosCommands(program, processIo);
try {
  await program.parseAsync(process.argv.slice(2), { from: 'user' });
  process.exit(0);
} catch (err) {
  if (err instanceof CommandExit) process.exit(err.exitCode);
  if (err instanceof CommanderError) process.exit(2);
  throw err;
}
