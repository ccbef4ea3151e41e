import { readFile } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

/**
 * The simulator's processes run a bundle of `bench/fleet/worker.ts` and the svidscope modules it
 * imports, built once per run with esbuild, instead of TypeScript through tsx's loader:
 *
 * - tsx's ESM hooks run on a loader thread that the main thread waits for in `Atomics.wait`. One
 *   10,000-agent run lost a simulator process, most likely that way (not proven): its main thread
 *   parked on a lock 1.4 s into the attestation, its 27 connections unread, its loader thread idle,
 *   and the run waited out its setup timeout. It has not recurred with the bundle.
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
