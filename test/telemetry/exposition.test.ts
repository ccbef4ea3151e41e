// The exposition helper: Accept negotiation by Prometheus' rules, and registries rendered in the
// negotiated format with nothing carried from one scrape to the next; plus the strict OpenMetrics
// parser the process tests rely on, shown to reject what it must.
import { closeSync, openSync, readdirSync } from 'node:fs';
import { Counter, Gauge, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  escapeHelp,
  negotiateExposition,
  OPENMETRICS_EXPOSITION,
  renderExposition,
  TEXT_EXPOSITION,
} from '../../src/common/telemetry/exposition.js';
import { createRegistry, histogram, registerProcessMetrics } from '../../src/common/telemetry/registry.js';
import { DROPPED_DEFAULT_METRICS } from '../../src/common/telemetry/names.js';
import { promtoolCheck } from '../support/metrics.js';
import { ACCEPT, openMetricsProblems } from '../support/openmetrics.js';

describe('negotiateExposition', () => {
  const OM_0_0_1 = 'application/openmetrics-text; version=0.0.1; charset=utf-8';
  it.each([
    ['no header', undefined, TEXT_EXPOSITION.contentType],
    ['empty header', '', TEXT_EXPOSITION.contentType],
    ['text/plain', 'text/plain', TEXT_EXPOSITION.contentType],
    ['text/plain version 0.0.4', 'text/plain; version=0.0.4', TEXT_EXPOSITION.contentType],
    ['curl default', '*/*', TEXT_EXPOSITION.contentType],
    ['openmetrics without version', 'application/openmetrics-text', OPENMETRICS_EXPOSITION.contentType],
    ['openmetrics 1.0.0', 'application/openmetrics-text; version=1.0.0', OPENMETRICS_EXPOSITION.contentType],
    ['openmetrics 0.0.1 only', 'application/openmetrics-text;version=0.0.1', OM_0_0_1],
    ['openmetrics of an unknown version', 'application/openmetrics-text; version=2.0.0', TEXT_EXPOSITION.contentType],
    ['Prometheus 2.42 scrape header', ACCEPT.openmetrics, OPENMETRICS_EXPOSITION.contentType],
    ['text weighted above openmetrics', 'application/openmetrics-text;q=0.5,text/plain;q=0.9', TEXT_EXPOSITION.contentType],
    ['openmetrics weighted above text', 'text/plain;q=0.4, application/openmetrics-text;version=1.0.0;q=0.8', OPENMETRICS_EXPOSITION.contentType],
    ['0.0.1 weighted above 1.0.0', 'application/openmetrics-text;version=1.0.0;q=0.2,application/openmetrics-text;version=0.0.1', OM_0_0_1],
    ['openmetrics refused with q=0', 'application/openmetrics-text;q=0, text/plain;q=0.1', TEXT_EXPOSITION.contentType],
    ['text of another version', 'text/plain;version=1.0.0', TEXT_EXPOSITION.contentType],
    ['case-insensitive media type', 'Application/OpenMetrics-Text; Version=1.0.0', OPENMETRICS_EXPOSITION.contentType],
    ['quoted version', 'application/openmetrics-text; version="1.0.0"', OPENMETRICS_EXPOSITION.contentType],
    ['protobuf only', 'application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited', TEXT_EXPOSITION.contentType],
    ['garbage', ';;;,,, =/= garbage', TEXT_EXPOSITION.contentType],
    ['garbage weight', 'application/openmetrics-text;q=high', TEXT_EXPOSITION.contentType],
    ['weight above 1', 'application/openmetrics-text;q=2', TEXT_EXPOSITION.contentType],
    ['substring is not a media type', 'application/openmetrics-text-like', TEXT_EXPOSITION.contentType],
  ])('%s', (_name, accept, contentType) => {
    expect(negotiateExposition(accept).contentType).toBe(contentType);
  });

  it('answers text when the endpoint only offers text', () => {
    expect(negotiateExposition(ACCEPT.openmetrics, { openMetrics: false })).toEqual(TEXT_EXPOSITION);
  });
});

/** A registry like a process's: process metrics, a counter, a gauge, an exemplar histogram with one trace id. */
function sampleRegistry(): Registry {
  const registry = createRegistry();
  registerProcessMetrics(registry);
  const c = new Counter({ name: 'svidscope_test_events_total', help: 'Events, by "kind" (quoted in the help).', labelNames: ['kind'], registers: [registry] });
  c.inc({ kind: 'a\\b"c\nd' }, 2);
  new Gauge({ name: 'svidscope_test_level', help: 'A level.', registers: [registry] }).set(-1.5);
  const h = histogram(registry, { name: 'svidscope_test_duration_seconds', help: 'Durations.', labels: ['method'], buckets: [0.01, 0.1, 1] } as never);
  h.observe({ method: 'Fetch' }, 0.05, '0af7651916cd43dd8448eb211c80319c');
  h.observe({ method: 'Fetch' }, 3);
  return registry;
}

