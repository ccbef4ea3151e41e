// Ports for servers that bind a moment after the pick (test servers, `svidscope up`): never from the
// kernel's ephemeral range, where any outgoing connection could take the port in between.
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { freeLoopbackPort, pickPort } from '../../src/common/net.js';

const held: Server[] = [];
afterAll(() => held.forEach((s) => s.close()));
const hold = (port: number) => new Promise<void>((resolve, reject) => {
  const s = createServer();
  s.once('error', reject);
  s.listen(port, '127.0.0.1', () => resolve());
  held.push(s);
});

describe('freeLoopbackPort and pickPort (src/common/net.ts)', () => {
  it('hands out distinct, bindable ports below the ephemeral range', async () => {
    const ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    const ports = await Promise.all(Array.from({ length: 50 }, () => freeLoopbackPort()));
    expect(new Set(ports).size).toBe(50);
    for (const p of ports) {
      expect(p).toBeGreaterThanOrEqual(10_000);
      expect(p).toBeLessThan(ephemeralLow);
    }
    for (const p of ports.slice(0, 5)) await hold(p); // each one binds
  });

  it('takes the preferred port when it is free, another one when it is taken, and never it with SVIDSCOPE_UP_EPHEMERAL_PORTS', async () => {
    const ephemeral = process.env.SVIDSCOPE_UP_EPHEMERAL_PORTS; // set for the whole suite (vitest.config.ts)
    delete process.env.SVIDSCOPE_UP_EPHEMERAL_PORTS;
    try {
      const preferred = await freeLoopbackPort();
      expect(await pickPort(preferred)).toBe(preferred);
      process.env.SVIDSCOPE_UP_EPHEMERAL_PORTS = '1';
      expect(await pickPort(preferred)).not.toBe(preferred);
      delete process.env.SVIDSCOPE_UP_EPHEMERAL_PORTS;
      await hold(preferred);
      const other = await pickPort(preferred);
      expect(other).not.toBe(preferred);
      await hold(other);
    } finally {
      if (ephemeral === undefined) delete process.env.SVIDSCOPE_UP_EPHEMERAL_PORTS;
      else process.env.SVIDSCOPE_UP_EPHEMERAL_PORTS = ephemeral;
    }
  });
});
