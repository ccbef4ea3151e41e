// The bundle state a real server puts in every SyncAuthorizedEntries answer: the same while nothing
// GetBundles answers changes, different after a prepared CA reaches the bundle, after an activation
// and after a taint (which leaves the bundle itself alone), and answered to the first protocol too.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attestAgent, bundlePemOf, nodeClient, startTestServer, type AgentIdentity, type TestServer } from '../support/server.js';
import type { SyncResponseMsg } from '../../src/identity-plane/server-api/messages.js';

describe('SyncAuthorizedEntries bundle_state', () => {
  let t: TestServer;
  let agent: AgentIdentity;
  beforeAll(async () => {
    t = await startTestServer();
    agent = await attestAgent(t);
  }, 60_000);
  afterAll(async () => t?.stop());

  const stateNow = async (request: object = { known_revision: '0', incremental: true, known_entries: [] }) => {
    const client = nodeClient(t.server.address, bundlePemOf(t.server), agent);
    try {
      return (await client.call<SyncResponseMsg>('SyncAuthorizedEntries', request)).bundle_state!;
    } finally {
      client.close();
    }
  };
  const caStatus = () => t.admin.call<{ slots: { kind: string; phase: string; key_id: string }[] }>('CaStatus', {});

  it('stays while nothing changes, and moves with every change GetBundles would show', async () => {
    const first = await stateNow();
    expect(first.length).toBe(32);
    expect((await stateNow()).equals(first)).toBe(true);
    expect((await stateNow({ known_revision: '0' })).equals(first), 'the first protocol gets it too').toBe(true);

    await t.admin.call('AuthorityLifecycle', { kind: 'x509', operation: 'prepare', key_id: '' });
    const prepared = await stateNow();
    expect(prepared.equals(first), 'a prepared CA is published in the bundle').toBe(false);

    const oldKey = (await caStatus()).slots.find((s) => s.kind === 'x509' && s.phase === 'active')!.key_id;
    await t.admin.call('AuthorityLifecycle', { kind: 'x509', operation: 'activate', key_id: '' });
    const activated = await stateNow();

    await t.admin.call('AuthorityLifecycle', { kind: 'x509', operation: 'taint', key_id: oldKey });
    const tainted = await stateNow();
    expect(tainted.equals(activated), 'a taint changes what GetBundles answers, not the bundle').toBe(false);
    expect((await stateNow()).equals(tainted)).toBe(true);
  }, 60_000);
});
