// Settings that make rotation or revocation unsafe: each rule of lintServerConfig hit and not hit,
// then `svidscope server check-config` and the warning at `server run` in real processes.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { buildServerConfig } from '../../src/identity-plane/server/config.js';
import { lintServerConfig, type ConfigFinding } from '../../src/identity-plane/server/config-lint.js';
import { cli } from '../support/cli.js';
import { freePort, spawnCli, waitFor } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';

const dir = tempDir('config-lint');
afterAll(() => removeDir(dir));

const peer = { trust_domain: 'peer.test', endpoint_url: 'https://peer.test:8443', profile: 'https_web' };
const lint = (doc: Record<string, unknown>, opts?: Parameters<typeof lintServerConfig>[1]) => lintServerConfig(buildServerConfig({ trust_domain: 'example.org', data_dir: dir, ...doc }), opts);
const codes = (findings: ConfigFinding[]) => findings.map((f) => `${f.severity}:${f.code}:${f.setting}`);

describe('lintServerConfig', () => {
  it('finds nothing in the defaults (CA 24 h: activation window 4 h, propagation window 8 h)', () => {
    expect(lint({})).toEqual([]);
    expect(lint({ federation: { relationships: [peer] } })).toEqual([]);
  });

  it('X.509, agent and JWT TTLs: a warning past the activation window, an error past ca.ttl', () => {
    expect(codes(lint({ default_x509_svid_ttl: '4h' }))).toEqual([]); // exactly the window
    expect(codes(lint({ default_x509_svid_ttl: '5h', agent_ttl: '1h' }))).toEqual(['warning:x509-svid-ttl-exceeds-activation-window:default_x509_svid_ttl']);
    expect(codes(lint({ default_x509_svid_ttl: '25h', agent_ttl: '1h' }))).toEqual(['error:x509-svid-ttl-exceeds-ca-ttl:default_x509_svid_ttl']);
    expect(codes(lint({ agent_ttl: '6h' }))).toEqual(['warning:agent-svid-ttl-exceeds-activation-window:agent_ttl']);
    expect(codes(lint({ agent_ttl: '48h' }))).toEqual(['error:agent-svid-ttl-exceeds-ca-ttl:agent_ttl']);
    expect(codes(lint({ default_jwt_svid_ttl: '5h' }))).toEqual(['warning:jwt-svid-ttl-exceeds-activation-window:default_jwt_svid_ttl']);
    expect(codes(lint({ default_jwt_svid_ttl: '30h' }))).toEqual(['error:jwt-svid-ttl-exceeds-ca-ttl:default_jwt_svid_ttl']);
    // The window follows ca.ttl and activate_fraction: 1 h CA at 0.9 leaves 6 minutes.
    const short = lint({ ca: { ttl: '1h', activate_fraction: 0.9 }, default_x509_svid_ttl: '10m', agent_ttl: '5m', default_jwt_svid_ttl: '5m' });
    expect(codes(short)).toEqual(['warning:x509-svid-ttl-exceeds-activation-window:default_x509_svid_ttl']);
    expect(short[0].message).toContain('6m');
  });

  it('refresh hint: an error past the propagation window, a warning past half of it', () => {
    expect(codes(lint({ bundle_refresh_hint: '4h' }))).toEqual(['warning:peers-trust-revoked-key:bundle_refresh_hint']);
    expect(codes(lint({ ca: { ttl: '6h' }, bundle_refresh_hint: '1h' }))).toEqual([]); // exactly half of 2 h
    expect(codes(lint({ ca: { ttl: '6h' }, bundle_refresh_hint: '70m' }))).toEqual(['warning:refresh-hint-near-propagation-window:bundle_refresh_hint', 'warning:peers-trust-revoked-key:bundle_refresh_hint']);
    expect(codes(lint({ ca: { ttl: '6h' }, bundle_refresh_hint: '3h' }))).toEqual(['error:refresh-hint-exceeds-propagation-window:bundle_refresh_hint', 'warning:peers-trust-revoked-key:bundle_refresh_hint']);
    // The bundle endpoint's own hint is what peers see when set.
    const endpoint = { bundle_endpoint: { bind: '127.0.0.1:0', refresh_hint: '9h' } };
    expect(codes(lint({ federation: endpoint }))).toEqual(['error:refresh-hint-exceeds-propagation-window:federation.bundle_endpoint.refresh_hint', 'warning:peers-trust-revoked-key:federation.bundle_endpoint.refresh_hint']);
    expect(codes(lint({ bundle_refresh_hint: '9h', federation: { bundle_endpoint: { bind: '127.0.0.1:0', refresh_hint: '5m' } } }))).toEqual([]);
  });

  it('federation refresh intervals that keep a peer\'s revoked key trusted', () => {
    expect(codes(lint({ federation: { relationships: [peer], refresh_max: '6h', refresh_default: '2h' } }))).toEqual([
      'warning:peer-revoked-key-trusted:federation.refresh_max',
      'warning:peer-revoked-key-trusted:federation.refresh_default',
    ]);
    // Without relationships nothing is fetched, so nothing stays trusted.
    expect(codes(lint({ federation: { refresh_max: '6h', refresh_default: '2h' } }))).toEqual([]);
    // The bound is a parameter.
    expect(codes(lint({ federation: { relationships: [peer] } }, { revokedKeyTrustMaxSeconds: 600 }))).toEqual(['warning:peer-revoked-key-trusted:federation.refresh_max']);
  });

  it('every finding names a setting and says why in one line', () => {
    const all = lint({ default_x509_svid_ttl: '25h', agent_ttl: '6h', default_jwt_svid_ttl: '30h', bundle_refresh_hint: '9h', federation: { relationships: [peer], refresh_max: '6h' } });
    expect(all.length).toBe(6);
    for (const f of all) {
      expect(f.message).toContain(f.setting);
      expect(f.message).not.toContain('\n');
    }
  });
});

