import { build } from 'esbuild';
import { chmodSync, copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const root = path.resolve(import.meta.dirname, '..', '..');

/**
 * Bundles a test script and its npm dependencies into one self-contained file in `outDir`, with
 * the Workload API proto beside it, all world-readable. Scripts run as other uids must not depend
 * on reading the project tree, which may sit in a directory only root can enter (a CI clone in a
 * 0700 temp dir, for one).
 */
export async function portableScript(entry: string, outDir: string): Promise<{ script: string; proto: string }> {
  mkdirSync(outDir, { recursive: true, mode: 0o755 });
  const script = path.join(outDir, `${path.basename(entry).replace(/\.[cm]?[jt]s$/, '')}.bundle.cjs`);
  // Modules that find their .proto beside themselves through import.meta.url look in <outDir>/proto/.
  await build({ entryPoints: [entry], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: script, logLevel: 'error',
    define: { 'import.meta.url': JSON.stringify(pathToFileURL(script).href) } });
  chmodSync(script, 0o644);
  mkdirSync(path.join(outDir, 'proto'), { recursive: true, mode: 0o755 });
  const proto = path.join(outDir, 'proto', 'workload.proto');
  copyFileSync(path.join(root, 'src', 'identity-plane', 'workload-api', 'proto', 'workload.proto'), proto);
  chmodSync(proto, 0o644);
  return { script, proto };
}
