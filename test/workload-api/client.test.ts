import * as grpc from '@grpc/grpc-js';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import { verifyJwtSvid } from '../../src/identity-plane/spiffe/jwtsvid/index.js';
import { verifyX509Svid } from '../../src/identity-plane/spiffe/x509svid/index.js';
import {
  createWorkloadApiClient,
  isWorkloadApiError,
  type WorkloadApiClient,
  type WorkloadApiClientOptions,
  type WorkloadApiError,
  type X509Context,
} from '../../src/identity-plane/workload-api/index.js';
import { startFakeWorkloadApi, type FakeWorkloadApi } from '../support/fake-workload-api.js';

let fake: FakeWorkloadApi;
const clients: WorkloadApiClient[] = [];
const client = (opts: WorkloadApiClientOptions = {}) => {
  const c = createWorkloadApiClient({ address: fake.address, ...opts });
  clients.push(c);
  return c;
};

async function rejection(p: Promise<unknown>): Promise<WorkloadApiError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!isWorkloadApiError(err)) throw new Error(`expected a WorkloadApiError, got ${String(err)}`);
  return err;
}

beforeAll(async () => {
  fake = await startFakeWorkloadApi({ ids: ['spiffe://example.org/web', 'spiffe://example.org/web-admin'] });
});
afterAll(() => fake.stop());
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  fake.clearRefusals();
  fake.setDelay(0);
});

describe('fetches', () => {
  it('parses the X.509 context: SVIDs with hints, own and federated bundles', async () => {
    const ctx = await client().fetchX509Context();
    expect(ctx.svids.map((s) => [s.id.toString(), s.hint])).toEqual([['spiffe://example.org/web', 'hint-0'], ['spiffe://example.org/web-admin', 'hint-1']]);
    expect(ctx.bundles.bundles().map((b) => b.trustDomain.name).sort()).toEqual(['example.org', 'other.org']);
    expect(ctx.bundles.get(mustTrustDomain('other.org'))?.x509Authorities[0].der.equals(fake.federatedCa.der)).toBe(true);
    const verified = verifyX509Svid(ctx.svids[0].certificates, ctx.bundles, { now: new Date() });
    expect(verified.id.toString()).toBe('spiffe://example.org/web');
    // A fetch takes the first message and cancels the stream.
    await expect.poll(() => fake.openStreams()).toBe(0);
  });

  it('fetches X.509 bundles per trust domain', async () => {
    const set = await client().fetchX509Bundles();
    expect(set.bundles().map((b) => b.trustDomain.name).sort()).toEqual(['example.org', 'other.org']);
  });

  it('fetches JWT-SVIDs that verify against the fetched JWT bundles', async () => {
    const c = client();
    const svid = await c.fetchJwtSvid({ audience: ['api'] });
    expect([svid.id.toString(), svid.audience, svid.hint]).toEqual(['spiffe://example.org/web', ['api'], 'hint-0']);
    const bundles = await c.fetchJwtBundles();
    const verified = await verifyJwtSvid(svid.token, bundles, { audience: ['api'], now: new Date(), leewaySeconds: 0 });
    expect(verified.header.kid).toBe(fake.jwtKeyId);
    expect((await c.fetchJwtSvids({ audience: ['api'] })).length).toBe(2);
    const only = await c.fetchJwtSvids({ audience: ['api'], spiffeId: 'spiffe://example.org/web-admin' });
    expect(only.map((s) => s.id.toString())).toEqual(['spiffe://example.org/web-admin']);
  });

  it('validates a token through the server and keeps its message on refusal', async () => {
    const c = client();
    const { token } = await c.fetchJwtSvid({ audience: ['api'] });
    const ok = await c.validateJwtSvid(token, 'api');
    expect(ok.id.toString()).toBe('spiffe://example.org/web');
    expect(ok.claims).toMatchObject({ sub: 'spiffe://example.org/web', aud: ['api'] });
    const err = await rejection(c.validateJwtSvid(token, 'other'));
    expect([err.code, err.statusName]).toEqual(['usage', 'INVALID_ARGUMENT']);
    expect(err.message).toMatch(/^workloadapi: ValidateJWTSVID: jwtsvid: /);
  });

  it('reads SPIFFE_ENDPOINT_SOCKET from the injected environment', async () => {
    const c = createWorkloadApiClient({ env: { SPIFFE_ENDPOINT_SOCKET: fake.address } });
    clients.push(c);
    expect((await c.fetchX509Context()).svids.length).toBe(2);
  });
});

