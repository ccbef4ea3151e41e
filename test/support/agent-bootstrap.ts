import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { AdminClient } from '../../src/identity-plane/server-api/admin-client.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../src/identity-plane/spiffe/bundle/index.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';

/**
 * What a real agent needs before its first start, from a running server's admin socket:
 * `<dir>/bundle.pem` (its trust_bundle_path), a join token, and `<dir>/agent.yaml` with `extra`
 * lines appended. Returns the token and the SPIFFE ID the agent will get from it.
 */
export async function bootstrapAgent(admin: AdminClient, o: { dir: string; trustDomain: string; serverPort: number; healthPort: number; socketPath: string; extra?: string[] }): Promise<{ token: string; agentId: string }> {
  const bundle = await admin.call<{ document: Buffer }>('GetBundle', {});
  writeFileSync(path.join(o.dir, 'bundle.pem'), x509BundleToPem(parseSpiffeBundle(mustTrustDomain(o.trustDomain), bundle.document)));
  const token = await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 });
  writeFileSync(path.join(o.dir, 'agent.yaml'), [
    `trust_domain: ${o.trustDomain}`, `server_address: 127.0.0.1:${o.serverPort}`, `data_dir: ${path.join(o.dir, 'agent')}`,
    `socket_path: ${o.socketPath}`, `trust_bundle_path: ${path.join(o.dir, 'bundle.pem')}`,
    `health_bind: 127.0.0.1:${o.healthPort}`, 'sync_interval: 1s', ...(o.extra ?? []),
  ].join('\n'));
  return { token: token.value, agentId: `spiffe://${o.trustDomain}/spire/agent/join_token/${token.value}` };
}
