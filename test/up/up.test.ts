// `svidscope up` as a user runs it: the whole local stack as child processes, then Ctrl-C.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Endpoints } from '../../src/cli/up/up.js';
import { parseX509Bundle } from '../../src/identity-plane/spiffe/bundle/index.js';
import { BundleSet } from '../../src/identity-plane/spiffe/bundle/index.js';
import { parseCertificates } from '../../src/identity-plane/spiffe/x509/index.js';
import { verifyX509Svid } from '../../src/identity-plane/spiffe/x509svid/index.js';
import { createWorkloadApiClient } from '../../src/identity-plane/workload-api/index.js';
import { httpOk, spawnCli, waitFor } from '../support/process.js';
import { removeDir, tempDir } from '../support/server.js';
import { mustTrustDomain } from '../../src/identity-plane/spiffe/id/index.js';

const dir = tempDir('up');
afterAll(() => removeDir(dir));

describe('svidscope up', () => {
  it('refuses a trust domain flag that breaks a SPIFFE rule before it starts anything', async () => {
    const bad = path.join(dir, 'bad-flag');
    const r = await spawnCli(['up', '--data-dir', bad, '--peer-trust-domain', 'Peer.Example']).child;
    expect(r.exitCode).not.toBe(0);
    expect(r.all).toContain('trust domain may only hold lowercase letters');
    expect(existsSync(bad)).toBe(false);
  });

  it('starts two federated trust domains with agents and workloads, and stops cleanly on SIGTERM', async () => {
    const up = spawnCli(['up', '--data-dir', dir]);
    const file = path.join(dir, 'endpoints.json');
    try {
      await waitFor('endpoints.json', async () => existsSync(file), 120_000, up.logs);
      const e = JSON.parse(readFileSync(file, 'utf8')) as Endpoints;
      expect(e.trustDomain).toBe('example.org');
      expect(e.agents).toHaveLength(2);
      expect(e.peer?.trustDomain).toBe('peer.example');
      // The summary is printed before endpoints.json is written, but reaches us through a pipe.
      await waitFor('the summary', async () => up.logs().includes('svidscope is up'), 10_000, up.logs);
      for (const url of [e.server.health, ...e.agents.map((a) => a.health), e.peer!.server.health]) expect(await httpOk(url)).toBe(true);

      // Each sample workload got its own SVID, written to its directory, valid against its bundle.
      for (const w of [...e.workloads, ...e.peer!.workloads]) {
        const svid = path.join(w.svidDir, 'svid.pem');
        await waitFor(`${w.name} SVID`, async () => existsSync(svid), 30_000, up.logs);
        const chain = parseCertificates(readFileSync(svid));
        const td = w.spiffeId.split('/')[2];
        const bundle = parseX509Bundle(mustTrustDomain(td), readFileSync(path.join(w.svidDir, 'bundle.pem')));
        expect(verifyX509Svid(chain, new BundleSet([bundle]), { now: new Date() }).id.toString()).toBe(w.spiffeId);
      }
      // This process matches no entry; the agents say so rather than hand out someone else's SVID.
      const client = createWorkloadApiClient({ address: `unix://${e.agents[0].socketPath}`, deadlineMs: 10_000 });
      await expect(client.fetchX509Context()).rejects.toMatchObject({ code: 'workload-no-identity' });
      client.close();
      // The prober's scheduled probes and the exporter both report on the stack.
      const probed = await waitFor('prober results for every target', async () => {
        const text = await (await fetch(e.prober.metrics)).text();
        const ok = [...text.matchAll(/^svidscope_prober_probe_success\{([^}]*)\} (\d)/gm)];
        return ok.length >= 8 && ok.every((m) => m[2] === '1') ? ok.map((m) => m[1]) : undefined;
      }, 90_000, () => readFileSync(e.prober.log, 'utf8').slice(-3000));
      expect(probed.some((l) => l.includes('federated-mtls'))).toBe(true);
      const exported = await (await fetch(e.exporter.metrics)).text();
      expect(exported).toMatch(/^svidscope_exporter_/m);
      // Prometheus and Alertmanager came up with the generated rules (both are installed here).
      expect(e.monitoring && 'prometheus' in e.monitoring, JSON.stringify(e.monitoring)).toBe(true);
      const mon = e.monitoring as { prometheus: string; alertmanager: string };
      expect(await httpOk(`${mon.prometheus}/-/ready`)).toBe(true);
      expect(await httpOk(`${mon.alertmanager}/-/ready`)).toBe(true);
      const rules = (await (await fetch(`${mon.prometheus}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string }[] }[] } };
      expect(rules.data.groups.flatMap((g) => g.rules.map((r) => r.name))).toContain('SvidscopeAgentDown');
      // Federation: workload-1's log shows both trust domains in its bundles.
      await waitFor('federated bundle at workload-1', async () => readFileSync(e.workloads[0].log, 'utf8').includes('peer.example'), 30_000);
    } finally {
      up.child.kill('SIGTERM');
      const result = await up.child;
      expect(result.exitCode, up.logs().slice(-2000)).toBe(0);
    }
    const e = JSON.parse(readFileSync(file, 'utf8')) as Endpoints;
    for (const a of [...e.agents, ...e.peer!.agents]) expect(existsSync(a.socketPath), `${a.name} socket removed`).toBe(false);
    expect(await httpOk(e.server.health)).toBe(false);
  }, 180_000);
});
