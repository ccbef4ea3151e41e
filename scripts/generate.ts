// `npm run generate`: writes every generated artefact from its single source of truth.
// `--check` compares instead of writing and fails on drift (the tests run the same check).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generatedArtefacts } from '../src/generated-artefacts.js';

const root = path.resolve(import.meta.dirname, '..');
const check = process.argv.includes('--check');
let drift = 0;
for (const { file, render } of generatedArtefacts()) {
  const full = path.join(root, file);
  const content = render();
  let current: string | undefined;
  try {
    current = readFileSync(full, 'utf8');
  } catch {
    current = undefined;
  }
  if (current === content) continue;
  if (check) {
    console.error(`out of date: ${file} (run npm run generate)`);
    drift++;
  } else {
    writeFileSync(full, content);
    console.log(`wrote ${file}`);
  }
}
process.exit(drift ? 1 : 0);
