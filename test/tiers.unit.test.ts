// Every test file runs in exactly one tier (test/tiers.ts), so none is silently left out of CI,
// which runs all three projects, and none runs twice.
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createVitest } from 'vitest/node';
import { FILE_TIER, FOLDER_TIER, TIER_NAMES, tierOf } from './tiers.js';

const root = path.resolve(import.meta.dirname, '..');
const testFiles = (readdirSync(path.join(root, 'test'), { recursive: true }) as string[])
  .map((f) => `test/${f.split(path.sep).join('/')}`)
  .filter((f) => f.endsWith('.test.ts'))
  .sort();

describe('test tiers', () => {
  it('finds the test files', () => expect(testFiles.length).toBeGreaterThan(50));

  it('gives every test file exactly one tier', () => {
    const unplaced = testFiles.filter((f) => tierOf(f) === undefined);
    expect(unplaced, 'add the folder to FOLDER_TIER or the file to FILE_TIER in test/tiers.ts').toEqual([]);
  });

  it('lists only files that exist, each once, and only known folders', () => {
    const listed = TIER_NAMES.flatMap((t) => FILE_TIER[t]);
    expect(listed.filter((f) => !existsSync(path.join(root, f))), 'listed in test/tiers.ts but missing').toEqual([]);
    expect(listed.filter((f, i) => listed.indexOf(f) !== i), 'listed in two tiers').toEqual([]);
    expect(Object.keys(FOLDER_TIER).filter((d) => !existsSync(path.join(root, 'test', d)))).toEqual([]);
  });

  it('a listed file beats its name suffix, which beats its folder', () => {
    expect(tierOf('test/server/x.test.ts')).toBe('integration');
    expect(tierOf('test/server/x.unit.test.ts')).toBe('unit');
    expect(tierOf('test/unit/x.e2e.test.ts')).toBe('e2e');
    expect(tierOf('test/agent/e2e.test.ts')).toBe('e2e');
    expect(tierOf('test/new-folder/x.test.ts')).toBeUndefined();
  });

  it('vitest, with the project configuration, runs every test file once, in the project of its tier', async () => {
    const vitest = await createVitest('test', { watch: false, config: path.join(root, 'vitest.config.ts'), reporters: [] });
    try {
      const specs = await vitest.globTestSpecifications();
      const runs = new Map<string, string[]>();
      for (const s of specs) {
        const file = path.relative(root, s.moduleId).split(path.sep).join('/');
        runs.set(file, [...(runs.get(file) ?? []), s.project.name]);
      }
      expect([...runs.keys()].sort()).toEqual(testFiles);
      for (const f of testFiles) expect(runs.get(f), f).toEqual([tierOf(f)]);
    } finally {
      await vitest.close();
    }
  });
});
