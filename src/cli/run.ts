import { CommandExit, printError, type Io, type OutputOptions } from './output.js';

/**
 * Wraps a command action: any error becomes one line (or one JSON object with --json) and the
 * catalogue's exit code. The options object is commander's last-but-one argument.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function withErrors<A extends any[]>(io: Io, action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (err) {
      if (err instanceof CommandExit) throw err;
      const opts = (args.find((a, i) => i === args.length - 2 && a && typeof a === 'object') ?? {}) as OutputOptions;
      throw new CommandExit(printError(io, opts, err));
    }
  };
}
