import { createServer } from 'node:net';
import { SvidscopeError } from './errors/catalog.js';

/** Parses "host:port" (IPv6 in brackets) for listen and connect addresses in configs and flags. */
export function checkHostPort(value: string, key: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new SvidscopeError('config-invalid', `config: ${key}: "${value}" must be host:port`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

/**
 * A loopback port to listen on: the preferred (documented) one when it is free, else any free one.
 * With SVIDSCOPE_UP_EPHEMERAL_PORTS=1 it always takes an OS-assigned port: several stacks starting
 * at once on one machine (the test suite) would otherwise race for the same preferred port.
 */
export async function pickPort(preferred: number): Promise<number> {
  if (process.env.SVIDSCOPE_UP_EPHEMERAL_PORTS === '1') preferred = 0;
  const tryPort = (port: number) => new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : port));
    });
  });
  return tryPort(preferred).catch(() => tryPort(0));
}
