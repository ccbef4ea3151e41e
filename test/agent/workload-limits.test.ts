// The Workload API limits' pure parts: config keys and defaults, the total limit against the
// open-file limit, and refusal logging at most once per interval.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import type { Logger } from '../../src/common/log.js';
import { buildAgentConfig } from '../../src/identity-plane/agent/config.js';
import { effectiveMaxConnections, openFileLimit, RefusalLog, type RefusalReason } from '../../src/identity-plane/agent/peercred/limits.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'svidscope-wapi-limits-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('workload API limit config', () => {
  it('defaults: total from the open-file limit (unset), 256 per uid, 10 s to the first request', () => {
    expect(buildAgentConfig({ trust_domain: 'example.org' }).workloadApi).toEqual({ maxConnections: undefined, maxConnectionsPerUid: 256, firstRequestTimeoutMs: 10_000 });
  });

  it('reads the three keys, durations included', () => {
    expect(buildAgentConfig({ trust_domain: 'example.org', workload_api_max_connections: 64, workload_api_max_connections_per_uid: 8, workload_api_first_request_timeout: '1m' }).workloadApi)
      .toEqual({ maxConnections: 64, maxConnectionsPerUid: 8, firstRequestTimeoutMs: 60_000 });
  });

  it('rejects values that would disable a limit', () => {
    expect(() => buildAgentConfig({ trust_domain: 'example.org', workload_api_max_connections: 0 })).toThrow(/workload_api_max_connections/);
    expect(() => buildAgentConfig({ trust_domain: 'example.org', workload_api_max_connections_per_uid: 0 })).toThrow(/workload_api_max_connections_per_uid/);
    expect(() => buildAgentConfig({ trust_domain: 'example.org', workload_api_first_request_timeout: '10ms' })).toThrow(/workload_api_first_request_timeout/);
  });
});

describe('total connection limit against the open-file limit', () => {
  it('keeps the default where it fits and lowers it, with a warning, where it does not', () => {
    expect(effectiveMaxConnections(undefined, 1_048_576)).toEqual({ value: 1024 });
    expect(effectiveMaxConnections(undefined, undefined)).toEqual({ value: 1024 });
    const low = effectiveMaxConnections(undefined, 1024);
    expect(low.value).toBe(448); // (1024 - 128) / 2
    expect(low.warning).toMatch(/lowered from its default 1024 to 448/);
  });

  it('keeps an explicit value and warns when it cannot fit', () => {
    expect(effectiveMaxConnections(300, 1024)).toEqual({ value: 300 });
    const big = effectiveMaxConnections(5000, 1024);
    expect(big.value).toBe(5000);
    expect(big.warning).toMatch(/EMFILE/);
  });

  it('reads the soft open-file limit from a limits file', () => {
    const f = path.join(tmp, 'limits');
    writeFileSync(f, 'Limit                     Soft Limit           Hard Limit           Units\nMax open files            4096                 524288               files\n');
    expect(openFileLimit(f)).toBe(4096);
    writeFileSync(f, 'Max open files            unlimited            unlimited            files\n');
    expect(openFileLimit(f)).toBeUndefined();
    expect(openFileLimit(path.join(tmp, 'missing'))).toBeUndefined();
    expect(openFileLimit()).toBeGreaterThan(0);
  });
});

describe('refusal log', () => {
  const capture = () => {
    const lines: { obj: Record<string, unknown>; msg: string }[] = [];
    const log = { warn: (obj: Record<string, unknown>, msg: string) => lines.push({ obj, msg }) } as unknown as Logger;
    return { lines, log };
  };

  it('counts every refusal but logs each reason once at once and then once per interval, naming the top uids', () => {
    const clock = new FakeClock();
    const { lines, log } = capture();
    const counted: RefusalReason[] = [];
    const r = new RefusalLog(log, clock, (reason) => counted.push(reason), 10_000);
    for (let i = 0; i < 1000; i++) r.note('per_uid_limit', i < 900 ? 1001 : 1002 + (i % 10));
    r.note('emfile', 1001);
    expect(counted).toHaveLength(1001);
    expect(lines.map((l) => [l.obj.reason, l.obj.refused, l.obj.code])).toEqual([['per_uid_limit', 1, 'workload-api-connection-limit'], ['emfile', 1, 'workload-api-fd-exhausted']]);
    clock.advance(10_000);
    expect(lines).toHaveLength(3);
    expect(lines[2].obj).toMatchObject({ reason: 'per_uid_limit', refused: 999 });
    const byUid = lines[2].obj.byUid as Record<string, number>;
    expect(Object.keys(byUid)).toHaveLength(5);
    expect(byUid['1001']).toBe(899);
    // Quiet for an interval: the next refusal is logged at once again.
    clock.advance(20_000);
    r.note('first_request_timeout', 7);
    expect(lines).toHaveLength(4);
    r.close();
    expect(lines).toHaveLength(4);
  });
});
