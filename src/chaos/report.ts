import type { Journal } from './journal.js';

const s = (v: number | undefined) => (v === undefined ? '—' : `${v.toFixed(1)} s`);
const pct = (v: number) => `${(v * 100).toFixed(3)} %`;

/** The readable report of one run (Markdown): what was assumed, done, seen, and undone. */
export function renderReport(j: Journal): string {
  const e = j.experiment;
  const out: string[] = [
    `# Chaos run ${j.run_id}: ${e.title}`, '',
    `**Verdict: ${j.verdict.toUpperCase()}** (status ${j.status}${j.deviated ? ', deviated' : ''}) — ${j.start} → ${j.end} (${j.duration.toFixed(0)} s) on ${j.node}`, '',
  ];
  if (j.reasons.length) out.push(...j.reasons.map((r) => `- ${r}`), '');
  out.push(`> ${e.description.trim().replace(/\n/g, '\n> ')}`, '');
  out.push(`Blast radius: servers ${list(e.blastRadius.servers)}, agents ${list(e.blastRadius.agents)}, workloads ${list(e.blastRadius.workloads)}.${e.runbook ? ` Runbook: ${e.runbook}.` : ''}`, '');
  out.push(`## Steady-state hypothesis: ${e.steadyState.title}`, '', '| probe | before | after |', '|---|---|---|');
  for (const p of e.steadyState.probes) {
    const b = j.steady_states.before?.probes.find((x) => x.name === p.name);
    const a = j.steady_states.after?.probes.find((x) => x.name === p.name);
    out.push(`| ${p.name} | ${cell(b)} | ${cell(a)} |`);
  }
  out.push('', '## Faults', '', '| step | fault | target | injected | rolled back | status |', '|---|---|---|---|---|---|');
  for (const f of j.run) out.push(`| ${f.step} | ${f.fault} | ${f.target} | ${f.injected_at ?? '—'} | ${f.rolled_back_at ?? '—'} | ${f.status}${f.error ? `: ${f.error}` : ''} |`);
  // What each fault measured or reported (storm timings, rotated key ids, attestation results…).
  const outputs = j.run.filter((f) => f.output && Object.keys(f.output).length > 0);
  if (outputs.length) out.push('', ...outputs.map((f) => `- ${f.step}: ${outputLine(f.output!)}`));
  out.push('', '## Expected alerts', '');
  if (j.alerts.length === 0) out.push('none declared');
  else {
    out.push('| alert | within | rule `for` | fired | Prometheus after | Alertmanager after |', '|---|---|---|---|---|---|');
    for (const a of j.alerts) out.push(`| ${a.name} | ${a.within_seconds} s | ${a.for_seconds === undefined ? '—' : `${a.for_seconds} s`} | ${a.fired ? 'yes' : '**no**'} | ${s(a.prometheus_delay_seconds)} | ${a.checked_alertmanager ? s(a.alertmanager_delay_seconds) : 'not checked'} |`);
  }
  out.push('', '## Recovery', '', `- recovered: ${j.recovered ? 'yes' : '**no**'}; time to recovery (first injection → steady state again): ${s(j.time_to_recovery_seconds)}`);
  if (j.slo) out.push(`- error budget burned (probe success SLI, objective ${j.slo.objective}, 30-day budget): ${pct(j.slo.budget_burned_ratio)} (error ratio ${pct(j.slo.error_ratio)} over ${j.slo.window_seconds} s)`);
  if (j.halt) out.push(`- halted by '${j.halt.condition}' at ${j.halt.at}`);
  out.push('', '## Rollbacks', '');
  for (const r of j.rollbacks) out.push(`- ${r.step}: ${r.status} at ${r.at}${r.notes.length ? ` — ${r.notes.join('; ')}` : ''}${r.error ? ` — ${r.error}` : ''}`);
  if (j.rollbacks.length === 0) out.push('- none needed');
  out.push(`- faults left behind: ${j.leftovers.length ? j.leftovers.join(', ') : 'none'}`, '');
  return out.join('\n');
}

/** `key=value` pairs of a fault's output, scalars only (lists shown by their length). */
function outputLine(o: Record<string, unknown>): string {
  return Object.entries(o)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? `[${v.length}]` : v !== null && typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(', ');
}

function list(l: string[]): string {
  return l.length ? l.join(', ') : '—';
}

function cell(p: { tolerance_met: boolean; output: unknown; error?: string } | undefined): string {
  if (!p) return '—';
  const v = Array.isArray(p.output) ? (p.output as { value: number }[]).map((x) => (Number.isInteger(x.value) ? String(x.value) : x.value.toPrecision(3))).join(', ') || 'empty' : p.output && typeof p.output === 'object' ? `probe_success=${(p.output as { probe_success?: number }).probe_success}` : '';
  return `${p.tolerance_met ? 'ok' : '**miss**'} ${v}${p.error ? ` (${p.error})` : ''}`;
}
