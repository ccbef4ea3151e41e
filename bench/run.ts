/**
 * The benchmark runner: `npm run bench -- <name>` runs `bench/<name>.bench.ts`.
 *
 * Convention for every benchmark: it prints readable figures as it goes, and the runner ends the
 * output with exactly one line holding a JSON object of the figures (plus the machine they were
 * measured on), so scripts can take the last line and humans can read the rest. Each result is
 * also appended to `bench/out/<name>.json` (a JSON array, gitignored) to compare runs over time.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** What a benchmark may do besides computing: print a readable line. */
export interface BenchContext {
  log(line: string): void;
  /** What followed the benchmark's name on the command line (`npm run bench -- fleet --agents 1000`). */
  readonly args?: readonly string[];
}

/** The figures a benchmark returns: flat, so the JSON line stays easy to grep and to diff. */
export type BenchFigures = Record<string, number | string | boolean>;

/** A `bench/<name>.bench.ts` module's default export. */
export type Bench = (ctx: BenchContext) => Promise<BenchFigures>;

export interface MachineDescription {
  readonly cpuModel: string;
  readonly nproc: number;
  /** CPUs this process may run on (differs from nproc under `taskset` or a cgroup cpuset). */
  readonly cpusAllowed: string;
  readonly memoryGiB: number;
  readonly node: string;
  readonly platform: string;
}

export function describeMachine(): MachineDescription {
  let cpusAllowed = 'unknown';
  try {
    cpusAllowed = /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? cpusAllowed;
  } catch {
    // not Linux: leave it unknown rather than guess
  }
  return {
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    nproc: availableParallelism(),
    cpusAllowed,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

const benchDir = dirname(fileURLToPath(import.meta.url));

function available(): string[] {
  return readdirSync(benchDir)
    .filter((f) => f.endsWith('.bench.ts'))
    .map((f) => f.slice(0, -'.bench.ts'.length))
    .sort();
}

async function main(argv: readonly string[]): Promise<number> {
  const name = argv[0];
  if (!name || !/^[a-z0-9][a-z0-9-]*$/.test(name) || !existsSync(join(benchDir, `${name}.bench.ts`))) {
    process.stderr.write(`usage: npm run bench -- <name> [options]\navailable: ${available().join(', ') || '(none)'}\n`);
    return 2;
  }
  const mod = (await import(pathToFileURL(join(benchDir, `${name}.bench.ts`)).href)) as { default?: Bench };
  if (typeof mod.default !== 'function') {
    process.stderr.write(`bench/${name}.bench.ts has no default export function\n`);
    return 2;
  }
  const machine = describeMachine();
  const log = (line: string) => process.stdout.write(line + '\n');
  log(`bench ${name} on ${machine.cpuModel}, nproc ${machine.nproc}, cpus allowed ${machine.cpusAllowed}, node ${machine.node}`);
  const figures = await mod.default({ log, args: argv.slice(1) });
  const result = { bench: name, at: new Date().toISOString(), ...figures, machine };
  appendResult(name, result);
  log(JSON.stringify(result));
  return 0;
}

function appendResult(name: string, result: object): void {
  const outDir = join(benchDir, 'out');
  const file = join(outDir, `${name}.json`);
  mkdirSync(outDir, { recursive: true });
  let previous: unknown[] = [];
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (Array.isArray(parsed)) previous = parsed;
  } catch {
    // first run, or a damaged file: start a fresh history rather than fail the benchmark
  }
  writeFileSync(file, JSON.stringify([...previous, result], null, 2) + '\n');
}

const invokedDirectly = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
