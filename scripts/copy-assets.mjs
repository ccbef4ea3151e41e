// Copies the non-TypeScript files the compiled code loads at run time (the .proto files) into dist/.
import { cpSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) walk(full);
    else if (name.endsWith('.proto')) cpSync(full, path.join(root, 'dist', path.relative(path.join(root, 'src'), full)));
  }
}
walk(path.join(root, 'src'));
