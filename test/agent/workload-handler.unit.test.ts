// The Workload API handler called in-process with fake calls: the security header is checked
// before the caller is attested, attestation failures map to their gRPC status (with the catalogue
// code in a trailer, and no internal detail leaked), and "no identity" depends on whether the
// agent ever synced.
import * as grpc from '@grpc/grpc-js';
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { SvidscopeError } from '../../src/common/errors/catalog.js';
import { nullLogger } from '../../src/common/log.js';
import { createWorkloadHandler } from '../../src/identity-plane/agent/endpoints/workload-handler.js';
import { WorkloadCache, type Selector } from '../../src/identity-plane/agent/manager/cache.js';
import { ERROR_CODE_METADATA } from '../../src/identity-plane/server-api/services.js';
import type { EntryMsg } from '../../src/identity-plane/server-api/messages.js';

const CALLER: Selector[] = [{ type: 'unix', value: 'uid:1000' }];

function setup(attest: () => Promise<Selector[]> = async () => CALLER) {
  const clock = new FakeClock();
  const cache = new WorkloadCache(clock);
  const seen = { attested: 0, jwtFetched: 0, requests: [] as [string, grpc.status][] };
  const handler = createWorkloadHandler({
    cache, clock, logger: nullLogger(),
    attestor: { attest: () => { seen.attested++; return attest(); } },
    jwt: { fetchJwtSvid: async () => { seen.jwtFetched++; return { token: 'token', expiresAt: clock.nowMs() + 60_000 }; } },
    jwtAudience: { maxCount: 4, maxBytes: 256 },
    events: { request: (method, code) => seen.requests.push([method, code]) },
  });
  return { clock, cache, handler, seen };
}

function metadata(header: string[]): grpc.Metadata {
  const m = new grpc.Metadata();
  for (const v of header) m.add('workload.spiffe.io', v);
  return m;
}

type Outcome = { err: grpc.ServiceError | null; res: unknown };

function unary(handler: grpc.UntypedServiceImplementation, method: string, request: object, header: string[] = ['true']): Promise<Outcome> {
  const fn = handler[method] as grpc.handleUnaryCall<object, unknown>;
  return new Promise((resolve) => fn({ metadata: metadata(header), request } as unknown as grpc.ServerUnaryCall<object, unknown>,
    (err, res) => resolve({ err: err as grpc.ServiceError | null, res })));
}

/** A server stream as the handler sees one: written messages, and the error or end it finishes with. */
function stream(handler: grpc.UntypedServiceImplementation, method: string, header: string[] = ['true']) {
  const call = Object.assign(new EventEmitter(), { metadata: metadata(header), written: [] as object[], ended: false, write(m: object) { call.written.push(m); return true; }, end() { call.ended = true; } });
  const error = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
  (handler[method] as (c: unknown) => void)(call);
  return { call, error };
}

function entry(id: string): EntryMsg {
  return { id, spiffe_id: `spiffe://example.org/${id}`, parent_id: 'spiffe://example.org/agent', selectors: CALLER, x509_svid_ttl: 0, federates_with: [], admin: false, downstream: false, expires_at: '0', dns_names: [], revision_number: '1', jwt_svid_ttl: 0, hint: '', created_at: '1' };
}

describe('Workload API security header', () => {
  it.each([['absent', []], ['false', ['false']], ['TRUE', ['TRUE']], ['twice', ['true', 'true']]])('refuses a unary call with the header %s before attesting the caller', async (_name, header) => {
    const { handler, seen } = setup();
    const { err } = await unary(handler, 'FetchJWTSVID', { audience: ['api'], spiffe_id: '' }, header);
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err?.details).toBe('security header missing from request');
    expect(seen.attested).toBe(0);
    expect(seen.jwtFetched).toBe(0);
    expect(seen.requests).toEqual([['FetchJWTSVID', grpc.status.INVALID_ARGUMENT]]);
  });

  it('refuses a stream without the header, writing nothing', async () => {
    const { handler, seen } = setup();
    const { call, error } = stream(handler, 'FetchX509SVID', []);
    expect((await error).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(call.written).toEqual([]);
    expect(seen.attested).toBe(0);
  });
});

describe('Workload API attestation failures', () => {
  it('maps an unavailable attestor to UNAVAILABLE with the catalogue code in a trailer', async () => {
    const { handler } = setup(async () => { throw new SvidscopeError('unavailable', 'peer credentials could not be read'); });
    const { err } = await unary(handler, 'FetchJWTSVID', { audience: ['api'], spiffe_id: '' });
    expect(err?.code).toBe(grpc.status.UNAVAILABLE);
    expect(err?.details).toBe('peer credentials could not be read');
    expect(err?.metadata.get(ERROR_CODE_METADATA)).toEqual(['unavailable']);
  });

  it('maps a caller that executed another program after connecting to its catalogue status, on streams too', async () => {
    const refusal = new SvidscopeError('workload-exec-after-connect', 'the caller executed another program');
    const { handler } = setup(async () => { throw refusal; });
    const { call, error } = stream(handler, 'FetchX509SVID');
    const err = await error;
    expect(err.code).toBe(refusal.grpcStatus);
    expect(err.code).not.toBe(grpc.status.INTERNAL);
    expect(err.metadata.get(ERROR_CODE_METADATA)).toEqual(['workload-exec-after-connect']);
    expect(call.written).toEqual([]);
  });

  it('answers INTERNAL without detail for any other failure', async () => {
    const { handler } = setup(async () => { throw new Error('/proc/1234/status: secret internal path'); });
    const { err } = await unary(handler, 'FetchJWTSVID', { audience: ['api'], spiffe_id: '' });
    expect(err?.code).toBe(grpc.status.INTERNAL);
    expect(err?.details).toBe('internal error');
    // Only the catalogue code travels, never the cause.
    expect(err?.metadata.get(ERROR_CODE_METADATA)).toEqual(['internal']);
  });
});

describe('Workload API with no identity', () => {
  it('is UNAVAILABLE before the first sync and PERMISSION_DENIED once entries are known', async () => {
    const { handler, cache } = setup();
    expect((await unary(handler, 'FetchJWTSVID', { audience: ['api'], spiffe_id: '' })).err?.code).toBe(grpc.status.UNAVAILABLE);
    cache.setEntries([]);
    const { err } = await unary(handler, 'FetchJWTSVID', { audience: ['api'], spiffe_id: '' });
    expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err?.details).toBe('no identity issued');
  });

  it('fetches a JWT-SVID only for a matching entry, and refuses audiences over the limit before fetching', async () => {
    const { handler, cache, seen } = setup();
    cache.setEntries([entry('web')]);
    const ok = await unary(handler, 'FetchJWTSVID', { audience: ['api'], spiffe_id: '' });
    expect(ok.res).toEqual({ svids: [{ spiffe_id: 'spiffe://example.org/web', svid: 'token', hint: '' }] });
    expect((await unary(handler, 'FetchJWTSVID', { audience: ['api'], spiffe_id: 'spiffe://example.org/other' })).err?.code).toBe(grpc.status.PERMISSION_DENIED);
    const tooMany = await unary(handler, 'FetchJWTSVID', { audience: ['a', 'b', 'c', 'd', 'e'], spiffe_id: '' });
    expect(tooMany.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(seen.jwtFetched).toBe(1);
  });
});
