// Probes against the real identity plane: server and agent as processes, the test process as the
// workload (uid 0 entries). Every module succeeds on the healthy stack; then each failure the
// stack can produce is provoked and must come back with its bounded reason.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModule, buildProberConfig, runProbe, startProber, type ModuleConfig, type ProbeResult } from '../../src/probes/index.js';
import { startFakeWorkloadApi, type FakeWorkloadApi } from '../support/fake-workload-api.js';
import { waitFor } from '../support/process.js';
import { ensureUser } from '../support/users.js';
import { promtoolRun } from '../support/metrics.js';
import { probeCli, probeCliAs } from './support/cli.js';
import { startStack, TD, type Stack } from './support/stack.js';

const CLIENT = `spiffe://${TD}/probe/client`;
const SERVER = `spiffe://${TD}/probe/server`;
const SHORT_TTL = 8;
let stack: Stack;
let foreign: FakeWorkloadApi;

const mod = (kind: ModuleConfig['kind'], raw: Record<string, unknown> = {}, timeout?: number) => buildModule(kind, kind, raw, timeout);
const failed = (r: ProbeResult) => `${r.reason}: ${r.message}\n${r.checks.map((c) => `${c.ok ? 'pass' : 'FAIL'} ${c.name} ${c.detail}`).join('\n')}`;

beforeAll(async () => {
  [stack, foreign] = await Promise.all([
    startStack({
      rootEntries: { '/probe/client': { x509_svid_ttl: SHORT_TTL, jwt_svid_ttl: 60 }, '/probe/server': { x509_svid_ttl: SHORT_TTL } },
      // Rotation at half of the lifetime counted from receipt (4 s of 8), with a 1 s sync: the old
      // SVID still has about a fifth of its certificate lifetime (notBefore is backdated 10 s) left.
      rotationFraction: 0.5,
    }),
    startFakeWorkloadApi({ trustDomain: 'other.org', federatedTrustDomain: 'third.org', ids: ['spiffe://other.org/intruder'] }),
  ]);
}, 90_000);

afterAll(async () => {
  await foreign?.stop();
  await stack?.stop();
});

