import { execa } from 'execa';
import path from 'node:path';
import { runCli } from '../../src/cli/main.js';

const root = path.resolve(import.meta.dirname, '..', '..');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in-process with captured output. */
export async function cli(...argv: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

/** Runs the real `svidscope` executable from source, as a user would. */
export async function cliProcess(...argv: string[]): Promise<CliResult> {
  const r = await execa('node', [path.join(root, 'bin', 'svidscope.js'), ...argv], {
    reject: false,
    env: { SVIDSCOPE_FROM_SOURCE: '1' },
  });
  return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

export function json(result: CliResult): Record<string, unknown> {
  const lines = result.stdout.trim().split('\n');
  if (lines.length !== 1) throw new Error(`expected one JSON line, got ${lines.length}: ${result.stdout}`);
  return JSON.parse(lines[0]) as Record<string, unknown>;
}
