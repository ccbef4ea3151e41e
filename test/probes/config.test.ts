// Config parsing, the reason mapping and the /probe exposition, without any server.
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { SvidscopeError } from '../../src/common/errors/catalog.js';
import { WorkloadApiError } from '../../src/identity-plane/workload-api/index.js';
import { buildProberConfig, classifyError, defaultModules, FAILURE_REASONS, REASON_MEANING, renderProbeMetrics, type ProbeResult } from '../../src/probes/index.js';
import { promtoolRun } from '../support/metrics.js';

describe('prober config', () => {
  it('has a default module per kind, with documented defaults', () => {
    const m = defaultModules();
    expect([...m.keys()]).toEqual(['x509_svid', 'jwt_svid', 'mtls', 'bundle_endpoint', 'rotation_watch']);
    expect(m.get('x509_svid')).toMatchObject({ timeoutSeconds: 10, settings: { clockSkewSeconds: 5, minTtlRatio: 0.1 } });
    expect(m.get('jwt_svid')).toMatchObject({ settings: { audience: ['svidscope-probe'], validateAudience: 'svidscope-probe', validateViaApi: true } });
    expect(m.get('bundle_endpoint')).toMatchObject({ settings: { profile: 'https_web', maxAgeSeconds: 0 } });
    expect(m.get('rotation_watch')).toMatchObject({ timeoutSeconds: 40, settings: { durationSeconds: 30, requireRotation: false } });
  });

  it('reads modules and targets, and names the key path of every mistake', () => {
    const c = buildProberConfig({
      listen: '0.0.0.0:9465',
      modules: { fed: { prober: 'bundle_endpoint', timeout: '3s', bundle_endpoint: { trust_domain: 'example.org', max_age: '1d' } } },
      targets: [{ name: 'fed-a', module: 'fed', target: 'https://a/b' }],
    });
    expect(c.modules.get('fed')).toMatchObject({ kind: 'bundle_endpoint', timeoutSeconds: 3, settings: { maxAgeSeconds: 86400 } });
    expect(c.targets).toEqual([{ name: 'fed-a', module: 'fed', target: 'https://a/b', intervalSeconds: 30 }]);
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ modules: { m: { prober: 'icmp' } } }, /modules\.m\.prober: must be one of/],
      [{ modules: { m: { prober: 'x509_svid', x509_svid: { expected_spiffe_id: 'nope' } } } }, /modules\.m\.x509_svid\.expected_spiffe_id/],
      [{ modules: { m: { prober: 'x509_svid', x509_svid: { colour: 'red' } } } }, /modules\.m\.x509_svid\.colour: unknown key/],
      [{ targets: [{ name: 'a', module: 'nope', target: 'x' }] }, /targets\[0\]\.module/],
      [{ targets: [{ name: 'a b', module: 'x509_svid', target: 'x' }] }, /targets\[0\]\.name/],
      [{ targets: [{ name: 'a', module: 'x509_svid', target: 'x' }, { name: 'a', module: 'x509_svid', target: 'y' }] }, /used twice/],
      [{ listen: 'nowhere' }, /listen/],
      [{ modules: { m: { prober: 'jwt_svid', jwt_svid: { validate_locally: false, validate_via_api: false } } } }, /cannot both be false/],
    ];
    for (const [doc, message] of bad) expect(() => buildProberConfig(doc), JSON.stringify(doc)).toThrow(message);
  });
});

describe('failure reasons', () => {
  it('is a fixed, documented set', () => {
    expect(Object.keys(REASON_MEANING).sort()).toEqual([...FAILURE_REASONS].sort());
    for (const r of FAILURE_REASONS) expect(r).toMatch(/^[a-z_]+$/);
  });

  it('maps Workload API statuses and validator codes', () => {
    const wl = (status: grpc.status, message: string, code: SvidscopeError['code'] = 'unavailable') => new WorkloadApiError(code, status, message);
    const cases: Array<[unknown, string]> = [
      [wl(grpc.status.PERMISSION_DENIED, 'no identity issued', 'permission-denied'), 'permission_denied'],
      [wl(grpc.status.DEADLINE_EXCEEDED, 'late'), 'timeout'],
      [wl(grpc.status.UNAVAILABLE, 'workloadapi: cannot reach the workload API at unix:///x: no socket at that path (is the agent running?)', 'workload-api-socket-missing'), 'socket_missing'],
      [wl(grpc.status.UNAVAILABLE, 'no valid X509-SVID: cached SVIDs expired and the server is unreachable', 'workload-svid-expired'), 'expired'],
      [wl(grpc.status.UNAVAILABLE, 'workloadapi: FetchX509SVID: stream ended by the server', 'workload-api-stream-ended'), 'unavailable'],
      [wl(grpc.status.UNAVAILABLE, 'svid 0 is invalid', 'leaf-is-ca'), 'invalid_svid'],
      [wl(grpc.status.UNAVAILABLE, 'connection refused'), 'unavailable'],
      [wl(grpc.status.INVALID_ARGUMENT, 'security header missing', 'usage'), 'api_error'],
      [new SvidscopeError('unknown-authority', 'x'), 'untrusted_authority'],
      [new SvidscopeError('signature-invalid', 'x'), 'jwt_invalid'],
      [new SvidscopeError('keys-missing', 'x'), 'malformed_bundle'],
      [new Error('boom'), 'internal'],
    ];
    for (const [err, reason] of cases) expect(classifyError(err).reason, String(err)).toBe(reason);
  });
});

describe('/probe exposition', () => {
  const result: ProbeResult = {
    module: 'x', kind: 'x509_svid', target: 'unix:///a', success: false, reason: 'expired', message: 'm', startedAt: new Date(),
    durationSeconds: 0.0123, timeoutSeconds: 10, phases: [['first_message', 0.01], ['validate', 0.002]], checks: [], facts: {},
    gauges: [{ name: 'probe_tls_version_info', help: 'TLS "version"\\ with odd text', value: 1, labels: { version: 'TLS 1.3 "x"\\' } }],
    svidExpiry: 1_900_000_000, ttlRemainingRatio: 0, svidLifetimeSeconds: 3610,
  };
  it('lists every reason with the failing one at 1, and passes promtool', async () => {
    const text = renderProbeMetrics(result);
    expect(text).toMatch(/^probe_svid_failure_reason\{reason="expired"\} 1$/m);
    expect(text.match(/^probe_svid_failure_reason\{/gm)).toHaveLength(FAILURE_REASONS.length);
    expect(text).toMatch(/^probe_phase_duration_seconds\{phase="validate"\} 0\.002$/m);
    expect(text).toMatch(/^probe_tls_version_info\{version="TLS 1\.3 \\"x\\"\\\\"\} 1$/m);
    expect(await promtoolRun(text)).toEqual({ code: 0, output: '' });
  });
});