describe('svidscope server check-config and server run', () => {
  const writeConfig = (name: string, doc: Record<string, unknown>) => {
    const file = path.join(dir, name);
    writeFileSync(file, stringify({ trust_domain: 'example.org', data_dir: path.join(dir, name.replace('.yaml', '')), ...doc }));
    return file;
  };
  // Real processes for two cases; the in-process CLI (same code, no tsx start-up) for the rest.
  const check = async (...args: string[]) => {
    const r = await spawnCli(['server', 'check-config', ...args]).child;
    return { code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
  };
  const checkInProcess = (...args: string[]) => cli('server', 'check-config', ...args);

  it('exits 0 for a safe config, 0 with warnings (1 with --strict), 1 with errors, 2 for an invalid one', async () => {
    const safe = writeConfig('safe.yaml', {});
    const warn = writeConfig('warn.yaml', { default_x509_svid_ttl: '5h', agent_ttl: '1h' });
    const bad = writeConfig('bad.yaml', { default_jwt_svid_ttl: '30h' });
    const invalid = writeConfig('invalid.yaml', { ca: { activate_fraction: 0.3 } });
    const [b, d] = await Promise.all([check('--config', warn, '--json'), check('--config', bad)]);
    const a = await checkInProcess('--config', safe, '--json');
    const c = await checkInProcess('--config', warn, '--strict');
    const e = await checkInProcess('--config', invalid, '--json');
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout)).toEqual({ valid: true, trustDomain: 'example.org', findings: [] });
    expect(b.code, b.stderr).toBe(0);
    expect(JSON.parse(b.stdout)).toMatchObject({ valid: true, findings: [{ code: 'x509-svid-ttl-exceeds-activation-window', severity: 'warning', setting: 'default_x509_svid_ttl' }] });
    expect(c.code).toBe(1);
    expect(c.stdout).toContain('warning: default_x509_svid_ttl:');
    expect(d.code).toBe(1);
    expect(d.stdout).toMatch(/error: default_jwt_svid_ttl: .*\[jwt-svid-ttl-exceeds-ca-ttl\]/);
    expect(d.stdout).toContain('1 error(s), 0 warning(s)');
    expect(e.code).toBe(2);
    expect(JSON.parse(e.stdout)).toMatchObject({ valid: false, error: 'config-invalid' });
  }, 60_000);

  it('server run logs each finding as a warning at start', async () => {
    const [port, health] = [await freePort(), await freePort()];
    const file = writeConfig('run.yaml', { bind: `127.0.0.1:${port}`, health_bind: `127.0.0.1:${health}`, agent_ttl: '6h' });
    const proc = spawnCli(['server', 'run', '--config', file]);
    try {
      const line = await waitFor('the lint warning in the log', async () => proc.logs().split('\n').find((l) => l.includes('agent-svid-ttl-exceeds-activation-window')), 30_000, proc.logs);
      expect(JSON.parse(line)).toMatchObject({ level: 40, code: 'agent-svid-ttl-exceeds-activation-window', setting: 'agent_ttl', severity: 'warning' });
      expect(line).toContain('config: agent_ttl (6h)');
    } finally {
      proc.child.kill('SIGTERM');
      await proc.child;
    }
  }, 60_000);
});
