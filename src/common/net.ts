import { SvidscopeError } from './errors/catalog.js';

/** Parses "host:port" (IPv6 in brackets) for listen and connect addresses in configs and flags. */
export function checkHostPort(value: string, key: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new SvidscopeError('config-invalid', `config: ${key}: "${value}" must be host:port`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}
