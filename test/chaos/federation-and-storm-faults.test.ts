import { rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ledger, loadExperimentFile, loadStack, parseExperimentText, planExperiment, recover, runExperiment } from '../../src/chaos/index.js';
import { faultImpl } from '../../src/chaos/faults/index.js';
import { playRollback } from '../../src/chaos/ledger.js';
import { findPids, sleep, waitFor } from '../../src/chaos/proc.js';
import type { StackView } from '../../src/chaos/stack.js';
import { connectAdmin } from '../../src/identity-plane/server-api/admin-client.js';
import { root, startUp } from './support.js';
import { systemClock } from '../../src/common/clock.js';

/** `svidscope up` WITH federation (support.startUp runs --no-federation), and a teardown that kills every process of its data dir. */
/**
 * Other `svidscope up` stacks of this machine. `up` probes fixed preferred ports and binds them
 * later, and the chaos tests kill and restart components on their ports: a stack starting next to
 * another one (harness.test.ts runs in the other worker) can take a port the other is about to bind
 * or re-bind. So this file starts its stack when no other one runs (waiting at most 60 s).
 */
function otherStacks(): number[] {
  return findPids((argv) => argv.includes('up') && argv.includes('--data-dir') && argv.some((a) => a.endsWith('svidscope.js')));
}

async function startFederatedUp(): Promise<Awaited<ReturnType<typeof startUp>>> {
  await sleep(2_000); // let a test file that started with this one launch its stack first
  await waitFor(() => otherStacks().length === 0, 60_000, 250);
  const stack = await startUp({ federation: true });
  return { ...stack, stop: async () => {
    await stack.stop();
    rmSync(stack.dataDir, { recursive: true, force: true });
  } };
}

const fedFields = (f: { relationship: Record<string, unknown> }) => {
  const r = f.relationship;
  return { url: r.bundle_endpoint_url, profile: r.bundle_endpoint_profile, id: r.endpoint_spiffe_id, ca: r.web_ca_bundle };
};

