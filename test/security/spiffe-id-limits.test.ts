// Issue 14: a 120 KB SPIFFE ID and a 300-character trust domain were accepted. The standard's size
// limits (2048 bytes per ID, 255 per trust domain) now apply wherever an ID enters svidscope: the
// admin API (InvalidArgument with the code `id-too-long` in the error-code trailer), config files
// (the process refuses to start) and the command line. Readers of SVIDs keep accepting longer
// IDs, as the standard asks of them (the conformance vectors).
import * as grpc from '@grpc/grpc-js';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSpiffeId, parseSpiffeIdBounded, parseTrustDomainBounded } from '../../src/identity-plane/spiffe/id/index.js';
import { ERROR_CODE_METADATA, serverServices } from '../../src/identity-plane/server-api/services.js';
import { cli, cliProcess, json } from '../support/cli.js';
import { spawnCli } from '../support/process.js';
import { removeDir, startTestServer, tempDir, type TestServer } from '../support/server.js';

const HUGE_ID = `spiffe://example.org/${'a'.repeat(120 * 1024)}`;
const LONG_TD = `${'a'.repeat(296)}.org`; // 300 characters
const dir = tempDir('spiffe-id-limits');
let t: TestServer;

beforeAll(async () => {
  t = await startTestServer({}, {}, path.join(dir, 'server'));
});
afterAll(async () => {
  await t?.stop();
  removeDir(dir);
});

/** One admin call on the raw gRPC client, to see the status code and the error-code trailer. */
function rawAdmin(method: string, request: object): Promise<{ status: grpc.status; code: string; details: string }> {
  const Admin = serverServices().adminClient;
  const client = new Admin(`unix://${t.server.adminSocket}`, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (req: object, cb: (err: grpc.ServiceError | null) => void) => void>)[method].call(client, request, (err) => {
      client.close();
      if (!err) return reject(new Error(`${method} succeeded`));
      resolve({ status: err.code, code: String(err.metadata.get(ERROR_CODE_METADATA)[0] ?? ''), details: err.details });
    });
  });
}

describe('SPIFFE ID size limits where IDs enter', () => {
  it('the library: readers accept what the standard lets them, entry points refuse past the limits', () => {
    expect(parseSpiffeId(HUGE_ID).trustDomain.name).toBe('example.org'); // a reader of SVIDs is lenient
    expect(() => parseSpiffeIdBounded(HUGE_ID)).toThrow(expect.objectContaining({ code: 'id-too-long' }));
    expect(() => parseTrustDomainBounded(LONG_TD)).toThrow(expect.objectContaining({ code: 'id-too-long' }));
    expect(() => parseTrustDomainBounded(`spiffe://${LONG_TD}/x`)).toThrow(expect.objectContaining({ code: 'id-too-long' }));
    expect(parseSpiffeIdBounded(`spiffe://example.org/${'a'.repeat(2048 - 21)}`).toString()).toHaveLength(2048);
    expect(() => parseSpiffeIdBounded(`spiffe://example.org/${'a'.repeat(2048 - 20)}`)).toThrow(expect.objectContaining({ code: 'id-too-long' }));
    expect(parseTrustDomainBounded('a'.repeat(255)).name).toHaveLength(255);
  });

  it('the admin API answers InvalidArgument with id-too-long, without echoing the ID', async () => {
    const entry = { spiffe_id: HUGE_ID, parent_id: 'spiffe://example.org/spire/server', selectors: [{ type: 'unix', value: 'uid:1000' }] };
    const cases: [string, object][] = [
      ['CreateEntry spiffe_id', { entry }],
      ['CreateEntry parent_id', { entry: { ...entry, spiffe_id: 'spiffe://example.org/w', parent_id: HUGE_ID } }],
      ['CreateEntry federates_with', { entry: { ...entry, spiffe_id: 'spiffe://example.org/w', federates_with: [LONG_TD] } }],
      ['CreateJoinToken agent_id', { ttl: 60, agent_id: HUGE_ID }],
      ['CreateFederation trust_domain', { relationship: { trust_domain: LONG_TD, bundle_endpoint_url: 'https://127.0.0.1:1/', bundle_endpoint_profile: 'https_web' } }],
      ['CreateFederation endpoint_spiffe_id', { relationship: { trust_domain: 'peer.test', bundle_endpoint_url: 'https://127.0.0.1:1/', endpoint_spiffe_id: HUGE_ID.replace('example.org', 'peer.test') } }],
    ];
    for (const [name, req] of cases) {
      const r = await rawAdmin(name.split(' ')[0], req);
      expect({ name, status: r.status, code: r.code }).toEqual({ name, status: grpc.status.INVALID_ARGUMENT, code: 'id-too-long' });
      expect(r.details.length, name).toBeLessThan(300);
    }
    expect(await t.admin.call<{ entries: unknown[] }>('ListEntries', {})).toMatchObject({ entries: [] });
  });

  it('a server config with a 300-character trust domain refuses to start, naming the key and the limit', async () => {
    const config = path.join(dir, 'long-td.yaml');
    writeFileSync(config, [`trust_domain: ${LONG_TD}`, `data_dir: ${path.join(dir, 'long-td')}`, 'bind: 127.0.0.1:0', 'health_bind: 127.0.0.1:0'].join('\n'));
    const server = spawnCli(['server', 'run', '--config', config]);
    const result = await server.child;
    expect(result.exitCode).toBe(2);
    expect(server.logs()).toMatch(/trust_domain: spiffeid: trust domain is 300 bytes; the limit is 255/);
    expect(server.logs()).toContain('[config-invalid]');
  }, 30_000);

  it('the CLI refuses an oversized ID or trust domain with id-too-long', async () => {
    const parsed = await cliProcess('spiffe-id', 'parse', HUGE_ID, '--json');
    expect(parsed.code).toBe(1);
    expect(json(parsed)).toMatchObject({ valid: false, error: 'id-too-long' });
    expect(json(await cli('ca', 'init', '--trust-domain', LONG_TD, '--out-dir', path.join(dir, 'ca'), '--json'))).toMatchObject({ valid: false, error: 'id-too-long' });
    expect(json(await cli('spiffe-id', 'parse', `spiffe://${LONG_TD}/w`, '--json'))).toMatchObject({ valid: false, error: 'id-too-long' });
  }, 30_000);
});