describe('renderExposition', () => {
  it('renders each scrape in its own format: text is the same before and after an OpenMetrics scrape', async () => {
    const registry = sampleRegistry();
    const text = (r: Registry) => renderExposition(r, TEXT_EXPOSITION);
    const om = (r: Registry) => renderExposition(r, OPENMETRICS_EXPOSITION);
    // Process metrics move between scrapes; compare the families that do not.
    const stable = (s: string) => s.split('\n').filter((l) => l.includes('svidscope_test_')).join('\n');

    const om1 = await om(registry);
    const text1 = await text(registry);
    const om2 = await om(registry);
    const text2 = await text(registry);
    expect(stable(text2)).toBe(stable(text1));
    expect(stable(om2)).toBe(stable(om1));
    expect(openMetricsProblems(om1)).toEqual([]);
    expect(openMetricsProblems(om2)).toEqual([]);
    expect(await promtoolCheck(text1)).toBe('');
    expect(await promtoolCheck(text2)).toBe('');

    // Text: counters declared and sampled with _total; no exemplars, no EOF.
    expect(text1).toMatch(/^# TYPE svidscope_test_events_total counter$/m);
    expect(text1).toMatch(/^svidscope_test_events_total\{kind="a\\\\b\\"c\\nd"\} 2$/m);
    expect(text1).toMatch(/^# TYPE process_cpu_user_seconds_total counter$/m);
    expect(text1).not.toContain('# {');
    expect(text1).not.toContain('# EOF');
    // OpenMetrics: the family without _total, its samples with it; the exemplar on its bucket; EOF last.
    expect(om1).toMatch(/^# TYPE svidscope_test_events counter$/m);
    expect(om1).toMatch(/^svidscope_test_events_total\{kind="a\\\\b\\"c\\nd"\} 2$/m);
    expect(om1).toMatch(/^# HELP svidscope_test_events Events, by \\"kind\\" \(quoted in the help\)\.$/m);
    expect(om1).toMatch(/^# TYPE process_cpu_user_seconds counter$/m);
    expect(om1).toMatch(/^svidscope_test_duration_seconds_bucket\{le="0\.1",method="Fetch"\} 1 # \{trace_id="0af7651916cd43dd8448eb211c80319c"\} 0\.05 \d+(\.\d+)?$/m);
    expect(om1.endsWith('\n# EOF\n')).toBe(true);
    // The registry was never switched nor its counters renamed.
    expect(registry.contentType).toBe(OPENMETRICS_EXPOSITION.contentType);
    expect((await registry.getMetricsAsJSON()).map((m) => m.name)).toContain('svidscope_test_events_total');
  });

  it('merges registries, and refuses a family registered in two of them', async () => {
    const a = new Registry();
    const b = new Registry();
    new Gauge({ name: 'svidscope_test_a', help: 'A.', registers: [a] }).set(1);
    new Counter({ name: 'svidscope_test_b_total', help: 'B.', registers: [b] }).inc();
    const both = await renderExposition([a, b], OPENMETRICS_EXPOSITION);
    expect(both).toBe('# HELP svidscope_test_a A.\n# TYPE svidscope_test_a gauge\nsvidscope_test_a 1\n# HELP svidscope_test_b B.\n# TYPE svidscope_test_b counter\nsvidscope_test_b_total 1\n# EOF\n');
    new Gauge({ name: 'svidscope_test_a', help: 'A again.', registers: [b] });
    await expect(renderExposition([a, b], TEXT_EXPOSITION)).rejects.toThrow(/svidscope_test_a is registered twice/);
  });

  it('renders an empty registry as an empty text body and a bare # EOF', async () => {
    expect(await renderExposition(new Registry(), TEXT_EXPOSITION)).toBe('');
    expect(await renderExposition(new Registry(), OPENMETRICS_EXPOSITION)).toBe('# EOF\n');
    expect(openMetricsProblems('# EOF\n')).toEqual([]);
  });

  it('escapes a double quote in HELP for OpenMetrics only', () => {
    expect(escapeHelp('say "hi"\\\n', 'openmetrics')).toBe('say \\"hi\\"\\\\\\n');
    expect(escapeHelp('say "hi"\\\n', 'text')).toBe('say "hi"\\\\\\n');
  });
});

describe('openMetricsProblems (the strict parser the process tests use)', () => {
  const valid = [
    '# TYPE foo counter', '# HELP foo Foo with \\" escaping.', 'foo_total{a="x"} 17 # {trace_id="abc"} 1 1520879607.789', 'foo_created{a="x"} 1520430000.123',
    '# TYPE bar_seconds histogram', '# UNIT bar_seconds seconds', 'bar_seconds_bucket{le="0.1"} 8 # {} 0.054', 'bar_seconds_bucket{le="1.0"} 11', 'bar_seconds_bucket{le="+Inf"} 17', 'bar_seconds_count 17', 'bar_seconds_sum 324.5',
    '# TYPE baz gauge', 'baz NaN', 'baz{x="1"} -Inf',
    '# EOF', '',
  ].join('\n');

  it('accepts the specification\'s forms', () => {
    expect(openMetricsProblems(valid)).toEqual([]);
  });

  it.each([
    ['a counter family named with _total', valid.replace('# TYPE foo counter', '# TYPE foo_total counter').replace('# HELP foo ', '# HELP foo_total '), /counter family named with _total/],
    ['a counter sample without _total', valid.replace('foo_total{a="x"} 17', 'foo{a="x"} 17'), /appears twice|does not belong/],
    ['no # EOF', valid.replace('# EOF\n', ''), /not # EOF/],
    ['something after # EOF', `${valid}baz 1\n`, /not # EOF/],
    ['a blank line between families (text style)', valid.replace('# TYPE baz gauge', '\n# TYPE baz gauge'), /empty line/],
    ['an exemplar on a gauge', valid.replace('baz NaN', 'baz 1 # {trace_id="x"} 1'), /exemplar on a sample that cannot have one/],
    ['an exemplar on a histogram count', valid.replace('bar_seconds_count 17', 'bar_seconds_count 17 # {a="b"} 1'), /cannot have one/],
    ['an exemplar label set over 128 characters', valid.replace('{trace_id="abc"}', `{trace_id="${'a'.repeat(130)}"}`), /at most 128/],
    ['an exemplar above its bucket', valid.replace('# {} 0.054', '# {} 0.5'), /above its bucket/],
    ['a bare quote in HELP', valid.replace('Foo with \\" escaping', 'Foo with " escaping'), /escaped string/],
    ['buckets that are not cumulative', valid.replace('bar_seconds_bucket{le="1.0"} 11', 'bar_seconds_bucket{le="1.0"} 5'), /not cumulative/],
    ['no +Inf bucket', valid.replace('bar_seconds_bucket{le="+Inf"} 17\n', ''), /no \+Inf bucket/],
    ['a count that is not the +Inf bucket', valid.replace('bar_seconds_count 17', 'bar_seconds_count 16'), /differs from the \+Inf bucket/],
    ['a sum without a count', valid.replace('bar_seconds_count 17\n', ''), /without/],
    ['a negative sum', valid.replace('bar_seconds_sum 324.5', 'bar_seconds_sum -1'), /negative sum/],
    ['interleaved families', valid.replace('# EOF', 'foo_total{a="y"} 1\n# EOF'), /must not be interleaved/],
    ['a family declared twice', valid.replace('# EOF', '# TYPE foo counter\n# EOF'), /appears twice/],
    ['a sample twice', valid.replace('baz{x="1"} -Inf', 'baz NaN'), /twice/],
    ['a UNIT that is not the suffix', valid.replace('# UNIT bar_seconds seconds', '# UNIT bar_seconds bytes'), /not the suffix/],
    ['a text-format exemplar-free timestamp in ms is still a number, but a bad value is not', valid.replace('baz NaN', 'baz one'), /bad value/],
    ['an unquoted label value', valid.replace('baz{x="1"}', 'baz{x=1}'), /not quoted/],
    ['a carriage return', valid.replace('baz NaN\n', 'baz NaN\r\n'), /carriage return/],
  ])('rejects %s', (_name, body, problem) => {
    expect(openMetricsProblems(body).join('\n')).toMatch(problem);
  });
});

describe('registerProcessMetrics', () => {
  it('serves process_open_fds as the count of open descriptors, and nothing that lists every handle per scrape', async () => {
    const registry = createRegistry();
    registerProcessMetrics(registry);
    const fdsNow = () => readdirSync('/proc/self/fd').length - 1; // less the listing's own descriptor
    const opened = Array.from({ length: 50 }, () => openSync('/dev/null', 'r'));
    try {
      const before = fdsNow();
      const served = Number(/^process_open_fds (\d+)$/m.exec(await registry.metrics())?.[1]);
      const after = fdsNow();
      expect(served).toBeGreaterThanOrEqual(Math.min(before, after) - 1);
      expect(served).toBeLessThanOrEqual(Math.max(before, after) + 1);
      expect(served).toBeGreaterThanOrEqual(50);
    } finally {
      for (const fd of opened) closeSync(fd);
    }
    const names = (await registry.getMetricsAsJSON()).map((m) => m.name);
    for (const dropped of DROPPED_DEFAULT_METRICS) expect(names).not.toContain(dropped);
    expect(names).toEqual(expect.arrayContaining(['process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'process_open_fds']));
  });
});