describe('probes on a healthy stack', () => {
  it('x509_svid fetches, validates and measures the SVID', async () => {
    const r = await runProbe(mod('x509_svid', { expected_spiffe_id: CLIENT, expected_trust_domain: TD }), stack.address);
    expect(r.success, failed(r)).toBe(true);
    expect(r.facts.spiffeId).toBe(CLIENT);
    expect(r.phases.map(([p]) => p)).toEqual(['first_message', 'validate']);
    expect(r.ttlRemainingRatio).toBeGreaterThan(0.1);
    expect(r.svidExpiry! * 1000).toBeGreaterThan(Date.now());
    expect(r.checks.every((c) => c.ok)).toBe(true);
  });

  it('jwt_svid validates the token locally and through ValidateJWTSVID', async () => {
    const r = await runProbe(mod('jwt_svid', { spiffe_id: CLIENT, audience: ['orders'] }), stack.address);
    expect(r.success, failed(r)).toBe(true);
    expect(r.checks.map((c) => c.name)).toContain('ValidateJWTSVID for audience orders');
    expect(r.phases.map(([p]) => p)).toEqual(['fetch_svid', 'fetch_bundles', 'validate_local', 'validate_api']);
  });

  it('mtls: the two entries complete a TLS 1.3 handshake and a round trip, each verifying the other', async () => {
    const r = await runProbe(mod('mtls', { client_spiffe_id: CLIENT, server_spiffe_id: SERVER, allowed_server_ids: [SERVER], allowed_client_ids: [CLIENT] }), stack.address);
    expect(r.success, failed(r)).toBe(true);
    expect(r.gauges).toContainEqual(expect.objectContaining({ name: 'probe_tls_version_info', labels: { version: 'TLS 1.3' } }));
    expect(r.phases.map(([p]) => p)).toEqual(expect.arrayContaining(['handshake', 'verify', 'round_trip']));
  });

  it('svidscope probe prints a readable report and exits 0', async () => {
    const res = await probeCli('probe', 'x509_svid', '--target', stack.address, '--expected-trust-domain', TD);
    expect(res.code, res.stdout + res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^probe x509_svid unix:\/\/.*: SUCCESS in [\d.]+ ms/);
    expect(res.stdout).toMatch(/pass {2}chain verifies to the bundle/);
    expect(res.stdout).toMatch(/phases: first_message [\d.]+ ms, validate/);
  });

  it('prober: /probe (multi-target), scheduled targets on /metrics, rotation watch; both pass promtool', async () => {
    const config = buildProberConfig({
      listen: '127.0.0.1:0',
      modules: {
        client_x509: { prober: 'x509_svid', x509_svid: { expected_spiffe_id: CLIENT } },
        pair: { prober: 'mtls', mtls: { client_spiffe_id: CLIENT, server_spiffe_id: SERVER } },
        watch: { prober: 'rotation_watch', timeout: '15s', rotation_watch: { duration: '9s', require_rotation: true, spiffe_id: CLIENT } },
        jwt: { prober: 'jwt_svid', jwt_svid: { spiffe_id: CLIENT } },
      },
      targets: [
        { name: 'agent-x509', module: 'client_x509', target: stack.address, interval: '1s' },
        { name: 'agent-mtls', module: 'pair', target: stack.address, interval: '1s' },
        { name: 'agent-jwt', module: 'jwt', target: stack.address, interval: '2s' },
        { name: 'agent-rotation', module: 'watch', target: stack.address },
      ],
    });
    const prober = await startProber(config);
    try {
      const q = (module: string, target: string) => `${prober.url}/probe?module=${module}&target=${encodeURIComponent(target)}`;
      // The one-shot rotation watch (held ~9 s) runs while the scheduled probes go on.
      const watching = fetch(q('watch', stack.address)).then((r) => r.text());
      const one = await fetch(q('x509_svid', stack.address), { headers: { 'X-Prometheus-Scrape-Timeout-Seconds': '5' } });
      expect(one.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const body = await one.text();
      expect(body).toMatch(/^probe_success 1$/m);
      expect(body).toMatch(/^probe_timeout_seconds 4\.5$/m);
      expect(body).toMatch(/^probe_phase_duration_seconds\{phase="first_message"\} /m);
      expect(body).toMatch(/^probe_svid_ttl_remaining_ratio 0\.\d+/m);
      expect(body).toMatch(/^probe_svid_failure_reason\{reason="expired"\} 0$/m);
      expect(await promtoolRun(body)).toEqual({ code: 0, output: '' });
      const bad = await fetch(`${prober.url}/probe?module=nope&target=x`);
      expect(bad.status).toBe(400);
      const badTarget = await fetch(q('x509_svid', 'http://not-a-socket'));
      expect(badTarget.status).toBe(400);

      const watched = await watching;
      expect(watched, watched).toMatch(/^probe_success 1$/m);
      expect(watched).toMatch(/^probe_svid_rotations [1-9]/m);
      expect(await promtoolRun(watched)).toEqual({ code: 0, output: '' });

      const metrics = await waitFor('scheduled results', async () => {
        const text = await (await fetch(`${prober.url}/metrics`)).text();
        const ok = ['agent-x509', 'agent-mtls', 'agent-jwt', 'agent-rotation'].every((t) => new RegExp(`^svidscope_prober_probe_success\\{module="[a-z_0-9]+",target="${t}"\\} 1$`, 'm').test(text));
        return ok && /^svidscope_prober_rotations_total\{target="agent-rotation",result="valid"\} [1-9]/m.test(text) && text;
      }, 20_000);
      expect(metrics).toMatch(/^svidscope_prober_probes_total\{module="client_x509",target="agent-x509",result="success"\} [1-9]/m);
      expect(metrics).toMatch(/^svidscope_prober_probe_failures_total\{module="client_x509",target="agent-x509",reason="timeout"\} 0$/m);
      expect(metrics).toMatch(/^svidscope_prober_svid_expiry_timestamp_seconds\{module="pair",target="agent-mtls"\} \d+/m);
      expect(metrics).toMatch(/^svidscope_prober_rotation_ttl_remaining_ratio_bucket\{le="0\.5",target="agent-rotation"\} [1-9]/m);
      expect(metrics).not.toMatch(/nodejs_active_handles_total/);
      expect(metrics).not.toMatch(/unix:\/\//); // addresses never become labels
      expect(await promtoolRun(metrics)).toEqual({ code: 0, output: '' });
    } finally {
      await prober.stop();
    }
  }, 45_000);
});

describe('failures the stack produces, with their bounded reason', () => {
  it('socket_missing: no socket at the configured path', async () => {
    const r = await runProbe(mod('x509_svid'), `unix://${path.join(stack.dir, 'nope.sock')}`);
    expect(r.reason, failed(r)).toBe('socket_missing');
  });

  it('permission_denied: a caller with no entry (the CLI run as another uid, exit 1)', async () => {
    const nobody = ensureUser('svidscope-test-none');
    const res = await probeCliAs(nobody, ['probe', 'x509_svid', '--target', stack.address, '--json']);
    expect(res.code, res.stderr).toBe(1);
    const out = JSON.parse(res.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({ valid: false, success: false, reason: 'permission_denied' });
  });

  it('audience_mismatch: the JWT-SVID is validated for an audience it was not issued to', async () => {
    const r = await runProbe(mod('jwt_svid', { spiffe_id: CLIENT, audience: ['orders'], validate_audience: 'payments' }), stack.address);
    expect(r.reason, failed(r)).toBe('audience_mismatch');
    expect(r.checks.find((c) => !c.ok)?.name).toBe('validates locally for audience payments');
    // The agent's ValidateJWTSVID detects it too.
    const api = await runProbe(mod('jwt_svid', { spiffe_id: CLIENT, audience: ['orders'], validate_audience: 'payments', validate_locally: false }), stack.address);
    expect(api.reason, failed(api)).toBe('audience_mismatch');
    expect(api.checks.find((c) => !c.ok)?.name).toBe('ValidateJWTSVID for audience payments');
  });

  it('peer_rejected: an mTLS peer from an untrusted trust domain', async () => {
    const r = await runProbe(mod('mtls', { client_spiffe_id: CLIENT, server_target: foreign.address }), stack.address);
    expect(r.reason, failed(r)).toBe('peer_rejected');
    expect(r.message).toMatch(/client rejected its peer: .*other\.org/);
    // The other direction: the foreign server verifies our client and refuses it.
    const back = await runProbe(mod('mtls', { server_target: stack.address, server_spiffe_id: SERVER, allowed_server_ids: [SERVER] }), foreign.address);
    expect(back.reason, failed(back)).toBe('peer_rejected');
  });

  it('timeout: the agent does not answer (stopped)', async () => {
    stack.agent.child.kill('SIGSTOP');
    try {
      const r = await runProbe(mod('x509_svid', {}, 1.5), stack.address);
      expect(r.reason, failed(r)).toBe('timeout');
      expect(r.durationSeconds).toBeLessThan(3);
    } finally {
      stack.agent.child.kill('SIGCONT');
    }
  });

  it('expired: short-TTL SVIDs with the server stopped (rotation_overdue on the way); the rotation watch sees no rotation', async () => {
    stack.server.child.kill('SIGSTOP');
    try {
      const watch = runProbe(mod('rotation_watch', { spiffe_id: CLIENT, duration: '30s', clock_skew: '0s' }, 40), stack.address);
      // The agent serves what it has until it expires, then refuses: poll until the verdict changes.
      const seen: string[] = [];
      const r = await waitFor('expired SVIDs', async () => {
        const p = await runProbe(mod('x509_svid'), stack.address);
        seen.push(p.reason ?? 'success');
        return p.reason !== undefined && p.reason !== 'rotation_overdue' && p;
      }, (SHORT_TTL + 6) * 1000, stack.logs);
      expect(r.reason, failed(r)).toBe('expired');
      expect(r.message).toMatch(/expired/);
      expect(seen).toContain('rotation_overdue');
      const w = await watch;
      expect(['rotation_overdue', 'expired']).toContain(w.reason);
    } finally {
      stack.server.child.kill('SIGCONT');
    }
  }, 30_000);
});
