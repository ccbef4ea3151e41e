import path from 'node:path';
import { ConfigReader } from '../../common/config/load.js';
import { LOG_LEVELS, type LogLevel } from '../../common/log.js';
import { parseTrustDomainBounded, type TrustDomain } from '../spiffe/id/index.js';
import { isKeyType, type KeyType } from '../spiffe/mint/index.js';
import { DEFAULT_JWT_AUDIENCE_LIMITS, type JwtAudienceLimits } from '../spiffe/jwtsvid/index.js';
import { DEFAULT_FIRST_REQUEST_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_UID } from './peercred/limits.js';

/** The agent's whole configuration; every field has a default documented in the README. */
export interface AgentConfig {
  trustDomain: TrustDomain;
  /** host:port of the server's agent API: the first of `serverAddresses`. */
  serverAddress: string;
  /**
   * Every server of the trust domain (servers sharing one datastore), in order of preference. The
   * agent talks to one at a time and moves to the next when its server is unreachable, keeping its
   * SVID (all servers trust it) rather than re-attesting.
   */
  serverAddresses: string[];
  dataDir: string;
  /** The Workload API socket. */
  socketPath: string;
  /** File mode of the Workload API socket (any local process may call; the kernel says who it is). */
  socketMode: number;
  /** A one-time join token, or a file holding one (read at each attestation, so a new token can be dropped in). */
  joinToken?: string;
  joinTokenFile?: string;
  /** PEM file of the server's trust anchors for the first connection; else `insecureBootstrap`. */
  trustBundlePath?: string;
  insecureBootstrap: boolean;
  syncIntervalSeconds: number;
  /** Keep a change stream (WatchChanges) open so the server pushes changes (`push`, default true); polling stays the fallback. */
  push?: boolean;
  /**
   * The poll interval while the change stream is up (`push_sync_interval`, default 30 s, never
   * shorter than sync_interval): the poll is then only the consistency check, and the next SVID or
   * agent SVID renewal brings it forward.
   */
  pushSyncIntervalSeconds?: number;
  /** Rotate an X509-SVID once this fraction of its lifetime has passed (SPIRE: 0.5). */
  rotationFraction: number;
  workloadKeyType: KeyType;
  discoverWorkloadPath: boolean;
  /** Largest binary hashed for unix:sha256, bytes; 0 = no limit, negative = never hash. */
  workloadSizeLimit: number;
  healthBind: string;
  logLevel: LogLevel;
  /** Limits on the audiences of one FetchJWTSVID request (`jwt_audience_max_count`, `jwt_audience_max_bytes`). */
  jwtAudience: JwtAudienceLimits;
  /** Byte bound of the JWT-SVID cache (`jwt_cache_max_bytes`). */
  jwtCacheMaxBytes: number;
  /**
   * The bound on cached X509-SVIDs (`x509_svid_cache_max_size`, 0 = none) and how long an SVID a
   * workload asked for counts as recently used (`x509_svid_cache_idle`); see SvidCachePolicy.
   */
  x509SvidCache: { maxSize: number; idleMs: number };
  /**
   * Workload API connection limits: `workload_api_max_connections` (undefined = the default,
   * lowered to fit the open-file limit), `workload_api_max_connections_per_uid`,
   * `workload_api_first_request_timeout`.
   */
  workloadApi: { maxConnections?: number; maxConnectionsPerUid: number; firstRequestTimeoutMs: number };
}

export interface AgentFlagOverrides {
  trustDomain?: string;
  serverAddress?: string;
  dataDir?: string;
  socketPath?: string;
  joinToken?: string;
  joinTokenFile?: string;
  trustBundle?: string;
  insecureBootstrap?: boolean;
  healthBind?: string;
  logLevel?: string;
}


const TRUST_DOMAIN_HINT = 'the trust domain of this agent\'s server, e.g. example.org, or pass --trust-domain';

