#!/usr/bin/env node
// Entry point: the compiled CLI when built (`npm run build`), else the TypeScript source through tsx
// so a checkout works before its first build.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const compiled = path.join(root, 'dist', 'cli', 'index.js');
if (existsSync(compiled) && !process.env.SVIDSCOPE_FROM_SOURCE) {
  await import(pathToFileURL(compiled).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(path.join(root, 'src', 'cli', 'index.ts')).href);
}
