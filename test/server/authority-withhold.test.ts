// Withholding one of the server's own signing keys from the trust bundle (game days: a "bad
// rotation"): the active CA keeps signing, the bundle no longer holds it, so what it signs fails
// validation against the bundle; publishing it again restores it with a higher sequence number.
import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { nullLogger } from '../../src/common/log.js';
import { CaManager, type RotationConfig } from '../../src/identity-plane/server/ca/manager.js';
import type { CaStatusMsg } from '../../src/identity-plane/server-api/messages.js';
import { serverServices } from '../../src/identity-plane/server-api/services.js';
import { BundleSet, createSpiffeBundle, parseSpiffeBundle, x509BundleToPem, type SpiffeBundle } from '../../src/identity-plane/spiffe/bundle/index.js';
import { mustSpiffeId, mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { verifyJwtSvid } from '../../src/identity-plane/spiffe/jwtsvid/index.js';
import { createSelfSignedCa } from '../../src/identity-plane/spiffe/mint/ca.js';
import { generateKeyPair } from '../../src/identity-plane/spiffe/mint/keys.js';
import { verifyX509Svid } from '../../src/identity-plane/spiffe/x509svid/index.js';
import { cli, json } from '../support/cli.js';
import { attestAgent, attestAgentAt, nodeClient, removeDir, startTestServer, tempDir, type TestServer } from '../support/server.js';
import { EXAMPLE_ORG } from '../support/trust-domains.js';

const HOUR = 3600_000;
const td = mustTrustDomain('example.org');
const config: RotationConfig = { caTtlSeconds: 24 * 3600, prepareFraction: 1 / 2, activateFraction: 5 / 6, checkIntervalSeconds: 10, keyType: 'ec-p256', jwtKeyType: 'ec-p256' };

describe('CaManager.setWithheld on a fake clock', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach(removeDir));

  function manager(clock: FakeClock, extra: Partial<ConstructorParameters<typeof CaManager>[0]> = {}, dir = tempDir('ca-withhold')) {
    if (!dirs.includes(dir)) dirs.push(dir);
    const events: string[] = [];
    const ca = new CaManager({ trustDomain: td, dir, config, clock, logger: nullLogger(), onChange: (e) => events.push(`${e.kind}:${e.phase}:${e.id}`), ...extra });
    return { ca, dir, events };
  }
  const bundleOf = (ca: CaManager) => {
    const p = ca.published();
    return new BundleSet([createSpiffeBundle({ trustDomain: td, x509Authorities: p.x509, jwtAuthorities: p.jwt })]);
  };
  const mint = (ca: CaManager, clock: FakeClock) => {
    const key = generateKeyPair();
    const svid = ca.x509Minter.mint({ id: mustSpiffeId('spiffe://example.org/web'), publicKey: key.publicKey, ttlSeconds: 600, now: clock.now() });
    return [new X509Certificate(svid.der), ...ca.x509ChainTail.map((d) => new X509Certificate(d))];
  };
  const active = (ca: CaManager, kind: 'x509' | 'jwt') => ca.status().find((s) => s.kind === kind && s.phase === 'active')!;

  it('withholds the active X.509 CA from what it publishes while it keeps signing, and publishes it again', () => {
    const clock = new FakeClock(Date.UTC(2030, 0, 1));
    const { ca, dir, events } = manager(clock);
    ca.start();
    const journalBefore = readFileSync(path.join(dir, 'journal.json'), 'utf8');
    const signedBefore = mint(ca, clock);
    const caId = active(ca, 'x509').id;
    events.length = 0;

    expect(ca.setWithheld('x509', undefined, true)).toMatchObject({ id: caId, kind: 'x509', phase: 'active', withheld: true });
    expect(events).toEqual([`x509:active:${caId}`]);
    const p = ca.published();
    expect(p.x509).toHaveLength(0);
    expect(p.withheld.x509).toHaveLength(1);
    expect(signedBefore[0].verify(p.withheld.x509[0].publicKey)).toBe(true); // the withheld one is the CA that signs
    expect(p.jwt).toHaveLength(1);
    expect(p.withheld.jwt).toEqual([]);
    // Still signs, and nothing it signs verifies against what is published.
    const signedAfter = mint(ca, clock);
    expect(signedAfter[0].verify(p.withheld.x509[0].publicKey)).toBe(true);
    expect(() => verifyX509Svid(signedAfter, bundleOf(ca), { now: clock.now() })).toThrow(expect.objectContaining({ code: expect.stringMatching(/^(no-bundle-for-trust-domain|unknown-authority)$/) as string }) as Error);

    // Same flag again: nothing changes, nothing is republished.
    ca.setWithheld('x509', caId, true);
    expect(events).toHaveLength(1);

    expect(ca.setWithheld('x509', caId, false).withheld).toBe(false);
    expect(events).toHaveLength(2);
    expect(verifyX509Svid(signedAfter, bundleOf(ca), { now: clock.now() }).id.toString()).toBe('spiffe://example.org/web');
    expect(ca.published().withheld).toEqual({ x509: [], jwt: [] });
    // Published again, the journal is exactly what it was (no withheld: false left behind).
    expect(readFileSync(path.join(dir, 'journal.json'), 'utf8')).toBe(journalBefore);
    ca.stop();
  });

  it('keeps the flag across a restart and on a withheld prepared key once it activates', () => {
    const clock = new FakeClock(Date.UTC(2030, 0, 1));
    const { ca, dir } = manager(clock);
    ca.start();
    const jwtKid = active(ca, 'jwt').id;
    ca.setWithheld('jwt', undefined, true);
    clock.advance(12 * HOUR + 20_000); // the successors are prepared
    const prepared = ca.status().find((s) => s.kind === 'x509' && s.phase === 'prepared')!;
    ca.setWithheld('x509', prepared.id, true);
    expect(ca.published().x509).toHaveLength(1);
    const before = ca.status();
    ca.stop();

    const again = manager(clock, {}, dir).ca;
    again.start();
    expect(again.status()).toEqual(before);
    expect(again.published().jwt.map((k) => k.keyId)).not.toContain(jwtKid);
    expect(again.published().withheld.jwt).toEqual([{ keyId: jwtKid }]);

    clock.advance(8 * HOUR); // past 5/6 of the first CA's life: the withheld prepared CA activates
    expect(active(again, 'x509')).toMatchObject({ id: prepared.id, withheld: true });
    const svid = mint(again, clock);
    const bundle = bundleOf(again);
    expect(bundle.bundles()[0].x509Authorities).toHaveLength(1); // only the old CA
    expect(() => verifyX509Svid(svid, bundle, { now: clock.now() })).toThrow(expect.objectContaining({ code: 'unknown-authority' }) as Error);
    again.stop();
  });

  it('refuses an unknown key, a key of the other kind, and an X.509 CA under an upstream authority', () => {
    const clock = new FakeClock(Date.UTC(2030, 0, 1));
    const { ca, events } = manager(clock);
    ca.start();
    events.length = 0;
    expect(() => ca.setWithheld('x509', 'ffff', true)).toThrow(expect.objectContaining({ code: 'not-found', message: expect.stringContaining('ffff') as string }) as Error);
    const jwtKid = active(ca, 'jwt').id;
    expect(() => ca.setWithheld('x509', jwtKid, true)).toThrow(expect.objectContaining({ code: 'not-found', message: expect.stringContaining('a JWT key') as string }) as Error);
    expect(events).toEqual([]);
    ca.stop();

    const upstream = createSelfSignedCa({ trustDomain: td, keyType: 'ec-p256', ttlSeconds: 7 * 86400, now: clock.now() });
    const { ca: under } = manager(clock, { upstream: { certificate: upstream.certificate, privateKey: upstream.privateKey } });
    under.start();
    expect(() => under.setWithheld('x509', undefined, true)).toThrow(expect.objectContaining({ code: 'usage', message: expect.stringContaining('upstream') as string }) as Error);
    expect(under.published().x509.map((c) => c.fingerprint256)).toEqual([upstream.certificate.fingerprint256]);
    // The JWT key is this server's own, upstream or not.
    under.setWithheld('jwt', undefined, true);
    expect(under.published().jwt).toEqual([]);
    under.stop();
  });
});

