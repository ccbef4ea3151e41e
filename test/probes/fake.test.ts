// Failures no healthy agent produces, served by fake Workload APIs (real gRPC servers on real
// sockets): the wrong trust domain or SPIFFE ID, a bundle without the signing authority, expired
// and not-yet-valid SVIDs, refusals by status, and rotations observed on an open stream.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModule, runProbe, type ModuleConfig, type ProbeResult } from '../../src/probes/index.js';
import { startFakeWorkloadApi, type FakeWorkloadApi } from '../support/fake-workload-api.js';
import { ca, startStaticWorkloadApi, svidMessage } from './support/static-workload-api.js';

const mod = (kind: ModuleConfig['kind'], raw: Record<string, unknown> = {}, timeout?: number) => buildModule(kind, kind, raw, timeout);
const failed = (r: ProbeResult) => `${r.reason}: ${r.message}`;
let other: FakeWorkloadApi;
let healthy: FakeWorkloadApi;

beforeAll(async () => {
  [other, healthy] = await Promise.all([
    startFakeWorkloadApi({ trustDomain: 'other.org', federatedTrustDomain: 'third.org', ids: ['spiffe://other.org/workload'] }),
    startFakeWorkloadApi({ ids: ['spiffe://example.org/a', 'spiffe://example.org/b'] }),
  ]);
});
afterAll(async () => {
  await other?.stop();
  await healthy?.stop();
});

describe('identity expectations', () => {
  it('wrong_trust_domain: an SVID from another trust domain than expected (x509 and jwt)', async () => {
    const r = await runProbe(mod('x509_svid', { expected_trust_domain: 'example.org' }), other.address);
    expect(r.reason, failed(r)).toBe('wrong_trust_domain');
    expect(r.svidExpiry, 'the expiry is reported even on failure').toBeGreaterThan(Date.now() / 1000);
    const j = await runProbe(mod('jwt_svid', { expected_trust_domain: 'example.org' }), other.address);
    expect(j.reason, failed(j)).toBe('wrong_trust_domain');
  });

  it('wrong_spiffe_id: the expected identity is not among the SVIDs', async () => {
    const r = await runProbe(mod('x509_svid', { expected_spiffe_id: 'spiffe://example.org/c' }), healthy.address);
    expect(r.reason, failed(r)).toBe('wrong_spiffe_id');
    const ok = await runProbe(mod('x509_svid', { expected_spiffe_id: 'spiffe://example.org/b' }), healthy.address);
    expect(ok.success, failed(ok)).toBe(true);
    expect(ok.facts.spiffeId).toBe('spiffe://example.org/b');
  });

  it('mtls allow-list: a peer of the right trust domain but not on the list is rejected', async () => {
    const r = await runProbe(mod('mtls', { allowed_server_ids: ['spiffe://example.org/c'] }), healthy.address);
    expect(r.reason, failed(r)).toBe('peer_rejected');
    expect(r.message).toMatch(/client rejected its peer: spiffe:\/\/example\.org\/b is not on the allow-list/);
    const server = await runProbe(mod('mtls', { allowed_client_ids: ['spiffe://other.org'] }), healthy.address);
    expect(server.reason, failed(server)).toBe('peer_rejected');
    expect(server.message).toMatch(/^server rejected its peer/);
  });
});

