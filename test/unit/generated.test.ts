import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { generatedArtefacts } from '../../src/generated-artefacts.js';
import { errorCodes } from '../../src/common/errors/catalog.js';

const root = path.resolve(import.meta.dirname, '..', '..');

describe('generated artefacts', () => {
  it.each(generatedArtefacts().map((a) => [a.file, a] as const))('%s matches its source (run npm run generate)', (_f, a) => {
    expect(readFileSync(path.join(root, a.file), 'utf8')).toBe(a.render());
  });

  it('docs/errors.md lists every catalogue code, and nothing else', () => {
    const doc = readFileSync(path.join(root, 'docs/errors.md'), 'utf8');
    const documented = [...doc.matchAll(/^\| `([a-z0-9-]+)` \|/gm)].map((m) => m[1]);
    expect(new Set(documented)).toEqual(new Set(errorCodes));
  });
});
