import { X509Certificate } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { BundleSet } from '../../src/identity-plane/spiffe/bundle/index.js';
import { createCsr } from '../../src/identity-plane/spiffe/mint/csr-create.js';
import { generateKeyPair } from '../../src/identity-plane/spiffe/mint/keys.js';
import { verifyX509Svid } from '../../src/identity-plane/spiffe/x509svid/index.js';
import { dropSchemas, newSchemaName, postgresUrl } from '../support/postgres.js';
import { attestAgent, bundlePemOf, nodeClient, removeDir, startTestServer, type TestServer } from '../support/server.js';

const url = postgresUrl('one PostgreSQL datastore shared by two servers');

if (url) {
  const schema = newSchemaName('two');
  const servers: TestServer[] = [];
  afterAll(async () => {
    for (const s of servers) {
      await s.stop();
      removeDir(s.dir);
    }
    await dropSchemas(url, [schema]);
  });

  describe('two servers sharing one PostgreSQL datastore', () => {
    it('each signs with its own CA, and every SVID verifies against the one shared bundle', async () => {
      const doc = { datastore: { kind: 'postgres', connection_string: url, schema } };
      servers.push(await startTestServer(doc), await startTestServer(doc));
      const [a, b] = servers;
      // Each publishes on start; after one more sync both see both CAs.
      await a.server.tick();
      await b.server.tick();
      await a.server.tick();
      const bundleA = a.server.bundles.current;
      const bundleB = b.server.bundles.current;
      expect(bundleA.sequenceNumber).toBe(bundleB.sequenceNumber);
      expect(bundleA.x509Authorities).toHaveLength(2);
      expect(bundleA.jwtAuthorities.size).toBe(2);

      // An entry created through server A is served by server B; a token made on A attests on B.
      const agent = await attestAgent(b, (await a.admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 })).value);
      const entry = await a.admin.call<{ id: string }>('CreateEntry', {
        entry: { spiffe_id: 'spiffe://example.org/shared', parent_id: agent.spiffeId, selectors: [{ type: 'unix', value: 'uid:1' }] },
      });
      await b.server.tick(); // B sees A's entry at its next reload (cache_reload_interval)
      const shared = new BundleSet([bundleA]);
      for (const s of [a, b]) {
        const client = nodeClient(s.server.address, bundlePemOf(s.server), agent);
        const key = generateKeyPair();
        const res = await client.call<{ results: { status_code: number; svid: { cert_chain: Buffer[] } }[] }>('BatchNewX509SVID', { params: [{ entry_id: entry.id, csr: createCsr(key.privateKey, key.publicKey) }] });
        client.close();
        expect(res.results[0].status_code).toBe(0);
        const chain = res.results[0].svid.cert_chain.map((d) => new X509Certificate(d));
        expect(verifyX509Svid(chain, shared, { now: new Date() }).id.toString()).toBe('spiffe://example.org/shared');
      }
      // The two SVIDs come from different CAs: the servers did not share private keys.
      const issuers = bundleA.x509Authorities.map((x) => x.cert.fingerprint256);
      expect(new Set(issuers).size).toBe(2);
    });
  });
}