export function buildAgentConfig(doc: Record<string, unknown>, flags: AgentFlagOverrides = {}): AgentConfig {
  const r = new ConfigReader(doc);
  // No default: an agent of the wrong trust domain would be refused by its server only after start.
  const trustDomain = r.parsed('trust_domain', flags.trustDomain ?? r.requiredString('trust_domain', TRUST_DOMAIN_HINT), parseTrustDomainBounded);
  const dataDir = path.resolve(flags.dataDir ?? r.string('data_dir', '.svidscope/agent'));
  const serverAddresses = parseServerAddresses(flags.serverAddress ?? r.raw('server_address').value ?? '127.0.0.1:8081', (reason) => r.fail('server_address', reason));
  const serverAddress = serverAddresses[0];
  const socketPath = path.resolve(flags.socketPath ?? r.string('socket_path', path.join(dataDir, 'public', 'api.sock')));
  const modeText = r.string('socket_mode', '0777');
  if (!/^0?[0-7]{3}$/.test(modeText)) r.fail('socket_mode', 'must be an octal file mode such as 0777 or 0770');
  const joinToken = flags.joinToken ?? r.optionalString('join_token');
  const joinTokenFile = flags.joinTokenFile ?? r.optionalString('join_token_file');
  const trustBundlePath = flags.trustBundle ?? r.optionalString('trust_bundle_path');
  const insecureBootstrap = flags.insecureBootstrap ?? r.boolean('insecure_bootstrap', false);
  const syncIntervalSeconds = r.duration('sync_interval', '5s');
  const rotationFraction = r.number('rotation_fraction', 0.5, { min: 0.05, max: 0.95 });
  const keyTypeText = r.string('workload_x509_svid_key_type', 'ec-p256');
  const keyType: KeyType = isKeyType(keyTypeText) ? keyTypeText : r.fail('workload_x509_svid_key_type', 'must be one of ec-p256, ec-p384, rsa-2048');
  const discoverWorkloadPath = r.boolean('discover_workload_path', false);
  const workloadSizeLimit = r.number('workload_size_limit', 0);
  const healthBind = flags.healthBind ?? r.string('health_bind', '127.0.0.1:8088');
  const logLevel = r.oneOf('log_level', LOG_LEVELS, 'info', flags.logLevel);
  const jwtAudience: JwtAudienceLimits = {
    maxCount: r.number('jwt_audience_max_count', DEFAULT_JWT_AUDIENCE_LIMITS.maxCount, { min: 1, max: 1024 }),
    maxBytes: r.number('jwt_audience_max_bytes', DEFAULT_JWT_AUDIENCE_LIMITS.maxBytes, { min: 1, max: 65536 }),
  };
  // 4 MiB holds thousands of ordinary tokens (about 1 KiB each) and caps what callers can pin.
  const jwtCacheMaxBytes = r.number('jwt_cache_max_bytes', 4 * 1024 * 1024, { min: 0 });
  const push = r.boolean('push', true);
  // Pushed changes arrive at once; polling every 5 s besides is what made 10,000 agents a full core of syncs.
  const pushSyncIntervalSeconds = r.duration('push_sync_interval', '30s');
  // SPIRE's default bound; SVIDs past it are minted when a workload asks.
  const x509SvidCache = {
    maxSize: r.number('x509_svid_cache_max_size', 1000, { min: 0, max: 10_000_000 }),
    idleMs: r.duration('x509_svid_cache_idle', '10m') * 1000,
  };
  const maxConnectionsRaw = r.raw('workload_api_max_connections').value;
  const workloadApi = {
    maxConnections: maxConnectionsRaw === undefined || maxConnectionsRaw === null ? undefined : r.number('workload_api_max_connections', DEFAULT_MAX_CONNECTIONS, { min: 1, max: 1_000_000 }),
    maxConnectionsPerUid: r.number('workload_api_max_connections_per_uid', DEFAULT_MAX_CONNECTIONS_PER_UID, { min: 1, max: 1_000_000 }),
    firstRequestTimeoutMs: r.duration('workload_api_first_request_timeout', DEFAULT_FIRST_REQUEST_TIMEOUT_MS / 1000) * 1000,
  };
  r.rejectUnknown();
  if (workloadApi.firstRequestTimeoutMs < 100) r.fail('workload_api_first_request_timeout', 'must be at least 100ms');
  if (syncIntervalSeconds <= 0) r.fail('sync_interval', 'must be positive');
  if (pushSyncIntervalSeconds <= 0) r.fail('push_sync_interval', 'must be positive');
  return {
    trustDomain, serverAddress, serverAddresses, dataDir, socketPath, socketMode: parseInt(modeText, 8), joinToken, joinTokenFile,
    trustBundlePath: trustBundlePath ? path.resolve(trustBundlePath) : undefined, insecureBootstrap, syncIntervalSeconds,
    rotationFraction, workloadKeyType: keyType, discoverWorkloadPath, workloadSizeLimit, healthBind, logLevel,
    jwtAudience, jwtCacheMaxBytes, x509SvidCache, workloadApi, push,
    pushSyncIntervalSeconds: Math.max(pushSyncIntervalSeconds, syncIntervalSeconds),
  };
}

/** At most this many servers per agent: a fallback list, not a fleet directory. */
const MAX_SERVER_ADDRESSES = 16;

/**
 * `server_address`: one `host:port`, a comma-separated list (what `--server-address` takes), or a
 * YAML list. Duplicates are dropped; order is preference.
 */
export function parseServerAddresses(value: unknown, fail: (reason: string) => never): string[] {
  const items = typeof value === 'string' ? value.split(',') : Array.isArray(value) ? value : fail('must be host:port, a comma-separated list of them, or a YAML list');
  const addresses: string[] = [];
  for (const item of items) {
    if (typeof item !== 'string') fail(`every address must be a string (got ${JSON.stringify(item)})`);
    const address = item.trim();
    // gRPC target URIs (dns:///name:port, unix:/path) pass through; anything else must be host:port.
    const isTargetUri = /^(dns|unix|unix-abstract|ipv4|ipv6):\S+$/.test(address);
    const isHostPort = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(address) && Number(address.slice(address.lastIndexOf(':') + 1)) <= 65535;
    if (!isTargetUri && !isHostPort) fail(`${JSON.stringify(address)} is not host:port (or a gRPC target such as dns:///server.example:8081)`);
    if (!addresses.includes(address)) addresses.push(address);
  }
  if (addresses.length === 0) fail('names no server');
  if (addresses.length > MAX_SERVER_ADDRESSES) fail(`names ${addresses.length} servers; at most ${MAX_SERVER_ADDRESSES}`);
  return addresses;
}
