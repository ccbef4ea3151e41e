import { describe, expect, it } from 'vitest';
import { cli, cliProcess, json } from '../support/cli.js';

describe('svidscope spiffe-id parse', () => {
  it('prints trust domain and path as JSON', async () => {
    const r = await cli('spiffe-id', 'parse', 'spiffe://example.org/ns/prod', '--json');
    expect(r.code).toBe(0);
    expect(json(r)).toEqual({ valid: true, spiffeId: 'spiffe://example.org/ns/prod', trustDomain: 'example.org', path: '/ns/prod' });
  });

  it('names the broken rule with its category and exits non-zero', async () => {
    const r = await cli('spiffe-id', 'parse', 'spiffe://example.org/a/../b', '--json');
    expect(r.code).toBe(1);
    expect(json(r)).toMatchObject({ valid: false, error: 'bad-path-segment-dot' });
    expect(String(json(r).message)).toContain('dot');
  });

  it('prints a readable one-line reason without --json', async () => {
    const r = await cli('spiffe-id', 'parse', 'https://example.org/x');
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^error: spiffeid: scheme must be "spiffe".*\[wrong-scheme\]$/);
  });

  it('reports usage errors as JSON with exit 2', async () => {
    const r = await cli('spiffe-id', 'parse', '--json');
    expect(r.code).toBe(2);
    expect(json(r)).toMatchObject({ valid: false, error: 'usage' });
  });

  it('the real executable prints help and never a stack trace', async () => {
    const help = await cliProcess('spiffe-id', 'parse', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: svidscope spiffe-id parse');
    const bad = await cliProcess('spiffe-id', 'parse', 'spiffe://UPPER.example/x');
    expect(bad.code).toBe(1);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
    expect(bad.stderr).toContain('[bad-trust-domain-char]');
  });
});
