/**
 * Workload API endpoint addresses (SPIFFE Workload Endpoint §4, go-spiffe `TargetFromAddress`).
 *
 * The standard allows exactly two forms: `unix:///absolute/path` and `tcp://<IP>:<port>`. A bare
 * absolute path is accepted as well because that is what operators paste from an agent config
 * (`socket_path`). Every refusal is `config-invalid` with a message naming the broken rule, so a
 * misconfigured SPIFFE_ENDPOINT_SOCKET is diagnosed before any connection attempt.
 */
import { isIP } from 'node:net';
import path from 'node:path';
import { errorFactory } from '../../common/errors/catalog.js';

/** The environment variable clients fall back to when no address is configured. */
export const SPIFFE_ENDPOINT_SOCKET = 'SPIFFE_ENDPOINT_SOCKET';

export type WorkloadApiAddress =
  | { readonly kind: 'unix'; readonly path: string; readonly address: string; readonly grpcTarget: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly address: string; readonly grpcTarget: string };

const fail = errorFactory('workloadapi');

/** Parses an endpoint address; throws `config-invalid` naming the rule the address breaks. */
export function parseWorkloadApiAddress(input: string): WorkloadApiAddress {
  const text = input.trim();
  if (text === '') throw fail('config-invalid', 'workload endpoint socket address is empty');
  if (text.startsWith('/')) return unixAddress(text);
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text)?.[1]?.toLowerCase();
  if (scheme !== 'unix' && scheme !== 'tcp') {
    throw fail('config-invalid', `workload endpoint socket URI must have a "tcp" or "unix" scheme (got ${JSON.stringify(text)})`);
  }
  const rest = text.slice(scheme.length + 1);
  const kind = scheme === 'unix' ? 'unix socket' : 'tcp socket';
  // WHATWG URL drops an empty "?" or "#", Go's url.Parse keeps them: look at the raw text instead.
  if (!rest.startsWith('/')) throw fail('config-invalid', `workload endpoint ${kind} URI must not be opaque`);
  if (rest.includes('?')) throw fail('config-invalid', `workload endpoint ${kind} URI must not include query values`);
  if (rest.includes('#')) throw fail('config-invalid', `workload endpoint ${kind} URI must not include a fragment`);
  let url: URL;
  try {
    url = new URL(text);
  } catch (err) {
    throw fail('config-invalid', `workload endpoint ${kind} URI cannot be parsed`, err);
  }
  if (url.username !== '' || url.password !== '') throw fail('config-invalid', `workload endpoint ${kind} URI must not include user info`);
  return scheme === 'unix' ? unixFromUrl(url) : tcpFromUrl(url);
}

/**
 * The address to use: the explicit one when given, else `SPIFFE_ENDPOINT_SOCKET` from `env` (the
 * standard's mandatory fallback). The environment is passed in so that tests and embedders decide
 * what "the environment" is.
 */
export function resolveWorkloadApiAddress(explicit: string | undefined, env: Readonly<Record<string, string | undefined>>): WorkloadApiAddress {
  if (explicit !== undefined && explicit !== '') return parseWorkloadApiAddress(explicit);
  const fromEnv = env[SPIFFE_ENDPOINT_SOCKET];
  if (fromEnv === undefined || fromEnv === '') {
    throw fail('config-invalid', `workload endpoint socket address is not configured: pass an address or set ${SPIFFE_ENDPOINT_SOCKET}`);
  }
  try {
    return parseWorkloadApiAddress(fromEnv);
  } catch (err) {
    throw fail('config-invalid', `${SPIFFE_ENDPOINT_SOCKET}: ${(err as Error).message.replace(/^workloadapi: /, '')}`, err);
  }
}

function unixFromUrl(url: URL): WorkloadApiAddress {
  // The standard: no authority, an absolute path and nothing else.
  if (url.host !== '') throw fail('config-invalid', 'workload endpoint unix socket URI must not include an authority (use unix:///absolute/path)');
  if (url.pathname === '' || url.pathname === '/') throw fail('config-invalid', 'workload endpoint unix socket URI must include a path');
  let decoded: string;
  try {
    decoded = decodeURIComponent(url.pathname);
  } catch (err) {
    throw fail('config-invalid', 'workload endpoint unix socket URI path is not valid percent-encoding', err);
  }
  return unixAddress(decoded);
}

function unixAddress(socketPath: string): WorkloadApiAddress {
  if (!path.isAbsolute(socketPath)) throw fail('config-invalid', 'workload endpoint unix socket path must be absolute');
  if (socketPath.includes('\0')) throw fail('config-invalid', 'workload endpoint unix socket path must not contain NUL');
  const address = `unix://${socketPath}`;
  return { kind: 'unix', path: socketPath, address, grpcTarget: address };
}

function tcpFromUrl(url: URL): WorkloadApiAddress {
  if (url.hostname === '') throw fail('config-invalid', 'workload endpoint tcp socket URI must include a host');
  if (url.pathname !== '') throw fail('config-invalid', 'workload endpoint tcp socket URI must not include a path');
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const family = isIP(host);
  if (family === 0) throw fail('config-invalid', 'workload endpoint tcp socket URI host component must be an IP:port');
  if (url.port === '') throw fail('config-invalid', 'workload endpoint tcp socket URI host component must be an IP:port');
  const port = Number(url.port);
  const hostPort = family === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  // ipv4:/ipv6: targets skip grpc-js's DNS resolver: the host is already an address.
  return { kind: 'tcp', host, port, address: `tcp://${hostPort}`, grpcTarget: `ipv${family}:${hostPort}` };
}
