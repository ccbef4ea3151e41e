// The key-compromise response through the real CLI and admin socket of a running server.
import { afterAll, expect, it } from 'vitest';
import { cli, json } from '../support/cli.js';
import { removeDir, startTestServer, tempDir } from '../support/server.js';

const dir = tempDir('ca-lifecycle-cli');
afterAll(() => removeDir(dir));

it('svidscope authority prepare|activate|taint|revoke, each wrong order refused', async () => {
  const t = await startTestServer({}, {}, dir);
  try {
    const socket = ['--admin-socket', t.server.adminSocket];
    const first = (json(await cli('authority', 'list', ...socket, '--json')) as { authorities: { kind: string; phase: string; keyId: string }[] })
      .authorities.find((a) => a.kind === 'jwt' && a.phase === 'active')!;
    const early = await cli('authority', 'activate', '--kind', 'jwt', ...socket, '--json');
    expect(json(early)).toMatchObject({ valid: false, error: 'authority-order' });
    const taintActive = await cli('authority', 'taint', '--kind', 'jwt', '--key-id', first.keyId, ...socket, '--json');
    expect(json(taintActive)).toMatchObject({ valid: false, error: 'authority-order' });

    const prepared = json(await cli('authority', 'prepare', '--kind', 'jwt', ...socket, '--json')) as { authority: { keyId: string; phase: string } };
    expect(prepared.authority.phase).toBe('prepared');
    expect(json(await cli('authority', 'activate', '--kind', 'jwt', ...socket, '--json'))).toMatchObject({ valid: true, authority: { keyId: prepared.authority.keyId, phase: 'active' } });
    const revokeEarly = await cli('authority', 'revoke', '--kind', 'jwt', '--key-id', first.keyId, ...socket, '--json');
    expect(json(revokeEarly)).toMatchObject({ valid: false, error: 'authority-order' });
    expect(json(await cli('authority', 'taint', '--kind', 'jwt', '--key-id', first.keyId, ...socket, '--json'))).toMatchObject({ valid: true, authority: { tainted: true } });
    const before = await t.admin.call<{ document: string; sequence_number: string }>('GetBundle', {});
    expect(Buffer.from(before.document).toString()).toContain(first.keyId);
    expect(json(await cli('authority', 'revoke', '--kind', 'jwt', '--key-id', first.keyId, ...socket, '--json'))).toMatchObject({ valid: true, authority: { revoked: true } });
    const after = await t.admin.call<{ document: string; sequence_number: string }>('GetBundle', {});
    expect(Buffer.from(after.document).toString()).not.toContain(first.keyId);
    expect(Number(after.sequence_number)).toBeGreaterThan(Number(before.sequence_number));
  } finally {
    await t.stop();
  }
});
