// The one duration grammar shared by config files, flags, experiments and the monitoring config.
import { describe, expect, it } from 'vitest';
import { formatDuration, parseDurationMs, parseDurationSeconds, tryParseDurationMs } from '../../src/common/duration.js';
import { ConfigReader } from '../../src/common/config/load.js';

describe('duration grammar', () => {
  it.each([
    ['500ms', 500], ['30s', 30_000], ['5m', 300_000], ['24h', 86_400_000], ['7d', 604_800_000], ['2w', 1_209_600_000],
    ['1h30m', 5_400_000], ['1m30s500ms', 90_500], ['1.5s', 1500], [' 10s ', 10_000], ['90', 90_000], ['0.25', 250], [45, 45_000], [0, 0],
  ] as const)('%j is %d ms', (text, ms) => {
    expect(tryParseDurationMs(text)).toBe(ms);
    expect(parseDurationMs(text, 'k')).toBe(ms);
    expect(parseDurationSeconds(text, 'k')).toBeCloseTo(ms / 1000, 9);
  });

  it.each(['', 'soon', '-5s', '5 s', '5x', 's', '1h-30m', '1e3s', '5sec'])('%j is refused', (text) => {
    expect(tryParseDurationMs(text)).toBeUndefined();
    expect(() => parseDurationSeconds(text, 'server.ca.ttl')).toThrow(/^server\.ca\.ttl: /);
  });

  it('refuses negative, infinite and non-numeric values, naming the key path', () => {
    for (const v of [-1, Number.NaN, Number.POSITIVE_INFINITY]) expect(() => parseDurationSeconds(v, 'sync_interval')).toThrow(`sync_interval: expected a duration such as 500ms, 30s, 1h30m or 7d (got ${String(v)})`);
    for (const v of [null, true, {}, []]) expect(tryParseDurationMs(v)).toBeUndefined();
    expect(() => parseDurationSeconds('soon', '--timeout')).toThrow('--timeout: expected a duration such as 500ms, 30s, 1h30m or 7d (got "soon")');
    expect(() => parseDurationSeconds(undefined, '--ttl')).toThrow(/^--ttl: expected a duration such as 500ms, 30s, 1h30m or 7d$/);
  });

  it('plain seconds stay exact (no millisecond round trip)', () => {
    expect(parseDurationSeconds(0.0123, 'k')).toBe(0.0123);
    expect(parseDurationSeconds('100ms', 'k')).toBe(0.1);
  });

  it('a config reader reads durations with the key path and a fallback in the same grammar', () => {
    const r = new ConfigReader({ ca: { ttl: '1h30m', bad: 'later' } });
    const ca = r.section('ca');
    expect(ca.duration('ttl', '24h')).toBe(5400);
    expect(ca.duration('check_interval', '10s')).toBe(10);
    expect(ca.duration('missing', 2.5)).toBe(2.5);
    expect(() => ca.duration('bad', '1s')).toThrow('config: ca.bad: expected a duration such as 500ms, 30s, 1h30m or 7d (got "later")');
  });

  it('formats seconds compactly', () => {
    expect(formatDuration(86400)).toBe('1d');
    expect(formatDuration(90)).toBe('1m30s');
    expect(formatDuration(0)).toBe('0s');
  });
});

describe('config reader: one-of with a flag override', () => {
  it('the flag wins, is checked like the file, and the file key still counts as read', () => {
    const r = new ConfigReader({ log_level: 'warn' });
    expect(r.oneOf('log_level', ['info', 'warn', 'debug'] as const, 'info', 'debug')).toBe('debug');
    expect(() => r.rejectUnknown()).not.toThrow();
    expect(() => r.oneOf('log_level', ['info', 'warn'] as const, 'info', 'loud')).toThrow('config: log_level: must be one of info, warn (got "loud")');
    expect(new ConfigReader({}).oneOf('log_level', ['info', 'warn'] as const, 'info')).toBe('info');
  });
});