describe('SVIDs that do not validate', () => {
  it('untrusted_authority: the bundle does not contain the signing authority', async () => {
    const api = await startStaticWorkloadApi(svidMessage({ signer: ca(), bundle: ca() }));
    try {
      const r = await runProbe(mod('x509_svid'), api.address);
      expect(r.reason, failed(r)).toBe('untrusted_authority');
      expect(r.checks.find((c) => !c.ok)?.name).toBe('chain verifies to the bundle');
    } finally {
      await api.stop();
    }
  });

  it('expired and not_yet_valid, with the clock-skew tolerance applied', async () => {
    const signer = ca();
    const now = Date.now();
    const api = await startStaticWorkloadApi(svidMessage({ signer, issuedAt: new Date(now - 7200_000), ttlSeconds: 3600 }));
    try {
      const r = await runProbe(mod('x509_svid'), api.address);
      expect(r.reason, failed(r)).toBe('expired');
      expect(r.ttlRemainingRatio).toBe(0);
      api.set(svidMessage({ signer, issuedAt: new Date(now + 3600_000) }));
      expect((await runProbe(mod('x509_svid'), api.address)).reason).toBe('not_yet_valid');
      // 3 s past notAfter is within a 10 s skew tolerance (the lifetime check is off to isolate it).
      api.set(svidMessage({ signer, issuedAt: new Date(now - 63_000), ttlSeconds: 60 }));
      expect((await runProbe(mod('x509_svid', { clock_skew: '0s', min_ttl_ratio: 0 }), api.address)).reason).toBe('expired');
      const tolerated = await runProbe(mod('x509_svid', { clock_skew: '10s', min_ttl_ratio: 0 }), api.address);
      expect(tolerated.success, failed(tolerated)).toBe(true);
      expect(tolerated.checks.find((c) => c.name === 'chain verifies to the bundle')?.detail).toMatch(/clock-skew/);
    } finally {
      await api.stop();
    }
  });

  it('rotation_overdue: little lifetime left and min_ttl_ratio set', async () => {
    const signer = ca();
    const api = await startStaticWorkloadApi(svidMessage({ signer, issuedAt: new Date(Date.now() - 3500_000), ttlSeconds: 3600 }));
    try {
      expect((await runProbe(mod('x509_svid', { min_ttl_ratio: 0.1 }), api.address)).reason).toBe('rotation_overdue');
      expect((await runProbe(mod('x509_svid', { min_ttl_ratio: 0 }), api.address)).success).toBe(true);
    } finally {
      await api.stop();
    }
  });
});

describe('Workload API refusals', () => {
  it('maps statuses: Unavailable → unavailable, Unimplemented → api_error, PermissionDenied → permission_denied', async () => {
    healthy.refuse(grpc.status.UNAVAILABLE, 'agent is starting', 1);
    expect((await runProbe(mod('x509_svid'), healthy.address)).reason).toBe('unavailable');
    healthy.refuse(grpc.status.UNIMPLEMENTED, 'no', 1);
    expect((await runProbe(mod('x509_svid'), healthy.address)).reason).toBe('api_error');
    healthy.refuse(grpc.status.PERMISSION_DENIED, 'no identity issued', 1);
    expect((await runProbe(mod('jwt_svid'), healthy.address)).reason).toBe('permission_denied');
    healthy.clearRefusals();
  });

  it('timeout: a stalled Workload API', async () => {
    healthy.setDelay(3000);
    try {
      const r = await runProbe(mod('x509_svid', {}, 0.5), healthy.address);
      expect(r.reason, failed(r)).toBe('timeout');
    } finally {
      healthy.setDelay(0);
    }
  });
});

describe('rotation_watch', () => {
  it('records each rotation with the lifetime the old SVID had left', async () => {
    const push = setInterval(() => healthy.pushX509Update(), 300);
    try {
      const r = await runProbe(mod('rotation_watch', { duration: '1s', require_rotation: true }), healthy.address);
      expect(r.success, failed(r)).toBe(true);
      expect(r.facts.rotations).toBeGreaterThanOrEqual(2);
      const rotation = r.checks.find((c) => c.name === 'rotation 1');
      expect(rotation?.detail).toMatch(/old SVID had [\d.]+ s \(100 %\) left; new SVID validates/);
      expect(r.gauges).toContainEqual(expect.objectContaining({ name: 'probe_svid_rotations' }));
    } finally {
      clearInterval(push);
    }
  });

  it('fails when a rotated SVID does not validate, or when no rotation is required but none came', async () => {
    const signer = ca();
    const api = await startStaticWorkloadApi(svidMessage({ signer }));
    try {
      const watching = runProbe(mod('rotation_watch', { duration: '3s' }), api.address);
      await new Promise((r) => setTimeout(r, 300));
      api.push(svidMessage({ signer: ca(), bundle: signer }));
      const r = await watching;
      expect(r.reason, failed(r)).toBe('untrusted_authority');
      expect(r.message).toMatch(/the rotated SVID does not validate/);
      api.set(svidMessage({ signer }));
      const none = await runProbe(mod('rotation_watch', { duration: '0.3s', require_rotation: true }), api.address);
      expect(none.reason).toBe('rotation_overdue');
    } finally {
      await api.stop();
    }
  });

  it('reports a stream the agent ends', async () => {
    const watching = runProbe(mod('rotation_watch', { duration: '3s' }), healthy.address);
    await new Promise((r) => setTimeout(r, 300));
    healthy.failStreams(grpc.status.PERMISSION_DENIED, 'no identity issued');
    const r = await watching;
    expect(r.reason, failed(r)).toBe('permission_denied');
    expect(r.durationSeconds).toBeLessThan(2);
  });
});
