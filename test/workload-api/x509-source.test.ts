import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { isSvidscopeError } from '../../src/common/errors/catalog.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';
import {
  createWorkloadApiClient,
  createX509Source,
  linearBackoff,
  retryDecision,
  WorkloadApiError,
  type WorkloadApiClient,
} from '../../src/identity-plane/workload-api/index.js';
import { startFakeWorkloadApi, type FakeWorkloadApi } from '../support/fake-workload-api.js';

let fake: FakeWorkloadApi;
let client: WorkloadApiClient;

beforeAll(async () => {
  fake = await startFakeWorkloadApi();
});
afterAll(() => fake.stop());
afterEach(() => {
  client?.close();
  fake.clearRefusals();
});

const connect = () => (client = createWorkloadApiClient({ address: fake.address }));
const calls = () => fake.calls.FetchX509SVID ?? 0;

describe('retry table', () => {
  it('backs off linearly from 1 s to 30 s', () => {
    expect([1, 2, 3, 29, 30, 31, 100].map(linearBackoff)).toEqual([1000, 2000, 3000, 29000, 30000, 30000, 30000]);
  });

  it('stops on Cancelled, stops with an error on InvalidArgument, retries the rest', () => {
    const decide = (status: grpc.status) => retryDecision(new WorkloadApiError('unavailable', status, 'x'));
    expect(decide(grpc.status.CANCELLED)).toBe('stop');
    expect(decide(grpc.status.INVALID_ARGUMENT)).toBe('stop-with-error');
    for (const s of [grpc.status.UNAVAILABLE, grpc.status.PERMISSION_DENIED, grpc.status.DEADLINE_EXCEEDED, grpc.status.UNKNOWN]) expect(decide(s)).toBe('retry');
  });
});

describe('createX509Source', () => {
  it('resolves on the first update and follows later ones', async () => {
    const source = await createX509Source(connect());
    expect(source.getX509Svid().id.toString()).toBe('spiffe://example.org/workload');
    expect(source.getX509BundleForTrustDomain(mustTrustDomain('example.org'))?.x509Authorities[0].der.equals(fake.ca.der)).toBe(true);
    expect(source.getX509BundleForTrustDomain(mustTrustDomain('other.org'))).toBeDefined();
    expect(source.getX509BundleForTrustDomain(mustTrustDomain('unknown.org'))).toBeUndefined();
    const before = source.getX509Svid().certificates[0].serialNumber;
    const updated = source.waitUntilUpdated();
    fake.pushX509Update();
    await updated;
    expect(source.getX509Svid().certificates[0].serialNumber).not.toBe(before);
    await source.close();
  });

  it('closes idempotently; getters then fail with "source is closed"', async () => {
    const source = await createX509Source(connect());
    const pending = source.waitUntilUpdated();
    await Promise.all([source.close(), source.close()]);
    await source.close();
    expect(source.closed).toBe(true);
    await expect(pending).rejects.toThrow('x509source: source is closed');
    expect(() => source.getX509Svid()).toThrow('x509source: source is closed');
    expect(() => source.getX509BundleForTrustDomain(mustTrustDomain('example.org'))).toThrow('x509source: source is closed');
    await expect(source.waitUntilUpdated()).rejects.toThrow('x509source: source is closed');
    await expect.poll(() => fake.openStreams()).toBe(0);
  });

  it('retries after Unavailable on the injected clock, 1 s first', async () => {
    fake.refuse(grpc.status.UNAVAILABLE, 'workload attestation failed', 1);
    const clock = new FakeClock();
    const retries: [string, number, number][] = [];
    const errors: string[] = [];
    const start = calls();
    const creating = createX509Source(connect(), {
      clock,
      onRetry: (err, delayMs, attempt) => retries.push([err.statusName, delayMs, attempt]),
      onError: (err) => errors.push(err.code),
    });
    await expect.poll(() => retries.length).toBe(1);
    expect(retries).toEqual([['UNAVAILABLE', 1000, 1]]);
    expect(errors).toEqual(['unavailable']);
    clock.advance(999);
    expect(calls() - start).toBe(1);
    clock.advance(1);
    const source = await creating;
    expect(calls() - start).toBe(2);
    expect(source.getX509Svid().id.toString()).toBe('spiffe://example.org/workload');
    await source.close();
  });

  it('keeps serving the last context while it reconnects after the stream fails', async () => {
    const clock = new FakeClock();
    const retries: number[] = [];
    const source = await createX509Source(connect(), { clock, onRetry: (_e, delayMs) => retries.push(delayMs) });
    const serial = source.getX509Svid().certificates[0].serialNumber;
    fake.failStreams(grpc.status.UNAVAILABLE, 'agent shutting down');
    await expect.poll(() => retries).toEqual([1000]);
    expect(source.getX509Svid().certificates[0].serialNumber).toBe(serial);
    const updated = source.waitUntilUpdated();
    clock.advance(1000);
    await updated;
    expect(fake.openStreams()).toBe(1);
    await source.close();
  });

  it('stops with the error on InvalidArgument, without retrying', async () => {
    client = createWorkloadApiClient({ address: fake.address, rawMetadata: new grpc.Metadata() });
    const clock = new FakeClock();
    const start = calls();
    const err = await createX509Source(client, { clock }).then(() => undefined, (e: unknown) => e);
    expect(isSvidscopeError(err) && [err.code, err.message]).toEqual(['usage', 'workloadapi: FetchX509SVID: security header missing from request']);
    clock.advance(60_000);
    expect(calls() - start).toBe(1);
  });

  it('gives up waiting when its signal aborts', async () => {
    fake.refuse(grpc.status.PERMISSION_DENIED, 'no identity issued');
    const controller = new AbortController();
    const creating = createX509Source(connect(), { clock: new FakeClock(), signal: controller.signal, onRetry: () => controller.abort() });
    await expect(creating).rejects.toThrow('x509source: aborted before the first update');
  });
});
