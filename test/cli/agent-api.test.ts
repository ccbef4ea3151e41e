import * as grpc from '@grpc/grpc-js';
import { Command, CommanderError } from 'commander';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { registerAgentApiCommands } from '../../src/cli/agent-api/commands.js';
import { CommandExit, type Io } from '../../src/cli/output.js';
import { parseX509Bundle } from '../../src/identity-plane/spiffe/bundle/index.js';
import { parseX509Svid, verifyX509Svid } from '../../src/identity-plane/spiffe/x509svid/index.js';
import { BundleSet } from '../../src/identity-plane/spiffe/bundle/index.js';
import { startFakeWorkloadApi, type FakeWorkloadApi } from '../support/fake-workload-api.js';
import { removeDir, tempDir } from '../support/server.js';
import { EXAMPLE_ORG } from '../support/trust-domains.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `svidscope agent api …` in-process, the way src/cli/main.ts runs every command. */
async function run(env: Record<string, string | undefined>, ...argv: string[]): Promise<Result> {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (l) => out.push(l), err: (l) => err.push(l) };
  const program = new Command('svidscope');
  registerAgentApiCommands(program.command('agent'), io, env);
  const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)];
  for (const c of all(program)) c.exitOverride().configureOutput({ writeOut: (s) => out.push(s.trimEnd()), writeErr: (s) => err.push(s.trimEnd()) });
  try {
    await program.parseAsync(['agent', 'api', ...argv], { from: 'user' });
    return { code: 0, stdout: out.join('\n'), stderr: err.join('\n') };
  } catch (e) {
    if (e instanceof CommandExit) return { code: e.exitCode, stdout: out.join('\n'), stderr: err.join('\n') };
    if (e instanceof CommanderError) return { code: 2, stdout: out.join('\n'), stderr: err.join('\n') };
    throw e;
  }
}

const json = (r: Result) => {
  const lines = r.stdout.trim().split('\n');
  expect(lines.length, r.stdout + r.stderr).toBe(1);
  return JSON.parse(lines[0]) as Record<string, unknown>;
};

let fake: FakeWorkloadApi;
const dir = tempDir('agent-api-cli');
const api = (...argv: string[]) => run({}, ...argv, '--socket-path', fake.socketPath);

beforeAll(async () => {
  fake = await startFakeWorkloadApi({ ids: ['spiffe://example.org/web', 'spiffe://example.org/db'] });
});
afterAll(async () => {
  await fake.stop();
  removeDir(dir);
});
afterEach(() => {
  fake.clearRefusals();
  fake.setDelay(0);
});

describe('agent api fetch x509', () => {
  it('prints SPIFFE IDs, hints, expiry and bundle trust domains', async () => {
    const r = await api('fetch', 'x509');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Received 2 svids');
    expect(r.stdout).toContain('SPIFFE ID         : spiffe://example.org/web');
    expect(r.stdout).toContain('Hint              : hint-1');
    expect(r.stdout).toMatch(/SVID valid until {2}: \d{4}-\d\d-\d\dT/);
    expect(r.stdout).toContain('Bundles           : example.org (1 authority), other.org (1 authority)');
  });

  it('prints one JSON object with --json', async () => {
    const out = json(await api('fetch', 'x509', '--json'));
    expect(out).toMatchObject({ valid: true, files: [] });
    expect((out.svids as { spiffeId: string; hint: string }[]).map((s) => [s.spiffeId, s.hint])).toEqual([['spiffe://example.org/web', 'hint-0'], ['spiffe://example.org/db', 'hint-1']]);
    expect((out.bundles as { trustDomain: string }[]).map((b) => b.trustDomain)).toEqual(['example.org', 'other.org']);
  });

  it('writes SPIRE\'s file layout with the key owner-only', async () => {
    const out = path.join(dir, 'x509');
    const r = await api('fetch', 'x509', '--write', out);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual([
      'bundle.0.pem', 'bundle.1.pem', 'federated_bundle.0.0.pem', 'federated_bundle.1.0.pem',
      'svid.0.key', 'svid.0.pem', 'svid.1.key', 'svid.1.pem',
    ]);
    expect(statSync(path.join(out, 'svid.0.key')).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(out, 'svid.0.pem')).mode & 0o777).toBe(0o644);
    const svid = parseX509Svid(readFileSync(path.join(out, 'svid.0.pem')), readFileSync(path.join(out, 'svid.0.key')));
    const bundle = parseX509Bundle(EXAMPLE_ORG, readFileSync(path.join(out, 'bundle.0.pem')));
    expect(verifyX509Svid(svid.certificates, new BundleSet([bundle]), { now: new Date() }).id.toString()).toBe('spiffe://example.org/web');
    expect(parseX509Bundle(mustTrustDomain('other.org'), readFileSync(path.join(out, 'federated_bundle.0.0.pem'))).x509Authorities[0].der.equals(fake.federatedCa.der)).toBe(true);
    expect(r.stdout).toContain(`Wrote 8 files to ${out}`);
  });
});

