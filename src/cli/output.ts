import { ExitCode, SvidscopeError, isSvidscopeError, type ErrorCode } from '../common/errors/catalog.js';

/** Global output options every command receives. */
export interface OutputOptions {
  json?: boolean;
}

/** Where commands write; injected so tests can capture output without spawning processes. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

export const processIo: Io = {
  out: (line) => process.stdout.write(line + '\n'),
  err: (line) => process.stderr.write(line + '\n'),
};

/** Thrown by commands to end with a given exit code after printing. */
export class CommandExit extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}

/**
 * Prints a success: one JSON object with `--json`, else the readable lines.
 * `valid: true` leads the JSON object so scripts can branch on one field for success and failure.
 */
export function printResult(io: Io, opts: OutputOptions, result: Record<string, unknown>, readable: () => string[]): void {
  if (opts.json) io.out(JSON.stringify({ valid: true, ...result }, jsonReplacer));
  else for (const line of readable()) io.out(line);
}

/** Prints a failure as one line (never a stack trace) and returns the exit code from the catalogue. */
export function printError(io: Io, opts: OutputOptions, err: unknown): number {
  const described = describeError(err);
  const { code, exit } = described;
  // One line, always: messages quoting untrusted input may carry its newlines.
  const message = described.message.replace(/\s*\n\s*/g, ' ').trim();
  if (opts.json) io.out(JSON.stringify({ valid: false, error: code, message }));
  else io.err(`error: ${message} [${code}]`);
  if (process.env.SVIDSCOPE_DEBUG && err instanceof Error && err.stack) io.err(err.stack);
  return exit;
}

export function describeError(err: unknown): { code: ErrorCode; message: string; exit: number } {
  if (isSvidscopeError(err)) return { code: err.code, message: err.message, exit: err.exitCode };
  const nodeCode = (err as { code?: unknown })?.code;
  if (nodeCode === 'ENOENT' || nodeCode === 'EACCES' || nodeCode === 'EISDIR') {
    return { code: 'io-error', message: (err as Error).message, exit: ExitCode.IO };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'internal', message: `internal error: ${message}`, exit: ExitCode.INTERNAL };
}

export function usageError(message: string): SvidscopeError {
  return new SvidscopeError('usage', message);
}

/** JSON for bigint (sequence numbers), Dates as RFC 3339, Buffers as base64. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  return value;
}
