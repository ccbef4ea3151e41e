import { describe, expect, it } from 'vitest';
import { joinPathSegments, parseSpiffeId, parseTrustDomain, validatePath } from '../../src/identity-plane/spiffe/id/index.js';
import { loadCases } from '../support/conformance.js';
import { codeOf } from '../support/errors.js';

interface IdCase { input: string; valid: boolean; error: string | null; trustDomain?: string | null; path?: string | null }
interface PathCase { kind: 'path' | 'segments'; input: string | string[]; valid: boolean; error: string | null; path?: string | null }

const label = (c: { input: unknown; valid: boolean; error: string | null }) =>
  `${JSON.stringify(c.input).slice(0, 80)} -> ${c.valid ? 'valid' : c.error}`;

describe('conformance: spiffe-id.json', () => {
  const cases = loadCases<IdCase>('spiffe-id.json');
  it('holds the expected number of cases', () => expect(cases.length).toBeGreaterThanOrEqual(675));
  it.each(cases.map((c) => [label(c), c] as const))('%s', (_name, c) => {
    if (c.valid) {
      const id = parseSpiffeId(c.input);
      expect(id.trustDomain.name).toBe(c.trustDomain);
      expect(id.path).toBe(c.path);
      expect(id.toString()).toBe(c.input);
    } else {
      expect(codeOf(() => parseSpiffeId(c.input))).toBe(c.error);
    }
  });
});

describe('conformance: trust-domain.json', () => {
  const cases = loadCases<IdCase>('trust-domain.json');
  it.each(cases.map((c) => [label(c), c] as const))('%s', (_name, c) => {
    if (c.valid) {
      expect(parseTrustDomain(c.input).name).toBe(c.trustDomain);
    } else {
      expect(codeOf(() => parseTrustDomain(c.input))).toBe(c.error);
    }
  });
});

describe('conformance: path.json', () => {
  const cases = loadCases<PathCase>('path.json');
  it.each(cases.map((c) => [`${c.kind} ${label(c)}`, c] as const))('%s', (_name, c) => {
    const run = () => (c.kind === 'path' ? validatePath(c.input as string) : joinPathSegments(c.input as string[]));
    if (c.valid) {
      const out = run();
      if (c.kind === 'segments' && typeof c.path === 'string') expect(out).toBe(c.path);
    } else {
      expect(codeOf(run)).toBe(c.error);
    }
  });
});