describe('failures', () => {
  it('surfaces a missing security header as InvalidArgument / usage', async () => {
    const err = await rejection(client({ rawMetadata: new grpc.Metadata() }).fetchX509Context());
    expect([err.code, err.status, err.statusName]).toEqual(['usage', grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT']);
    expect(err.message).toBe('workloadapi: FetchX509SVID: security header missing from request');
    const wrong = new grpc.Metadata();
    wrong.set('workload.spiffe.io', 'yes');
    expect((await rejection(client({ rawMetadata: wrong }).fetchJwtSvid({ audience: ['a'] }))).code).toBe('usage');
  });

  it('surfaces PermissionDenied with the server message', async () => {
    fake.refuse(grpc.status.PERMISSION_DENIED, 'no identity issued');
    const err = await rejection(client().fetchX509Context());
    expect([err.code, err.statusName, err.message]).toEqual(['permission-denied', 'PERMISSION_DENIED', 'workloadapi: FetchX509SVID: no identity issued']);
    expect(err.exitCode).toBe(1);
  });

  it('says which socket could not be reached', async () => {
    const missing = path.join(fake.dir, 'nope.sock');
    const err = await rejection(client({ address: missing }).fetchX509Context({ deadlineMs: 5000 }));
    expect([err.code, err.statusName]).toEqual(['workload-api-socket-missing', 'UNAVAILABLE']);
    expect(err.message).toBe(`workloadapi: cannot reach the workload API at unix://${missing}: no socket at that path (is the agent running?)`);
  });

  it('honours the per-call deadline, client default or per call', async () => {
    fake.setDelay(1000);
    const started = Date.now();
    const err = await rejection(client({ deadlineMs: 150 }).fetchX509Context());
    expect([err.code, err.statusName]).toEqual(['unavailable', 'DEADLINE_EXCEEDED']);
    expect(err.message).toBe('workloadapi: FetchX509SVID: no answer within the deadline of 150 ms');
    expect(Date.now() - started).toBeLessThan(900);
    const unary = await rejection(client().fetchJwtSvid({ audience: ['a'] }, { deadlineMs: 100 }));
    expect(unary.statusName).toBe('DEADLINE_EXCEEDED');
  });

  it('passes the server refusal of an empty audience through', async () => {
    const err = await rejection(client().fetchJwtSvid({ audience: [] }));
    expect([err.code, err.message]).toEqual(['usage', 'workloadapi: FetchJWTSVID: audience must be specified']);
  });
});

describe('watches', () => {
  it('receives the first context and every pushed update, then closes quietly', async () => {
    const updates: X509Context[] = [];
    const errors: WorkloadApiError[] = [];
    const handle = client().watchX509Context((ctx) => updates.push(ctx), (e) => errors.push(e));
    await expect.poll(() => updates.length).toBe(1);
    const before = updates[0].svids[0].certificates[0].serialNumber;
    fake.pushX509Update();
    await expect.poll(() => updates.length).toBe(2);
    expect(updates[1].svids[0].certificates[0].serialNumber).not.toBe(before);
    expect(updates[1].svids[0].certificates[0].serialNumber.toLowerCase()).toContain(fake.serials()[0].toLowerCase().replace(/^0+/, ''));
    handle.close();
    handle.close();
    expect(await handle.done).toBeUndefined();
    expect(errors).toEqual([]);
    await expect.poll(() => fake.openStreams()).toBe(0);
  });

  it('reports a PermissionDenied on a live stream as the end of the watch', async () => {
    const errors: WorkloadApiError[] = [];
    let got = 0;
    const handle = client().watchX509Bundles(() => got++, (e) => errors.push(e));
    await expect.poll(() => got).toBe(1);
    fake.failStreams(grpc.status.PERMISSION_DENIED, 'no identity issued');
    const ended = await handle.done;
    expect(ended?.code).toBe('permission-denied');
    expect(errors.map((e) => e.statusName)).toEqual(['PERMISSION_DENIED']);
  });

  it('treats a stream the server ends with OK as a retryable end', async () => {
    let got = 0;
    const handle = client().watchX509Context(() => got++, () => undefined);
    await expect.poll(() => got).toBe(1);
    fake.endStreams();
    const ended = await handle.done;
    expect([ended?.code, ended?.statusName, ended?.message]).toEqual(['workload-api-stream-ended', 'UNAVAILABLE', 'workloadapi: FetchX509SVID: stream ended by the server']);
  });

  it('ends open watches without errors when the client closes', async () => {
    const c = client();
    const errors: WorkloadApiError[] = [];
    let got = 0;
    const handle = c.watchJwtBundles(() => got++, (e) => errors.push(e));
    await expect.poll(() => got).toBe(1);
    c.close();
    expect(await handle.done).toBeUndefined();
    expect(errors).toEqual([]);
  });
});
