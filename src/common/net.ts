import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { SvidscopeError } from './errors/catalog.js';

/** Parses "host:port" (IPv6 in brackets) for listen and connect addresses in configs and flags. */
export function checkHostPort(value: string, key: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new SvidscopeError('config-invalid', `config: ${key}: "${value}" must be host:port`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

/** Ports this process has handed out, so two picks of one process never collide. */
const handedOut = new Set<number>();
/** Where a pick starts: below every usual service port of this stack and its tools. */
const PICK_LOW = 10_000;

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * A free loopback port for a server to bind a moment later, from below the kernel's ephemeral
 * range. A port from `listen(0)` comes from that range, which outgoing connections also draw their
 * source ports from: between the probe and the bind, any client on the machine could take it
 * (seen in the test suite: a server's EADDRINUSE). Below the range only another pick can collide,
 * which a random start, this process's own picks remembered and the bind probe make unlikely.
 */
export async function freeLoopbackPort(): Promise<number> {
  let ephemeralLow = 32_768;
  try {
    ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || ephemeralLow;
  } catch {
    // not Linux: the IANA dynamic range starts higher still
  }
  const high = Math.max(PICK_LOW + 1000, ephemeralLow - 1);
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = PICK_LOW + Math.floor(Math.random() * (high - PICK_LOW));
    if (handedOut.has(port) || !(await bindable(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new SvidscopeError('unavailable', `no free loopback port in ${PICK_LOW}..${high} after 200 tries`);
}

/**
 * A loopback port to listen on: the preferred (documented) one when it is free, else any free one.
 * With SVIDSCOPE_UP_EPHEMERAL_PORTS=1 it always takes a free one: several stacks starting at once
 * on one machine (the test suite) would otherwise race for the same preferred port.
 */
export async function pickPort(preferred: number): Promise<number> {
  if (process.env.SVIDSCOPE_UP_EPHEMERAL_PORTS !== '1' && await bindable(preferred)) return preferred;
  return freeLoopbackPort();
}
