import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The shared conformance vectors live beside the project (`../shared/conformance`); never copied in. */
export const conformanceDir = process.env.SVIDSCOPE_CONFORMANCE_DIR ?? path.resolve(projectRoot, '..', 'shared', 'conformance');

export function loadCases<T>(file: string): T[] {
  const full = path.join(conformanceDir, file);
  if (!existsSync(full)) throw new Error(`conformance vectors not found at ${full}; set SVIDSCOPE_CONFORMANCE_DIR`);
  return JSON.parse(readFileSync(full, 'utf8')) as T[];
}

export function fixturePath(relative: string): string {
  return path.join(conformanceDir, relative);
}

export function readFixture(relative: string): Buffer {
  return readFileSync(fixturePath(relative));
}