describe('bundle-endpoint and issuance-storm: validation', () => {
  it('accepts the new kinds with defaults, rejects bad parameters, ships valid experiments', () => {
    const head = 'title: t\ndescription: d\nsteady-state-hypothesis: { probes: [] }\nblast-radius: { servers: [server], agents: [agent-1] }\n';
    const e = parseExperimentText(`${head}method:\n  - { fault: bundle-endpoint, server: server, duration: 1s }\n  - { fault: issuance-storm, agent: agent-1, duration: 1s }\n`, 't');
    expect(e.method[0]).toMatchObject({ fault: 'bundle-endpoint', server: 'server', mode: 'unavailable' });
    expect(e.method[1]).toMatchObject({ fault: 'issuance-storm', agent: 'agent-1', count: 50, timeoutMs: 60_000 });
    expect(() => parseExperimentText(`${head}method:\n  - { fault: bundle-endpoint, mode: gone, trust_domain: 'Bad TD', duration: 1s }\n  - { fault: issuance-storm, agent: agent-2, count: 0, timeout: 10ms, duration: 1s }\n`, 't'))
      .toThrow(/method\[0\]\.trust_domain: expected a trust domain name.*method\[0\]\.mode: must be one of unavailable, malformed, stale.*method\[1\]\.count: must be from 1 to 500 workloads \(got 0\).*method\[1\]\.timeout: must be at least 1s.*method\[1\]\.agent: "agent-2" is outside the blast radius/);
    for (const f of ['federation-endpoint-down', 'issuance-storm']) {
      const exp = loadExperimentFile(path.join(root, 'experiments', `${f}.yaml`));
      expect(planExperiment(exp, undefined).join('\n')).toMatch(f === 'issuance-storm' ? /rollback: kill the clients, delete the 50 entries/ : /rollback: re-create server's original relationship with <peer trust domain>/);
    }
  });
});

describe('bundle-endpoint and issuance-storm against svidscope up (federated)', () => {
  let up: Awaited<ReturnType<typeof startFederatedUp>>;
  let stack: StackView;
  beforeAll(async () => {
    up = await startFederatedUp();
    stack = loadStack(up.dataDir);
  }, 150_000);
  afterAll(async () => {
    await up?.stop();
  }, 30_000);

  const ctx = () => ({ stack, backupDir: path.join(up.dataDir, 'chaos', 'backups', 'test'), progress: () => undefined, clock: systemClock });
  const exp = (method: string) => parseExperimentText(`title: t\ndescription: d\nblast-radius: { servers: [server], agents: [agent-1] }\nsteady-state-hypothesis: { probes: [] }\nmethod:\n${method}`, 't');

  it('re-points the federation at a harness endpoint (503, malformed, stale); a crashed harness is undone by recover', async () => {
    const socket = stack.components.get('server')!.adminSocket!;
    const td = stack.endpoints.peer!.trustDomain;
    const admin = connectAdmin(socket);
    try {
      const original = fedFields(await admin.call('GetFederation', { trust_domain: td }));
      const bundleBefore = await admin.call<{ sequence_number: string }>('GetBundle', { trust_domain: td });
      const ledger = new Ledger(up.dataDir);
      for (const [i, mode] of (['unavailable', 'malformed', 'stale'] as const).entries()) {
        const step = exp(`  - { name: ep, fault: bundle-endpoint, server: server, mode: ${mode}, duration: 1s }\n`).method[0];
        const prepared = await faultImpl(step).prepare(step, ctx());
        const runId = `bep-${mode}`;
        ledger.beginRun({ runId, experiment: 't', harnessPid: process.pid, harnessStartTime: '?', startedAt: new Date().toISOString() });
        ledger.addFault(runId, { id: 'f', step: step.name, kind: step.fault, target: prepared.target, state: 'applying', injectedAt: new Date().toISOString(), rollback: prepared.rollback });
        const out = await prepared.apply();
        const during = await admin.call<{ relationship: Record<string, unknown>; last_error_reason: string; bundle_sequence: string }>('GetFederation', { trust_domain: td });
        expect(during.relationship.bundle_endpoint_url).toBe(out.endpoint);
        expect(during.relationship.bundle_endpoint_profile).toBe('https_web');
        expect(String(out.refresh), mode).toMatch(/^failed: /);
        expect(during.bundle_sequence).toBe(bundleBefore.sequence_number); // the stored bundle is kept
        await prepared.release!(); // the harness "dies": its endpoint goes away, the ledger stays
        if (i === 0) {
          const r = await recover(ledger, { force: true });
          expect(r.faults.map((f) => f.ok)).toEqual([true]);
          expect(ledger.read().runs).toEqual([]);
        } else {
          expect((await playRollback(prepared.rollback))[0]).toMatch(/^restored federation/);
          ledger.removeFault(runId, 'f');
        }
        expect(fedFields(await admin.call('GetFederation', { trust_domain: td }))).toEqual(original);
        expect((await playRollback(prepared.rollback))[0]).toMatch(/already points at/); // idempotent
      }
      const after = await admin.call<{ last_success_at: string; last_error: string }>('RefreshFederation', { trust_domain: td });
      expect(Number(after.last_success_at)).toBeGreaterThan(0);
    } finally {
      admin.close();
    }
  }, 40_000);

  it('issuance storm: N clients at once all get an SVID; the run records the time; rollback leaves nothing', async () => {
    const socket = stack.components.get('server')!.adminSocket!;
    const r = await runExperiment(exp(`  - { name: storm, fault: issuance-storm, agent: agent-1, count: 12, timeout: 40s, duration: 1s }\n`), { dataDir: up.dataDir, stack, progress: () => undefined, clock: systemClock });
    expect(r.journal.reasons).toEqual([]);
    expect(r.journal.verdict).toBe('passed');
    const out = r.journal.run[0].output as { issued: number; failed: number; allIssuedMs: number | null; errors: string[] };
    expect(out.errors).toEqual([]);
    console.log('issuance storm output:', JSON.stringify(out));
    expect(out.issued).toBe(12);
    expect(out.allIssuedMs).toBeGreaterThan(0);
    expect(r.journal.rollbacks[0].notes.join(' ')).toContain('deleted 12 entries');
    const admin = connectAdmin(socket);
    try {
      const { entries } = await admin.call<{ entries: { spiffe_id: string }[] }>('ListEntries', {});
      expect(entries.filter((e) => e.spiffe_id.includes('/chaos/storm/'))).toEqual([]);
    } finally {
      admin.close();
    }
    expect(findPids((argv) => argv.some((a) => a.startsWith('--svidscope-chaos-storm=')))).toEqual([]);
    expect(new Ledger(up.dataDir).read().runs).toEqual([]);

    // crash safety: the ledger's rollback alone (what `chaos recover` replays) removes entries and links
    const step = exp(`  - { name: crash, fault: issuance-storm, agent: agent-1, count: 3, timeout: 20s, duration: 1s }\n`).method[0];
    const prepared = await faultImpl(step).prepare(step, ctx());
    expect((await prepared.apply()).issued).toBe(3);
    const notes = await playRollback(prepared.rollback);
    expect(notes[1]).toBe('deleted 3 entries (3 SPIFFE IDs)');
    expect(await playRollback(prepared.rollback)).toEqual([expect.stringMatching(/^no process left/), 'deleted 0 entries (3 SPIFFE IDs)', expect.stringMatching(/already gone$/)]);
  }, 60_000);
});
