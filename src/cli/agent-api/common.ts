/**
 * What every `agent api …` command shares (SPIRE `spire-agent api`): where the Workload API is,
 * how long to wait, one client per invocation that is always closed, and the small views the
 * readable and JSON outputs are built from, and the file layout of `fetch x509 --write`.
 */
import type { Command } from 'commander';
import type { X509Certificate } from 'node:crypto';
import path from 'node:path';
import { parseDurationSeconds } from '../../common/duration.js';
import { writeFileAtomic } from '../../common/fs/atomic.js';
import { x509BundleToPem, type SpiffeBundle } from '../../identity-plane/spiffe/bundle/index.js';
import { encodePem } from '../../identity-plane/spiffe/x509/index.js';
import {
  createWorkloadApiClient,
  parseWorkloadApiAddress,
  resolveWorkloadApiAddress,
  SPIFFE_ENDPOINT_SOCKET,
  type WorkloadApiAddress,
  type WorkloadApiClient,
  type X509Context,
} from '../../identity-plane/workload-api/index.js';

/** Where `svidscope agent run` puts its public Workload API socket by default (relative to the working directory). */
export const DEFAULT_AGENT_SOCKET = path.join('.svidscope', 'agent', 'public', 'api.sock');
/** SPIRE's default `-timeout` for `spire-agent api` commands. */
export const DEFAULT_TIMEOUT = '5s';

export type Env = Readonly<Record<string, string | undefined>>;

export interface ApiFlags {
  socketPath?: string;
  timeout: string;
  json?: boolean;
}

/** Adds the options every `agent api` command takes. */
export function apiOptions(cmd: Command): Command {
  return cmd
    .option('--socket-path <path>', `Workload API socket path or address (default: $${SPIFFE_ENDPOINT_SOCKET}, else ${DEFAULT_AGENT_SOCKET})`)
    .option('--timeout <duration>', 'how long to wait for the answer, e.g. 5s, 500ms', DEFAULT_TIMEOUT)
    .option('--json', 'print one JSON object');
}

/**
 * The flag is a path (relative ones resolved against the working directory, as SPIRE's
 * -socketPath) or a full `unix://` / `tcp://` address; without it the standard's
 * SPIFFE_ENDPOINT_SOCKET applies, and only then the svidscope default.
 */
export function agentApiAddress(flag: string | undefined, env: Env): WorkloadApiAddress {
  if (flag !== undefined && flag !== '') return parseWorkloadApiAddress(/^(unix|tcp):/i.test(flag) ? flag : path.resolve(flag));
  if (env[SPIFFE_ENDPOINT_SOCKET]) return resolveWorkloadApiAddress(undefined, env);
  return parseWorkloadApiAddress(path.resolve(DEFAULT_AGENT_SOCKET));
}

/** Runs `fn` with a client whose calls carry the --timeout deadline; the client is always closed. */
export async function withApiClient<T>(flags: ApiFlags, env: Env, fn: (client: WorkloadApiClient) => Promise<T>): Promise<T> {
  const deadlineMs = Math.round(parseDurationSeconds(flags.timeout, '--timeout') * 1000);
  const client = createWorkloadApiClient({ address: agentApiAddress(flags.socketPath, env), deadlineMs });
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

export function certificateView(cert: X509Certificate) {
  return { subject: cert.subject.replace(/\n/g, ', '), serial: cert.serialNumber, notBefore: new Date(cert.validFrom).toISOString(), notAfter: new Date(cert.validTo).toISOString() };
}

export function bundleView(bundle: SpiffeBundle) {
  return {
    trustDomain: bundle.trustDomain.name,
    x509Authorities: bundle.x509Authorities.map((a) => certificateView(a.cert)),
    jwtAuthorities: [...bundle.jwtAuthorities.keys()].map((keyId) => ({ keyId })),
  };
}

export const byTrustDomain = (a: { trustDomain: { name: string } }, b: { trustDomain: { name: string } }) => a.trustDomain.name.localeCompare(b.trustDomain.name);

/** `1 svid` / `2 svids`. */
export const count = (n: number, singular: string, plural = `${singular}s`) => `${n} ${n === 1 ? singular : plural}`;

// Certificates are public; the key is a credential and stays owner-only.
const PUBLIC_MODE = 0o644;
const SECRET_MODE = 0o600;

/**
 * SPIRE's layout (`spire-agent api fetch x509 -write`), so the same scripts and openssl calls work:
 * per SVID n its chain, its key, its own trust domain's bundle, and every other trust domain's
 * bundle as federated_bundle.n.m (m in trust-domain order, so names are stable). Returns the paths.
 */
export function writeX509Files(dir: string, ctx: X509Context): string[] {
  const written: string[] = [];
  const write = (name: string, data: string, mode: number) => {
    const file = path.join(dir, name);
    writeFileAtomic(file, data, mode);
    written.push(file);
  };
  const bundles = ctx.bundles.bundles().sort(byTrustDomain);
  ctx.svids.forEach((svid, n) => {
    write(`svid.${n}.pem`, svid.certificates.map((c) => encodePem('CERTIFICATE', c.raw)).join(''), PUBLIC_MODE);
    write(`svid.${n}.key`, svid.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, SECRET_MODE);
    const own = ctx.bundles.get(svid.id.trustDomain);
    if (own) write(`bundle.${n}.pem`, x509BundleToPem(own), PUBLIC_MODE);
    bundles
      .filter((b) => b.trustDomain.name !== svid.id.trustDomain.name)
      .forEach((b, m) => write(`federated_bundle.${n}.${m}.pem`, x509BundleToPem(b), PUBLIC_MODE));
  });
  return written;
}
