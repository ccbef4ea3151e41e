import { describe, expect, it } from 'vitest';
import { buildExporterConfig, DEFAULT_LISTEN } from '../../src/exporter/index.js';

describe('exporter config', () => {
  it('fills the documented defaults', () => {
    const c = buildExporterConfig({ sources: [{ name: 'a', type: 'workload_api', address: '/run/agent.sock' }] });
    expect(c).toMatchObject({
      listen: DEFAULT_LISTEN, logLevel: 'info', scrapeTimeoutSeconds: 5, maxSeries: 10_000, perSvidSeries: false, perSvidMaxSeries: 1000, authorityMaxSeries: 16, propagationReferences: [],
      sources: [{ name: 'a', type: 'workload_api', address: '/run/agent.sock', jwtBundles: true, intervalSeconds: 15 }],
    });
  });

  it('takes --source shortcuts and flags over the file, and picks the server as propagation reference', () => {
    const c = buildExporterConfig({ listen: '0.0.0.0:1', default_interval: '30s', sources: [{ name: 'peer', type: 'bundle_endpoint', url: 'https://peer.example:8443/b', trust_domain: 'peer.org', interval: '5m' }] }, {
      listen: '127.0.0.1:0', perSvidSeries: true,
      source: ['workload_api:agent-a=unix:///run/a.sock', 'files:svids=/var/a,/var/b', 'server_admin:server=/run/admin.sock'],
    });
    expect(c.listen).toBe('127.0.0.1:0');
    expect(c.perSvidSeries).toBe(true);
    expect(c.sources.map((s) => [s.name, s.type, s.intervalSeconds])).toEqual([['peer', 'bundle_endpoint', 300], ['agent-a', 'workload_api', 30], ['svids', 'files', 30], ['server', 'server_admin', 30]]);
    expect(c.sources[2]).toMatchObject({ paths: ['/var/a', '/var/b'] });
    expect(c.propagationReferences).toEqual(['server', 'peer']);
  });

  it.each([
    [{}, 'at least one source'],
    [{ sources: [{ name: 'a', type: 'files', paths: ['/x'], colour: 'red' }] }, 'sources[0].colour: unknown key'],
    [{ sources: [{ name: 'a', type: 'files', paths: ['/x'] }, { name: 'a', type: 'files', paths: ['/y'] }] }, 'used twice'],
    [{ sources: [{ name: 'a/b', type: 'files', paths: ['/x'] }] }, 'sources[0].name'],
    [{ sources: [{ name: 'a', type: 'ftp' }] }, 'sources[0].type: must be one of'],
    [{ sources: [{ name: 'a', type: 'files' }] }, 'sources[0].paths: is required'],
    [{ sources: [{ name: 'a', type: 'bundle_endpoint', url: 'http://x/b', trust_domain: 'x.org' }] }, 'sources[0].url'],
    [{ sources: [{ name: 'a', type: 'bundle_endpoint', url: 'https://x/b' }] }, 'sources[0].trust_domain: is required'],
    [{ sources: [{ name: 'a', type: 'bundle_endpoint', url: 'https://x/b', trust_domain: 'x.org', profile: 'https_spiffe' }] }, 'endpoint_spiffe_id and bundle_file'],
    [{ sources: [{ name: 'a', type: 'files', paths: ['/x'], interval: 'soon' }] }, 'sources[0].interval'],
    [{ scrape: { max_series: 0 }, sources: [{ name: 'a', type: 'files', paths: ['/x'] }] }, 'scrape.max_series: must be at least 1'],
    [{ propagation_references: ['nope'], sources: [{ name: 'a', type: 'files', paths: ['/x'] }] }, 'propagation_references'],
    [{ listen: 'nowhere', sources: [{ name: 'a', type: 'files', paths: ['/x'] }] }, 'listen'],
    [{ sources: [{ name: 'a', type: 'bundle_endpoint', url: 'https://x/b', trust_domain: 'X.org' }] }, 'sources[0].trust_domain: spiffeid: trust domain may only hold lowercase'],
    [{ sources: [{ name: 'a', type: 'files', paths: ['/x'], trust_domain: 'spiffe://x.org/' }] }, 'sources[0].trust_domain: spiffeid:'],
  ])('rejects %j naming the key', (doc, message) => {
    expect(() => buildExporterConfig(doc as Record<string, unknown>)).toThrow(message);
  });

  it('rejects a --source shortcut it cannot read', () => {
    expect(() => buildExporterConfig({}, { source: ['bundle_endpoint:x=https://a/b'] })).toThrow('bundle endpoints go in the config file');
    expect(() => buildExporterConfig({}, { source: ['agent.sock'] })).toThrow('<type>:<name>=<target>');
  });
});

describe('svidscope exporter check-config', () => {
  async function run(args: string[]): Promise<{ code: number; out: string[] }> {
    const { Command } = await import('commander');
    const { registerExporterCommands } = await import('../../src/cli/exporter/commands.js');
    const { CommandExit } = await import('../../src/cli/output.js');
    const out: string[] = [];
    const program = new Command('svidscope').exitOverride();
    registerExporterCommands(program, { out: (l) => out.push(l), err: (l) => out.push(l) });
    try {
      await program.parseAsync(args, { from: 'user' });
      return { code: 0, out };
    } catch (err) {
      return { code: err instanceof CommandExit ? err.exitCode : -1, out };
    }
  }

  it('prints the effective sources, or one JSON error line with the catalogue code', async () => {
    const ok = await run(['exporter', 'check-config', '--source', 'files:svids=/var/run/svids', '--source', 'server_admin:server=/run/admin.sock', '--json']);
    expect(ok.code).toBe(0);
    const doc = JSON.parse(ok.out[0]) as { valid: boolean; config: { sources: { name: string }[]; propagationReferences: string[] } };
    expect(doc.valid).toBe(true);
    expect(doc.config.sources.map((s) => s.name)).toEqual(['svids', 'server']);
    expect(doc.config.propagationReferences).toEqual(['server']);
    const bad = await run(['exporter', 'check-config', '--json']);
    expect(bad.code).not.toBe(0);
    expect(JSON.parse(bad.out[0])).toMatchObject({ valid: false, error: 'config-invalid' });
  });
});
