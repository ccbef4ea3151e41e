import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ledger, loadStack, parseExperimentText, runExperiment } from '../../src/chaos/index.js';
import { componentPids } from '../../src/chaos/stack.js';
import { signal, waitFor } from '../../src/chaos/proc.js';
import { relayMode } from '../../src/chaos/relay.js';
import { cli, root, stackProcesses, startUp } from './support.js';
import { systemClock } from '../../src/common/clock.js';

/** Real stack, no Prometheus: hypotheses use probe-module checks only. */
describe('chaos harness against svidscope up', () => {
  let stack: Awaited<ReturnType<typeof startUp>>;
  beforeAll(async () => {
    stack = await startUp();
  }, 150_000);
  afterAll(async () => {
    await stack?.stop();
  }, 60_000);

  const hypothesis = `
steady-state-hypothesis:
  title: agent-2 serves SVIDs
  probes:
    - { name: agent-2 x509, type: probe, module: x509, target: agent-2 }
runtime: { steady_state_timeout: 60s, recovery_timeout: 60s, poll_interval: 1s }
`;

  it('freezes and resumes, deletes and recreates an entry, partitions through the proxy: passed, nothing left behind', async () => {
    const exp = parseExperimentText(`
title: freeze, delete, partition
description: three faults in a row
blast-radius: { agents: [agent-2], servers: [server] }
method:
  - { name: freeze agent-2, fault: process-freeze, target: agent-2, duration: 3s }
  - { name: delete workload-2, fault: entry-delete, server: server, spiffe_id: spiffe://example.org/workload/workload-2, duration: 3s }
  - { name: partition agent-2, fault: network, agent: agent-2, mode: partition, duration: 4s }
${hypothesis}`, 'inline');
    const s = loadStack(stack.dataDir);
    const agentConfig = readFileSync(path.join(stack.dataDir, 'agent-2.yaml'), 'utf8');
    const lines: string[] = [];
    const r = await runExperiment(exp, { dataDir: stack.dataDir, stack: s, progress: (l) => lines.push(l), clock: systemClock });
    expect(r.journal.reasons).toEqual([]);
    expect(r.journal.verdict).toBe('passed');
    expect(r.journal.run.map((f) => f.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(r.journal.rollbacks.every((x) => x.status === 'succeeded')).toBe(true);
    expect(readFileSync(path.join(stack.dataDir, 'agent-2.yaml'), 'utf8')).toBe(agentConfig);
    expect(stackProcesses(stack.dataDir).filter((p) => p.state === 'T')).toEqual([]);
    expect(componentPids(s.components.get('agent-2')!)).toHaveLength(1);
    expect(new Ledger(stack.dataDir).read().runs).toEqual([]);
    expect(readFileSync(r.reportFile, 'utf8')).toContain('**Verdict: PASSED**');
    expect(readFileSync(path.join(stack.dataDir, 'chaos', 'metrics.prom'), 'utf8')).toContain('svidscope_chaos_experiment_runs_total{experiment="inline",verdict="passed"} 1');
  }, 240_000);

  it('a harness killed with SIGKILL mid-fault leaves a ledger that `chaos recover` replays', async () => {
    const s = loadStack(stack.dataDir);
    const agent = s.components.get('agent-2')!;
    const before = componentPids(agent);
    const file = path.join(stack.dataDir, 'kill-mid-fault.yaml');
    writeFileSync(file, `
title: kill agent-2 for a long time
description: the harness dies during the fault
blast-radius: { agents: [agent-2] }
method:
  - { name: kill agent-2, fault: process-kill, target: agent-2, duration: 10m }
${hypothesis}`);
    const harness = cli(['chaos', 'run', file, '--data-dir', stack.dataDir]);
    const ledger = new Ledger(stack.dataDir);
    expect(await waitFor(() => ledger.read().runs.some((r) => r.faults.some((f) => f.state === 'active')), 90_000, 200)).toBe(true);
    expect(componentPids(agent)).toEqual([]);
    signal(harness.pid!, 'SIGKILL');
    await harness;
    expect(componentPids(agent)).toEqual([]); // the fault outlived the harness

    const r = await cli(['chaos', 'recover', '--data-dir', stack.dataDir, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { faults: { ok: boolean; notes: string[] }[] };
    expect(out.faults).toHaveLength(1);
    expect(out.faults[0].ok).toBe(true);
    const after = componentPids(agent);
    expect(after).toHaveLength(1);
    expect(after).not.toEqual(before);
    expect(ledger.read().runs).toEqual([]);
    expect((await fetch(agent.health!)).ok).toBe(true);
    // recover is idempotent
    const again = await cli(['chaos', 'recover', '--data-dir', stack.dataDir]);
    expect(again.stdout).toContain('nothing to recover');
  }, 240_000);

  it('a partition outlives a killed harness in the agent\'s relay; recover clears it without restarting the agent', async () => {
    const s = loadStack(stack.dataDir);
    const agent = s.components.get('agent-2')!;
    const relay = s.endpoints.agents[1].relay!.control;
    const before = componentPids(agent);
    const file = path.join(stack.dataDir, 'partition-crash.yaml');
    writeFileSync(file, `
title: partition agent-2 for a long time
description: the harness dies during the partition
blast-radius: { agents: [agent-2] }
method:
  - { name: partition agent-2, fault: network, agent: agent-2, mode: partition, duration: 10m }
${hypothesis}`);
    const harness = cli(['chaos', 'run', file, '--data-dir', stack.dataDir]);
    const ledger = new Ledger(stack.dataDir);
    expect(await waitFor(() => ledger.read().runs.some((r) => r.faults.some((f) => f.state === 'active')), 90_000, 200)).toBe(true);
    signal(harness.pid!, 'SIGKILL');
    await harness;
    expect(await relayMode(relay)).toEqual({ kind: 'partition' }); // the fault outlived the harness

    const r = await cli(['chaos', 'recover', '--data-dir', stack.dataDir, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await relayMode(relay)).toEqual({ kind: 'pass' });
    expect(componentPids(agent)).toEqual(before); // never restarted
    expect(ledger.read().runs).toEqual([]);
  }, 240_000);

  it('SIGTERM during a fault rolls back before exiting (verdict aborted)', async () => {
    const s = loadStack(stack.dataDir);
    const file = path.join(stack.dataDir, 'sigterm.yaml');
    writeFileSync(file, `
title: freeze agent-2 for a long time
description: the harness is asked to stop
blast-radius: { agents: [agent-2] }
method:
  - { name: freeze agent-2, fault: process-freeze, target: agent-2, duration: 10m }
${hypothesis}`);
    const harness = cli(['chaos', 'run', file, '--data-dir', stack.dataDir, '--json']);
    const ledger = new Ledger(stack.dataDir);
    expect(await waitFor(() => ledger.read().runs.some((r) => r.faults.some((f) => f.state === 'active')), 90_000, 200)).toBe(true);
    signal(harness.pid!, 'SIGTERM');
    const r = await harness;
    expect(JSON.parse(r.stdout).verdict).toBe('aborted');
    expect(stackProcesses(stack.dataDir).filter((p) => p.state === 'T')).toEqual([]);
    expect(ledger.read().runs).toEqual([]);
    expect(componentPids(s.components.get('agent-2')!)).toHaveLength(1);
  }, 240_000);

  it('a dry run prints the plan and changes nothing', async () => {
    const s = loadStack(stack.dataDir);
    const pids = componentPids(s.components.get('agent-2')!);
    const r = await cli(['chaos', 'run', 'agent-partition', '--dry-run', '--data-dir', stack.dataDir, '--experiments', path.join(root, 'experiments')]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("inject:   set agent-2's fault relay to the server to partition (no restart)");
    expect(r.stdout).toContain('dry run: nothing was changed');
    expect(componentPids(s.components.get('agent-2')!)).toEqual(pids);
    expect((parse(readFileSync(path.join(stack.dataDir, 'agent-2.yaml'), 'utf8')) as { server_address: string }).server_address).toBe(s.endpoints.agents[1].relay!.address);
    expect(await relayMode(s.endpoints.agents[1].relay!.control)).toEqual({ kind: 'pass' });
  }, 60_000);
});
