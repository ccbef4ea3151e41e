import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connectAdmin } from '../../src/cli/admin/client.js';
import { freePort, httpOk, spawnCli, waitFor } from '../support/process.js';
import { parseSpiffeBundle, x509BundleToPem } from '../../src/identity-plane/spiffe/bundle/index.js';
import { attestAgentAt, removeDir, tempDir } from '../support/server.js';
import { EXAMPLE_ORG } from '../support/trust-domains.js';

const dir = tempDir('restart');
afterAll(() => removeDir(dir));

async function runServer(port: number, healthPort: number) {
  const proc = spawnCli(['server', 'run', '--trust-domain', 'example.org', '--data-dir', dir, '--bind', `127.0.0.1:${port}`, '--health-bind', `127.0.0.1:${healthPort}`]);
  await waitFor('server ready', () => httpOk(`http://127.0.0.1:${healthPort}/ready`), 30_000, proc.logs);
  return proc;
}

describe('server restart after kill -9', () => {
  it('keeps entries, tokens, agents, keys and bundle', async () => {
    const [port, healthPort] = [await freePort(), await freePort()];
    let proc = await runServer(port, healthPort);
    let admin = connectAdmin(path.join(dir, 'admin.sock'));
    const entry = await admin.call<{ id: string }>('CreateEntry', {
      entry: { spiffe_id: 'spiffe://example.org/web', parent_id: 'spiffe://example.org/spire/agent/join_token/x', selectors: [{ type: 'unix', value: 'uid:1000' }] },
    });
    const token = await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 });
    const unused = await admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 });
    const bundleBefore = await admin.call<{ document: Buffer; sequence_number: string }>('GetBundle', {});
    const bundlePem = x509BundleToPem(parseSpiffeBundle(EXAMPLE_ORG, bundleBefore.document));
    const address = `127.0.0.1:${port}`;
    const agent = await attestAgentAt(address, bundlePem, token.value);
    const journalBefore = readFileSync(path.join(dir, 'ca', 'journal.json'), 'utf8');
    admin.close();

    proc.child.kill('SIGKILL');
    await proc.child;
    proc = await runServer(port, healthPort);
    admin = connectAdmin(path.join(dir, 'admin.sock'));
    try {
      await expect(admin.call<{ id: string }>('GetEntry', { id: entry.id })).resolves.toMatchObject({ id: entry.id, spiffe_id: 'spiffe://example.org/web' });
      const agents = await admin.call<{ agents: { id: string }[] }>('ListAgents', {});
      expect(agents.agents.map((a) => a.id)).toContain(agent.spiffeId);
      expect(readFileSync(path.join(dir, 'ca', 'journal.json'), 'utf8')).toBe(journalBefore);
      const bundleAfter = await admin.call<{ document: Buffer; sequence_number: string }>('GetBundle', {});
      expect(bundleAfter.sequence_number).toBe(bundleBefore.sequence_number);
      expect(bundleAfter.document.equals(bundleBefore.document)).toBe(true);
      // The unused token survived and still works once; the used one stays used.
      await expect(attestAgentAt(address, bundlePem, unused.value)).resolves.toMatchObject({ spiffeId: expect.stringContaining(unused.value) });
      await expect(attestAgentAt(address, bundlePem, token.value)).rejects.toMatchObject({ details: expect.stringMatching(/already been used/) });
    } finally {
      admin.close();
      proc.child.kill('SIGTERM');
      const result = await proc.child;
      expect(result.exitCode, proc.logs()).toBe(0);
    }
  }, 90_000);
});
