import { readFile } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

/**
 * The simulator's processes run a bundle of `bench/fleet/worker.ts` and the svidscope modules it
 * imports, built once per run with esbuild, instead of TypeScript through tsx's loader:
 *
 * - One 10,000-agent run lost a simulator process: its main thread parked on a lock 1.4 s into
 *   the attestation, its 27 connections unread, and the run waited out its setup timeout. tsx's
 *   loader thread was suspected then; the cause was later found in key generation (a Node 20
 *   deadlock between a JWK export and the generation job's destructor, see `generateKeyPair` in
 *   spiffe/mint/keys.ts: each simulated agent made a key and exported it for its CSR), and fixed
 *   there. The bundle stays for the reason below.
 * - Without tsx (its esbuild, the source maps of every module) each process starts faster and holds
 *   less heap, so its own collections, timed into the syncs they overlap, are shorter.
 *
 * npm packages stay outside the bundle, so it must be written inside the checkout (`bench/out/`).
 * Modules that find files next to themselves (`import.meta.url`, the protos) keep their own location:
 * each source file's `import.meta.url` and `import.meta.dirname` are written in as constants.
 */
export async function bundleSimulator(entry: string, outfile: string): Promise<void> {
  mkdirSync(path.dirname(outfile), { recursive: true });
  await build({
    entryPoints: [entry], outfile, bundle: true, packages: 'external', platform: 'node', format: 'esm', target: 'node20',
    logLevel: 'error', plugins: [ownLocation],
  });
}

const ownLocation: Plugin = {
  name: 'own-import-meta',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      const contents = source
        .replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href))
        .replaceAll('import.meta.dirname', JSON.stringify(path.dirname(args.path)));
      return { contents, loader: 'ts' };
    });
  },
};
