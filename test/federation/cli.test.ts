// `svidscope federation create|show|list|delete|refresh` through the admin API handlers, in process.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.js';
import { nullLogger } from '../../src/common/log.js';
import { openDatastore } from '../../src/identity-plane/server/datastore/index.js';
import type { Datastore } from '../../src/identity-plane/server/datastore/types.js';
import { startFederation, type Federation } from '../../src/identity-plane/server/federation/index.js';
import { parseTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { removeDir, tempDir } from '../support/server.js';
import { serveFederationAdmin } from './support/admin.js';
import { cliJson, federationCli } from './support/cli.js';
import { bundleJson, bundleOf, testCa } from './support/pki.js';

const dir = tempDir('federation-cli');
const socket = path.join(dir, 'admin.sock');
const caA = testCa('a.test');
const caB = testCa('b.test');
let peer: Federation;
let local: Federation;
let datastores: Datastore[] = [];
let admin: { close(): Promise<void> };

const run = (...argv: string[]) => federationCli(socket, ...argv.slice(1));
const json = cliJson;

beforeAll(async () => {
  const open = async (name: string) => {
    const ds = await openDatastore({ kind: 'sqlite', path: path.join(dir, `${name}.sqlite3`) });
    datastores.push(ds);
    return ds;
  };
  peer = await startFederation({
    config: { relationships: [], minRefreshSeconds: 1, maxRefreshSeconds: 60, defaultRefreshSeconds: 30, fetchTimeoutSeconds: 5,
      bundleEndpoint: { bind: '127.0.0.1:0', profile: 'https_spiffe', svidTtlSeconds: 3600 } },
    trustDomain: parseTrustDomain('b.test'), datastore: await open('b'), ca: { x509Minter: caB.minter, x509ChainTail: [] },
    bundles: { current: bundleOf('b.test', [caB], 3n, 60) }, clock: systemClock, logger: nullLogger(), dataDir: path.join(dir, 'b'),
  });
  local = await startFederation({
    config: undefined, trustDomain: parseTrustDomain('a.test'), datastore: await open('a'), ca: { x509Minter: caA.minter, x509ChainTail: [] },
    bundles: { current: bundleOf('a.test', [caA], 1n, 60) }, clock: systemClock, logger: nullLogger(), dataDir: path.join(dir, 'a'),
  });
  admin = await serveFederationAdmin(local, socket);
});

afterAll(async () => {
  await admin?.close();
  await local?.stop();
  await peer?.stop();
  for (const ds of datastores) await ds.close();
  datastores = [];
  removeDir(dir);
});

describe('svidscope federation', () => {
  it('create fetches the peer bundle; show, list and refresh report it', async () => {
    const bundleFile = path.join(dir, 'b.json');
    writeFileSync(bundleFile, bundleJson('b.test', [caB], 1n));
    const created = await run('federation', 'create', '--trust-domain', 'b.test', '--bundle-endpoint-url', peer.endpointUrl!,
      '--bundle-endpoint-profile', 'https_spiffe', '--endpoint-spiffe-id', 'spiffe://b.test/spire/server', '--trust-domain-bundle-path', bundleFile, '--json');
    expect(created.code).toBe(0);
    expect(json(created)).toMatchObject({ valid: true, federation: { trustDomain: 'b.test', bundleEndpointProfile: 'https_spiffe', source: 'api', bundleSequence: '1' } });

    const refreshed = json(await run('federation', 'refresh', '--trust-domain', 'b.test', '--json'));
    expect(refreshed.federation).toMatchObject({ bundleSequence: '3', refreshHintSeconds: 60, consecutiveFailures: 0 });
    expect(refreshed.federation.lastSuccessAt).toEqual(expect.any(String));

    const shown = await run('federation', 'show', '--trust-domain', 'b.test');
    expect(shown.out.join('\n')).toMatch(/Trust domain\s+: b\.test/);
    expect(shown.out.join('\n')).toMatch(/Bundle sequence\s+: 3/);
    const listed = json(await run('federation', 'list', '--json')) as unknown as { federations: { trustDomain: string }[] };
    expect(listed.federations.map((f) => f.trustDomain)).toEqual(['b.test']);
  });

  it('reports refusals with the catalogue codes', async () => {
    const dup = await run('federation', 'create', '--trust-domain', 'b.test', '--bundle-endpoint-url', peer.endpointUrl!, '--endpoint-spiffe-id', 'spiffe://b.test/spire/server', '--json');
    expect(json(dup)).toMatchObject({ valid: false, error: 'already-exists' });
    const noId = await run('federation', 'create', '--trust-domain', 'c.test', '--bundle-endpoint-url', 'https://c.test/', '--json');
    expect(json(noId)).toMatchObject({ valid: false, error: 'usage' });
    expect(noId.code).toBe(2);
    const insecure = await run('federation', 'create', '--trust-domain', 'c.test', '--bundle-endpoint-url', 'http://c.test/', '--bundle-endpoint-profile', 'https_web', '--json');
    expect(json(insecure)).toMatchObject({ valid: false, error: 'config-invalid' });
    expect(String(json(insecure).message)).toContain('must use https');
    const missing = await run('federation', 'show', '--trust-domain', 'nobody.test', '--json');
    expect(json(missing)).toMatchObject({ valid: false, error: 'not-found' });
  });

  it('refresh fails with unavailable when the endpoint refuses, then delete removes the relationship', async () => {
    await run('federation', 'create', '--trust-domain', 'd.test', '--bundle-endpoint-url', 'https://127.0.0.1:1/', '--bundle-endpoint-profile', 'https_web', '--json');
    const failed = await run('federation', 'refresh', '--trust-domain', 'd.test', '--json');
    expect(json(failed)).toMatchObject({ valid: false, error: 'unavailable' });
    expect(String(json(failed).message)).toContain('cannot reach bundle endpoint');
    const shown = json(await run('federation', 'show', '--trust-domain', 'd.test', '--json'));
    expect(shown.federation).toMatchObject({ lastError: { reason: 'connect' } });
    const deleted = await run('federation', 'delete', '--trust-domain', 'd.test', '--json');
    expect(json(deleted)).toMatchObject({ valid: true, deleted: 'd.test' });
    const listed = json(await run('federation', 'list', '--json')) as unknown as { federations: { trustDomain: string }[] };
    expect(listed.federations.map((f) => f.trustDomain)).toEqual(['b.test']);
  });
});
