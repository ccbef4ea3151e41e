import { chmodSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const fromSource = fileURLToPath(import.meta.url).endsWith('.ts');

/**
 * The node arguments that run the bare client script (bare-client.ts) with `args`. From dist/ that
 * is the compiled script. From source, the script and its npm dependencies are bundled once into
 * `workDir` with esbuild (present wherever tsx is): loading TypeScript through tsx costs each of
 * the many clients seconds of CPU at start, which would be timed as the agent's. The bundle finds
 * the proto where proto.ts is.
 */
export async function bareClientArgs(workDir: string, args: readonly string[]): Promise<string[]> {
  if (!fromSource) return [path.join(here, 'bare-client.js'), ...args];
  const script = path.join(workDir, 'bare-client.cjs');
  mkdirSync(workDir, { recursive: true });
  const { build } = await import('esbuild');
  await build({
    entryPoints: [path.join(here, 'bare-client.ts')], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: script, logLevel: 'error',
    define: { 'import.meta.url': JSON.stringify(pathToFileURL(path.join(here, 'proto.ts')).href) },
  });
  chmodSync(script, 0o644);
  return [script, ...args];
}