describe('agent api fetch jwt / bundles / validate', () => {
  it('prints tokens and writes them 0600', async () => {
    const out = path.join(dir, 'jwt');
    const r = json(await api('fetch', 'jwt', '--audience', 'api', 'db', '--spiffe-id', 'spiffe://example.org/db', '--write', out, '--json'));
    const svids = r.svids as { spiffeId: string; audience: string[]; token: string }[];
    expect(svids.map((s) => [s.spiffeId, s.audience])).toEqual([['spiffe://example.org/db', ['api', 'db']]]);
    expect(readFileSync(path.join(out, 'svid.0.token'), 'utf8').trim()).toBe(svids[0].token);
    expect(statSync(path.join(out, 'svid.0.token')).mode & 0o777).toBe(0o600);
    const readable = await api('fetch', 'jwt', '--audience', 'api');
    expect(readable.stdout).toContain('Received 2 svids');
    expect(readable.stdout).toMatch(/Token {5}: ey[\w-]+\.[\w-]+\.[\w-]+/);
  });

  it('prints X.509 and JWT bundles per trust domain', async () => {
    const r = json(await api('fetch', 'bundles', '--json'));
    const bundles = r.bundles as { trustDomain: string; x509Authorities: unknown[]; jwtAuthorities: { keyId: string }[]; x509Pem: string }[];
    expect(bundles.map((b) => [b.trustDomain, b.x509Authorities.length, b.jwtAuthorities.map((a) => a.keyId)])).toEqual([
      ['example.org', 1, [fake.jwtKeyId]],
      ['other.org', 1, []],
    ]);
    expect(bundles[0].x509Pem).toContain('-----BEGIN CERTIFICATE-----');
    const readable = await api('fetch', 'bundles');
    expect(readable.stdout).toContain('Trust domain      : other.org');
    expect(readable.stdout).toContain(`JWT authorities   : 1 (${fake.jwtKeyId})`);
  });

  it('validates a token, and reports the server refusal on one line', async () => {
    const token = (json(await api('fetch', 'jwt', '--audience', 'api', '--json')).svids as { token: string }[])[0].token;
    const ok = await api('validate', '--audience', 'api', '--svid', token);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('SVID is valid.');
    expect(ok.stdout).toContain('SPIFFE ID : spiffe://example.org/web');
    expect(json(await api('validate', '--audience', 'api', '--svid', token, '--json'))).toMatchObject({ valid: true, spiffeId: 'spiffe://example.org/web', claims: { aud: ['api'] } });
    const bad = await api('validate', '--audience', 'other', '--svid', token);
    expect(bad.code).toBe(2);
    expect(bad.stderr.split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^error: workloadapi: ValidateJWTSVID: jwtsvid: .*audience.* \[usage\]$/);
  });
});

describe('agent api errors and addressing', () => {
  it('names the socket it could not reach', async () => {
    const missing = path.join(dir, 'none.sock');
    const r = await run({}, 'fetch', 'x509', '--socket-path', missing);
    expect(r.code).toBe(4);
    expect(r.stderr).toBe(`error: workloadapi: cannot reach the workload API at unix://${missing}: no socket at that path (is the agent running?) [workload-api-socket-missing]`);
    expect(json(await run({}, 'fetch', 'x509', '--socket-path', missing, '--json'))).toMatchObject({ valid: false, error: 'workload-api-socket-missing' });
  });

  it('reports PermissionDenied with its catalogue code', async () => {
    fake.refuse(grpc.status.PERMISSION_DENIED, 'no identity issued');
    const r = await api('fetch', 'jwt', '--audience', 'api');
    expect([r.code, r.stderr]).toEqual([1, 'error: workloadapi: FetchJWTSVID: no identity issued [permission-denied]']);
  });

  it('falls back to SPIFFE_ENDPOINT_SOCKET, then to the svidscope default path', async () => {
    const viaEnv = await run({ SPIFFE_ENDPOINT_SOCKET: fake.address }, 'fetch', 'x509', '--json');
    expect(json(viaEnv)).toMatchObject({ valid: true });
    const bad = await run({ SPIFFE_ENDPOINT_SOCKET: 'tcp://localhost:1' }, 'fetch', 'x509');
    expect([bad.code, bad.stderr]).toEqual([2, 'error: workloadapi: SPIFFE_ENDPOINT_SOCKET: workload endpoint tcp socket URI host component must be an IP:port [config-invalid]']);
    const dflt = await run({}, 'fetch', 'bundles', '--json');
    expect(json(dflt)).toMatchObject({ valid: false, error: 'workload-api-socket-missing' });
    expect(String(json(dflt).message)).toContain(`unix://${path.resolve('.svidscope/agent/public/api.sock')}`);
  });

  it('accepts a full address in --socket-path and applies --timeout', async () => {
    expect(json(await run({}, 'fetch', 'x509', '--socket-path', fake.address, '--json'))).toMatchObject({ valid: true });
    fake.setDelay(1000);
    const slow = await api('fetch', 'x509', '--timeout', '100ms');
    expect([slow.code, slow.stderr]).toEqual([4, 'error: workloadapi: FetchX509SVID: no answer within the deadline of 100 ms [unavailable]']);
    const badTimeout = await api('fetch', 'x509', '--timeout', 'soon');
    expect(badTimeout.code).toBe(2);
    expect(badTimeout.stderr).toContain('--timeout: expected a duration such as 500ms, 30s, 1h30m or 7d (got "soon")');
  });
});