describe('WithholdAuthority on a running server (admin socket)', () => {
  const dir = tempDir('withhold');
  let t: TestServer;
  afterAll(async () => {
    await t?.stop();
    removeDir(dir);
  });

  /** A raw admin call, to see the gRPC status itself. */
  function rawCall(method: string, request: object): Promise<grpc.ServiceError | undefined> {
    const Admin = serverServices().adminClient;
    const client = new Admin(`unix://${t.server.adminSocket}`, grpc.credentials.createInsecure());
    return new Promise((resolve) => {
      (client as unknown as Record<string, (r: object, cb: (err: grpc.ServiceError | null) => void) => void>)[method].call(client, request, (err) => {
        client.close();
        resolve(err ?? undefined);
      });
    });
  }
  const getBundle = async (): Promise<{ bundle: SpiffeBundle; sequence: bigint }> => {
    const res = await t.admin.call<{ document: Buffer; sequence_number: string }>('GetBundle', {});
    return { bundle: parseSpiffeBundle(EXAMPLE_ORG, res.document), sequence: BigInt(res.sequence_number) };
  };
  const activeCa = async () => (await t.admin.call<CaStatusMsg>('CaStatus', {})).slots.find((s) => s.kind === 'x509' && s.phase === 'active')!;
  const fingerprints = (b: SpiffeBundle) => b.x509Authorities.map((a) => a.cert.fingerprint256);
  let caCert: X509Certificate;
  let caId: string;

  it('withholds the active X.509 CA: the bundle drops it (sequence up) and SVIDs it signs no longer chain to the bundle', async () => {
    t = await startTestServer({}, {}, dir);
    const before = await getBundle();
    const pemBefore = x509BundleToPem(before.bundle);
    caId = (await activeCa()).key_id;
    // The server's own SVID is signed by the active CA: its issuer is the CA certificate.
    const agentBefore = await attestAgent(t);
    caCert = before.bundle.x509Authorities.map((a) => a.cert).find((c) => new X509Certificate(agentBefore.chainDer[0]).verify(c.publicKey))!;
    expect(caCert).toBeDefined();

    const res = await t.admin.call<CaStatusMsg>('WithholdAuthority', { kind: 'x509', key_id: '', withhold: true });
    expect(res.slots.find((s) => s.key_id === caId)).toMatchObject({ kind: 'x509', phase: 'active', withheld: true });
    const after = await getBundle();
    expect(after.sequence).toBeGreaterThan(before.sequence);
    expect(fingerprints(after.bundle)).not.toContain(caCert.fingerprint256);
    expect(fingerprints(after.bundle)).toHaveLength(0); // the only X.509 authority of this server
    expect(after.bundle.jwtAuthorities.size).toBe(1);
    expect((await t.server.datastore.listCaKeys('x509')).map((r) => r.id)).toEqual([]);

    // The CA keeps signing: an agent SVID issued now (server reached with the old trust anchors).
    const agentAfter = await attestAgentAt(t.server.address, pemBefore, (await t.admin.call<{ value: string }>('CreateJoinToken', { ttl: 600 })).value);
    const chain = agentAfter.chainDer.map((d) => new X509Certificate(d));
    expect(chain[0].verify(caCert.publicKey)).toBe(true);
    expect(() => verifyX509Svid(chain, new BundleSet([after.bundle]), { now: new Date() })).toThrow(expect.objectContaining({ code: expect.stringMatching(/^(no-bundle-for-trust-domain|unknown-authority)$/) as string }) as Error);
    expect(verifyX509Svid(chain, new BundleSet([before.bundle]), { now: new Date() }).id.toString()).toBe(agentAfter.spiffeId);

    // The server trusts its bundle too: an agent holding an SVID of the withheld CA is refused.
    const client = nodeClient(t.server.address, pemBefore, agentAfter);
    try {
      await expect(client.call('SyncAuthorizedEntries', { known_revision: 0 })).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    } finally {
      client.close();
    }
  });

  it('keeps it withheld across a server restart', async () => {
    const before = await getBundle();
    await t.stop();
    t = await startTestServer({}, {}, dir);
    expect((await activeCa())).toMatchObject({ key_id: caId, withheld: true });
    const after = await getBundle();
    expect(fingerprints(after.bundle)).not.toContain(caCert.fingerprint256);
    expect(after.sequence).toBe(before.sequence);
  });

  it('publishes it again: the bundle holds it once more, with a higher sequence', async () => {
    const before = await getBundle();
    const res = await t.admin.call<CaStatusMsg>('WithholdAuthority', { kind: 'x509', key_id: caId, withhold: false });
    expect(res.slots.find((s) => s.key_id === caId)?.withheld).toBe(false);
    const after = await getBundle();
    expect(after.sequence).toBeGreaterThan(before.sequence);
    expect(fingerprints(after.bundle)).toContain(caCert.fingerprint256);
    expect((await t.server.datastore.listCaKeys('x509'))).toHaveLength(1);
  });

  it('withholds the active JWT key: its kid leaves the bundle and JWT-SVIDs it signs fail with unknown-kid', async () => {
    const agent = await attestAgent(t);
    const entry = await t.admin.call<{ id: string }>('CreateEntry', {
      entry: { spiffe_id: 'spiffe://example.org/jwt-web', parent_id: agent.spiffeId, selectors: [{ type: 'unix', value: 'uid:1000' }] },
    });
    const kid = (await t.admin.call<CaStatusMsg>('CaStatus', {})).slots.find((s) => s.kind === 'jwt' && s.phase === 'active')!.key_id;
    const before = await getBundle();
    expect([...before.bundle.jwtAuthorities.keys()]).toContain(kid);

    await t.admin.call<CaStatusMsg>('WithholdAuthority', { kind: 'jwt', key_id: '', withhold: true });
    const after = await getBundle();
    expect(after.sequence).toBeGreaterThan(before.sequence);
    expect([...after.bundle.jwtAuthorities.keys()]).not.toContain(kid);
    expect(fingerprints(after.bundle)).toContain(caCert.fingerprint256); // X.509 untouched

    const client = nodeClient(t.server.address, x509BundleToPem(after.bundle), agent);
    try {
      const jwt = await client.call<{ svid: { token: string } }>('NewJWTSVID', { entry_id: entry.id, audience: ['api'] });
      await expect(verifyJwtSvid(jwt.svid.token, new BundleSet([after.bundle]), { audience: ['api'], now: new Date(), leewaySeconds: 0 }))
        .rejects.toMatchObject({ code: 'unknown-kid' });
      await expect(verifyJwtSvid(jwt.svid.token, new BundleSet([before.bundle]), { audience: ['api'], now: new Date(), leewaySeconds: 0 }))
        .resolves.toBeDefined();
    } finally {
      client.close();
    }
    await t.admin.call('WithholdAuthority', { kind: 'jwt', key_id: kid, withhold: false });
    expect([...(await getBundle()).bundle.jwtAuthorities.keys()]).toContain(kid);
  });

  it('refuses a bad kind with INVALID_ARGUMENT and an unknown key with NOT_FOUND', async () => {
    const bad = await rawCall('WithholdAuthority', { kind: 'rsa', key_id: '', withhold: true });
    expect(bad?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad?.details).toMatch(/kind must be x509 or jwt/);
    const unknown = await rawCall('WithholdAuthority', { kind: 'x509', key_id: 'ffffffffffffffffffffffffffffffff', withhold: true });
    expect(unknown?.code).toBe(grpc.status.NOT_FOUND);
    expect(unknown?.details).toMatch(/no x509 key with id ffff/);
    await expect(t.admin.call('WithholdAuthority', { kind: 'x509', key_id: 'nope', withhold: false })).rejects.toMatchObject({ code: 'not-found' });
  });

  it('svidscope authority list|withhold|publish drive the same RPCs', async () => {
    const socket = ['--admin-socket', t.server.adminSocket];
    const list = json(await cli('authority', 'list', ...socket, '--json'));
    expect(list).toMatchObject({ valid: true, authorities: expect.arrayContaining([expect.objectContaining({ kind: 'x509', phase: 'active', keyId: caId, withheld: false })]) as unknown[] });

    const withheld = await cli('authority', 'withhold', '--kind', 'x509', ...socket);
    expect(withheld.code).toBe(0);
    expect(withheld.stdout).toContain(`Withheld active X.509 CA ${caId} from the trust bundle`);
    expect(withheld.stderr).toMatch(/warning: .*will not verify against the bundle/);
    expect(fingerprints((await getBundle()).bundle)).not.toContain(caCert.fingerprint256);

    const published = json(await cli('authority', 'publish', '--kind', 'x509', '--key-id', caId, ...socket, '--json'));
    expect(published).toMatchObject({ valid: true, authority: { keyId: caId, withheld: false } });
    expect(fingerprints((await getBundle()).bundle)).toContain(caCert.fingerprint256);

    const bad = await cli('authority', 'withhold', '--kind', 'rsa', ...socket);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('error: --kind must be x509 or jwt, got "rsa" [usage]');
    const missing = await cli('authority', 'publish', '--kind', 'jwt', '--key-id', 'nope', ...socket, '--json');
    expect(missing.code).toBe(4);
    expect(json(missing)).toMatchObject({ valid: false, error: 'not-found' });
  });
});
