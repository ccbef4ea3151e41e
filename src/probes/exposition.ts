/**
 * The `/probe` answer: one probe's result, blackbox_exporter's family names first, then the
 * `probe_svid_*` families, in the format the scrape negotiated (text 0.0.4, the format promtool
 * 2.42 parses, unless OpenMetrics is asked for). Every family has HELP and TYPE; every failure
 * reason is listed (0 or 1), so a query on one reason never meets a missing series.
 */
import { endExposition, familyHeader, formatLabels, formatSampleValue, type ExpositionFormat } from '../common/telemetry/exposition.js';
import { FAILURE_REASONS } from './reasons.js';
import type { ProbeGauge, ProbeResult } from './result.js';

/** Groups gauges by family (a family may hold several label sets), keeping first-seen order. */
function families(gauges: readonly ProbeGauge[]): Map<string, ProbeGauge[]> {
  const out = new Map<string, ProbeGauge[]>();
  for (const g of gauges) {
    const list = out.get(g.name);
    if (list) list.push(g);
    else out.set(g.name, [g]);
  }
  return out;
}

export function probeGauges(result: ProbeResult): ProbeGauge[] {
  const g: ProbeGauge[] = [
    { name: 'probe_success', help: 'Displays whether or not the probe was a success.', value: result.success ? 1 : 0 },
    { name: 'probe_duration_seconds', help: 'Returns how long the probe took to complete in seconds.', value: result.durationSeconds },
    { name: 'probe_timeout_seconds', help: 'The timeout the probe ran with, in seconds.', value: result.timeoutSeconds },
  ];
  for (const [phase, seconds] of result.phases) {
    g.push({ name: 'probe_phase_duration_seconds', help: 'Duration of each phase of the probe, in seconds.', value: seconds, labels: { phase } });
  }
  for (const reason of FAILURE_REASONS) {
    g.push({ name: 'probe_svid_failure_reason', help: 'The bounded reason the probe failed: 1 for the reason, 0 for every other (all 0 on success).', value: result.reason === reason ? 1 : 0, labels: { reason } });
  }
  if (result.svidExpiry !== undefined) {
    g.push({ name: 'probe_svid_expiry_timestamp_seconds', help: 'Earliest expiry of the SVIDs the probe examined (Unix time).', value: result.svidExpiry });
    g.push({ name: 'probe_svid_ttl_remaining_ratio', help: 'Fraction of the SVID lifetime left when probed (the smallest among the SVIDs examined).', value: result.ttlRemainingRatio ?? 0 });
    if (result.svidLifetimeSeconds !== undefined) g.push({ name: 'probe_svid_lifetime_seconds', help: 'Whole lifetime (notAfter - notBefore, or exp - iat) of the SVID that expires first.', value: result.svidLifetimeSeconds });
  }
  return [...g, ...result.gauges];
}

export function renderProbeMetrics(result: ProbeResult, format: ExpositionFormat = 'text'): string {
  let out = '';
  for (const [name, list] of families(probeGauges(result))) {
    out += familyHeader(name, 'gauge', list[0].help, format);
    for (const g of list) out += `${name}${formatLabels(g.labels)} ${formatSampleValue(g.value)}\n`;
  }
  return endExposition(out, format);
}
