import { lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliProcess, json } from '../support/cli.js';

/**
 * Issue 14 item 8: secrets the CLI writes must land in a fresh 0600 file. A symlink planted at the
 * output path must be replaced, not followed (its target keeps its content), and a file that was
 * there before with a looser mode must not keep that mode with a secret in it.
 */
const dir = mkdtempSync(path.join(os.tmpdir(), 'svidscope-secret-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const f = (name: string) => path.join(dir, name);

let ca: { files: { caCert: string; caKey: string; jwtKey: string; bundle: string }; jwtKeyId: string };
beforeAll(async () => {
  const r = await cli('ca', 'init', '--trust-domain', 'example.org', '--out-dir', f('ca'), '--json');
  expect(r.code, r.stderr).toBe(0);
  ca = json(r) as typeof ca;
});

/** A file the victim owns, readable by all, and a symlink to it where the secret will be written. */
function plant(link: string): string {
  const victim = `${link}.victim`;
  writeFileSync(victim, 'do not overwrite\n', { mode: 0o644 });
  symlinkSync(victim, link);
  return victim;
}

function expectPrivateRegular(file: string, mode = 0o600): void {
  const st = lstatSync(file);
  expect(st.isSymbolicLink()).toBe(false);
  expect(st.isFile()).toBe(true);
  expect(st.mode & 0o777).toBe(mode);
}

describe('CLI output files', () => {
  it('jwt-svid mint --out replaces a planted symlink with a 0600 file and leaves its target alone', async () => {
    const out = f('token');
    const victim = plant(out);
    const r = await cliProcess('jwt-svid', 'mint', '--key', ca.files.jwtKey, '--key-id', ca.jwtKeyId, '--spiffe-id', 'spiffe://example.org/web', '--audience', 'api', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(victim, 'utf8')).toBe('do not overwrite\n');
    expectPrivateRegular(out);
    expect(readFileSync(out, 'utf8').split('.')).toHaveLength(3);
  });

  it('jwt-svid mint --out does not keep the 0644 mode of a file that was there before', async () => {
    const out = f('token-old');
    writeFileSync(out, 'old\n', { mode: 0o644 });
    const r = await cliProcess('jwt-svid', 'mint', '--key', ca.files.jwtKey, '--key-id', ca.jwtKeyId, '--spiffe-id', 'spiffe://example.org/web', '--audience', 'api', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expectPrivateRegular(out);
  });

  it('x509-svid mint replaces planted symlinks at the key and chain paths', async () => {
    const out = f('web');
    const keyVictim = plant(`${out}.key.pem`);
    const chainVictim = plant(`${out}.pem`);
    const r = await cliProcess('x509-svid', 'mint', '--ca-cert', ca.files.caCert, '--ca-key', ca.files.caKey, '--spiffe-id', 'spiffe://example.org/web', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(keyVictim, 'utf8')).toBe('do not overwrite\n');
    expect(readFileSync(chainVictim, 'utf8')).toBe('do not overwrite\n');
    expectPrivateRegular(`${out}.key.pem`);
    expect(readFileSync(`${out}.key.pem`, 'utf8')).toContain('PRIVATE KEY');
    expect(lstatSync(`${out}.pem`).isSymbolicLink()).toBe(false);
  });

  it('ca init replaces planted symlinks at the key, certificate and bundle paths', async () => {
    const out = f('ca2');
    const r0 = await cli('ca', 'init', '--trust-domain', 'example.org', '--out-dir', out, '--json');
    expect(r0.code).toBe(0);
    for (const name of ['ca.key.pem', 'jwt.key.pem', 'ca.pem', 'bundle.json']) rmSync(path.join(out, name));
    const victims = ['ca.key.pem', 'jwt.key.pem', 'ca.pem', 'bundle.json'].map((name) => plant(path.join(out, name)));
    const r = await cliProcess('ca', 'init', '--trust-domain', 'example.org', '--out-dir', out);
    expect(r.code, r.stderr).toBe(0);
    for (const v of victims) expect(readFileSync(v, 'utf8')).toBe('do not overwrite\n');
    expectPrivateRegular(path.join(out, 'ca.key.pem'));
    expectPrivateRegular(path.join(out, 'jwt.key.pem'));
    expect(lstatSync(path.join(out, 'bundle.json')).isSymbolicLink()).toBe(false);
  });
});
