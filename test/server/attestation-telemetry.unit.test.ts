// Attestation failures are counted from 0 for every (method, reason) the handler can give: a burst
// that ends between two scrapes then shows in Prometheus as an increase. A series first scraped at
// 30 has none, and the game day's SvidscopeAttestationFailureSpike stayed silent through a flood of
// 30 unknown join tokens that way.
import { describe, expect, it } from 'vitest';
import { createRegistry } from '../../src/common/telemetry/registry.js';
import { ATTESTATION_FAILURE_LABELS } from '../../src/identity-plane/server/api/attestation.js';
import { createServerTelemetry } from '../../src/identity-plane/server/telemetry.js';

describe('attestation failure series', () => {
  it('exist at 0 before any attestation, one per method and reason', async () => {
    const registry = createRegistry();
    createServerTelemetry(registry, undefined, { ca: () => undefined, bundles: () => undefined, entries: () => undefined, agents: () => undefined, datastore: () => undefined });
    const { values } = await registry.getSingleMetric('svidscope_server_attestations_total')!.get();
    const failures = values.filter((v) => v.labels.result === 'failure');
    expect(failures.map((v) => `${v.labels.method}/${v.labels.reason}`).sort()).toEqual(ATTESTATION_FAILURE_LABELS.map((l) => `${l.method}/${l.reason}`).sort());
    expect(failures.every((v) => v.value === 0)).toBe(true);
    for (const reason of ['token_unknown', 'token_expired', 'banned', 'csr_invalid', 'unsupported_method', 'invalid_request', 'internal']) {
      expect(failures.some((v) => v.labels.method === 'join_token' && v.labels.reason === reason), reason).toBe(true);
    }
  });
});

describe('signing failure series', () => {
  it('exist at 0 for the server\'s own faults and shed batches before any issuance', async () => {
    const registry = createRegistry();
    createServerTelemetry(registry, undefined, { ca: () => undefined, bundles: () => undefined, entries: () => undefined, agents: () => undefined, datastore: () => undefined });
    const { values } = await registry.getSingleMetric('svidscope_server_svid_signing_failures_total')!.get();
    expect(values.map((v) => `${v.labels.svid_type}/${v.labels.reason}`).sort()).toEqual(['jwt/internal', 'jwt/signing-worker-failed', 'x509/deadline-expired', 'x509/internal', 'x509/server-overloaded', 'x509/signing-worker-failed']);
    expect(values.every((v) => v.value === 0)).toBe(true);
  });
});
