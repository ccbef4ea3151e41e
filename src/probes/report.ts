/** The readable form of a probe result: a verdict line, one line per check, the phase timings. */
import type { ProbeResult } from './result.js';

const ms = (seconds: number) => `${(seconds * 1000).toFixed(1)} ms`;

export function formatReport(r: ProbeResult): string[] {
  const verdict = r.success ? 'SUCCESS' : `FAILURE (${r.reason})`;
  const lines = [`probe ${r.module}${r.module === r.kind ? '' : ` (${r.kind})`} ${r.target}: ${verdict} in ${ms(r.durationSeconds)}`];
  const width = Math.max(10, ...r.checks.map((c) => c.name.length));
  for (const c of r.checks) lines.push(`  ${c.ok ? 'pass' : 'FAIL'}  ${c.name.padEnd(width)}  ${c.detail}`);
  if (r.phases.length > 0) lines.push(`  phases: ${r.phases.map(([p, s]) => `${p} ${ms(s)}`).join(', ')}`);
  if (r.svidExpiry !== undefined) {
    lines.push(`  svid:   expires ${new Date(r.svidExpiry * 1000).toISOString()}, ${((r.ttlRemainingRatio ?? 0) * 100).toFixed(0)} % of its lifetime left`);
  }
  if (!r.success && r.message && !r.checks.some((c) => !c.ok && c.detail === r.message)) lines.push(`  reason: ${r.message}`);
  return lines;
}

/** bigint (bundle sequence numbers) as a number when exact, else as a string. */
function jsonSafe(facts: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(facts).map(([k, v]) => [k, typeof v === 'bigint' ? (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString()) : v]));
}

/** The JSON form (`--json`, `/probe?format=json`): everything but the gauges' help texts. */
export function reportJson(r: ProbeResult): Record<string, unknown> {
  return {
    module: r.module, kind: r.kind, target: r.target, success: r.success, reason: r.reason ?? null, message: r.message ?? null, limit: r.limit ?? null,
    startedAt: r.startedAt.toISOString(), durationSeconds: r.durationSeconds, timeoutSeconds: r.timeoutSeconds,
    phases: Object.fromEntries(r.phases), checks: r.checks, facts: jsonSafe(r.facts),
    svidExpiry: r.svidExpiry !== undefined ? new Date(r.svidExpiry * 1000).toISOString() : null, ttlRemainingRatio: r.ttlRemainingRatio ?? null,
  };
}
