/**
 * Child process of the SQLite crash test: creates entries in a loop and prints each id only after its create
 * returned (committed), so every printed id must survive the SIGKILL the parent sends at a random moment.
 * Usage: node --import tsx test/datastore/crash-writer.ts <db path>
 */
import { openDatastore } from '../../src/identity-plane/server/datastore/index.js';

const path = process.argv[2];
const ds = await openDatastore({ kind: 'sqlite', path });
const now = new Date(Date.UTC(2030, 0, 1));
process.stdout.write('ready\n');
for (let i = 0; ; i++) {
  const entry = await ds.createEntry(
    {
      spiffeId: `spiffe://example.org/crash/${i}`,
      parentId: 'spiffe://example.org/spire/server',
      selectors: [{ type: 'unix', value: `uid:${i}` }, { type: 'unix', value: 'gid:0' }],
      x509SvidTtl: 0,
      jwtSvidTtl: 0,
      dnsNames: [`w${i}.example.org`],
      federatesWith: [],
      admin: false,
      downstream: false,
      expiresAt: null,
      hint: 'x'.repeat(200),
    },
    now,
  );
  // Pipes are synchronous on Linux, so the id is in the pipe before the next transaction starts.
  process.stdout.write(`${entry.id}\n`);
}
