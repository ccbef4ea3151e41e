import path from 'node:path';
import { ConfigReader } from '../../common/config/load.js';
import { checkHostPort } from '../../common/net.js';
import { LOG_LEVELS, type LogLevel } from '../../common/log.js';
import { parseTrustDomainBounded, type TrustDomain } from '../spiffe/id/index.js';
import { isKeyType, type KeyType } from '../spiffe/mint/index.js';
import { DEFAULT_JWT_AUDIENCE_LIMITS, type JwtAudienceLimits } from '../spiffe/jwtsvid/index.js';
import { readFederationConfig, type FederationConfig } from './federation/config.js';
import { DEFAULT_SIGNING_QUEUE_MAX_CSRS } from './api/admission.js';
import { DEFAULT_WATCH_MAX_STREAMS } from './api/change-notifier.js';
import { defaultSigningWorkers } from './ca/signing-pool.js';

/** The server's whole configuration; every field has a default documented in the README. */
export interface ServerConfig {
  trustDomain: TrustDomain;
  /** host:port of the agent-facing gRPC API (mTLS). */
  bind: string;
  dataDir: string;
  /** Unix socket of the admin API; owner-only. */
  adminSocket: string;
  /** host:port of the HTTP endpoints /live, /ready and /metrics; empty disables them. */
  healthBind: string;
  logLevel: LogLevel;
  datastore: { kind: 'sqlite'; path: string } | { kind: 'postgres'; connectionString: string; schema?: string };
  ca: {
    keyType: KeyType;
    jwtKeyType: KeyType;
    ttlSeconds: number;
    prepareFraction: number;
    activateFraction: number;
    checkIntervalSeconds: number;
    upstream?: { certFile: string; keyFile: string };
  };
  defaultX509SvidTtlSeconds: number;
  defaultJwtSvidTtlSeconds: number;
  agentTtlSeconds: number;
  /** How often the server reloads the bundle and entries from the datastore (several servers share one). */
  cacheReloadSeconds: number;
  /** How long an agent SVID replaced by a renewal stays accepted (`agent_renewal_grace`), seconds. */
  agentRenewalGraceSeconds: number;
  /** Limits on the audiences of one NewJWTSVID request (`jwt_audience_max_count`, `jwt_audience_max_bytes`). */
  jwtAudience: JwtAudienceLimits;
  /** CSRs admitted for signing and not signed yet, across calls (`signing_queue_max_csrs`); more are refused with server-overloaded. */
  signingQueueMaxCsrs: number;
  /** Worker threads that check CSRs and sign X.509-SVIDs (`signing_workers`; default one per core, 0 = on the main thread). */
  signingWorkers: number;
  /** How long entry and agent tombstones are kept for servers that lag behind the change feeds (`tombstone_retention`), seconds. */
  tombstoneRetentionSeconds: number;
  /** Least time between two agent-feed pulls caused by callers the agent view does not know (`agent_refresh_min_interval`), seconds. */
  agentRefreshMinIntervalSeconds: number;
  /** Change streams (WatchChanges) held open at once (`watch_max_streams`); more are refused and those agents poll. */
  watchMaxStreams: number;
  /** `spiffe_refresh_hint` published in the bundle, seconds. */
  bundleRefreshHintSeconds: number;
  /** Bundle endpoint and federation relationships (`federation` section); always set by buildServerConfig. */
  federation?: FederationConfig;
}

/** Flags that override the file (`server run --trust-domain …`). */
export interface ServerFlagOverrides {
  trustDomain?: string;
  dataDir?: string;
  bind?: string;
  adminSocket?: string;
  healthBind?: string;
  logLevel?: string;
}


const TRUST_DOMAIN_HINT = 'the trust domain this server issues for, e.g. example.org, or pass --trust-domain';

export function buildServerConfig(doc: Record<string, unknown>, flags: ServerFlagOverrides = {}): ServerConfig {
  const r = new ConfigReader(doc);
  // No default: a server that silently issued for example.org would mint identities nobody trusts.
  const trustDomain = r.parsed('trust_domain', flags.trustDomain ?? r.requiredString('trust_domain', TRUST_DOMAIN_HINT), parseTrustDomainBounded);
  const dataDir = path.resolve(flags.dataDir ?? r.string('data_dir', '.svidscope/server'));
  const bind = flags.bind ?? r.string('bind', '127.0.0.1:8081');
  checkHostPort(bind, 'bind');
  const adminSocket = path.resolve(flags.adminSocket ?? r.string('admin_socket', path.join(dataDir, 'admin.sock')));
  const healthBind = flags.healthBind ?? r.string('health_bind', '127.0.0.1:8080');
  if (healthBind !== '') checkHostPort(healthBind, 'health_bind');
  const logLevel = r.oneOf('log_level', LOG_LEVELS, 'info', flags.logLevel);

  const ds = r.section('datastore');
  const kind = ds.oneOf('kind', ['sqlite', 'postgres'] as const, 'sqlite');
  const datastore: ServerConfig['datastore'] =
    kind === 'sqlite'
      ? { kind, path: path.resolve(dataDir, ds.string('path', 'datastore.sqlite3')) }
      : { kind, connectionString: ds.optionalString('connection_string') ?? ds.fail('connection_string', 'is required when kind is postgres'), schema: ds.optionalString('schema') };
  ds.rejectUnknown();

  const ca = r.section('ca');
  const keyType = keyTypeOf(ca, 'key_type');
  const jwtKeyType = keyTypeOf(ca, 'jwt_key_type');
  const ttlSeconds = ca.duration('ttl', '24h');
  const prepareFraction = ca.number('prepare_fraction', 1 / 2, { min: 0.01, max: 0.99 });
  const activateFraction = ca.number('activate_fraction', 5 / 6, { min: 0.01, max: 0.99 });
  if (activateFraction <= prepareFraction) ca.fail('activate_fraction', 'must be greater than prepare_fraction, so the next key is published before it signs');
  const checkIntervalSeconds = ca.duration('check_interval', '10s');
  const up = ca.section('upstream');
  const certFile = up.optionalString('cert_file');
  const keyFile = up.optionalString('key_file');
  up.rejectUnknown();
  if ((certFile === undefined) !== (keyFile === undefined)) ca.fail('upstream', 'cert_file and key_file go together');
  ca.rejectUnknown();

  const defaultX509SvidTtlSeconds = r.duration('default_x509_svid_ttl', '1h');
  const defaultJwtSvidTtlSeconds = r.duration('default_jwt_svid_ttl', '5m');
  const agentTtlSeconds = r.duration('agent_ttl', String(defaultX509SvidTtlSeconds));
  const cacheReloadSeconds = r.duration('cache_reload_interval', '5s');
  const bundleRefreshHintSeconds = r.duration('bundle_refresh_hint', '5m');
  // Long enough to retry a renewal whose answer was lost, short enough that a stolen old SVID soon dies.
  const agentRenewalGraceSeconds = r.duration('agent_renewal_grace', '30s');
  const jwtAudience: JwtAudienceLimits = {
    maxCount: r.number('jwt_audience_max_count', DEFAULT_JWT_AUDIENCE_LIMITS.maxCount, { min: 1, max: 1024 }),
    maxBytes: r.number('jwt_audience_max_bytes', DEFAULT_JWT_AUDIENCE_LIMITS.maxBytes, { min: 1, max: 65536 }),
  };
  const tombstoneRetentionSeconds = r.duration('tombstone_retention', '24h');
  const agentRefreshMinIntervalSeconds = r.duration('agent_refresh_min_interval', '1s');
  const signingQueueMaxCsrs = r.number('signing_queue_max_csrs', DEFAULT_SIGNING_QUEUE_MAX_CSRS, { min: 1, max: 1_000_000 });
  const watchMaxStreams = r.number('watch_max_streams', DEFAULT_WATCH_MAX_STREAMS, { min: 0, max: 1_000_000 });
  const signingWorkers = r.number('signing_workers', defaultSigningWorkers(), { min: 0, max: 256 });
  if (!Number.isInteger(signingWorkers)) r.fail('signing_workers', 'must be a whole number');
  const federation = readFederationConfig(r.section('federation'));
  r.rejectUnknown();
  for (const [name, value] of [['default_x509_svid_ttl', defaultX509SvidTtlSeconds], ['default_jwt_svid_ttl', defaultJwtSvidTtlSeconds], ['agent_ttl', agentTtlSeconds], ['tombstone_retention', tombstoneRetentionSeconds]] as const) {
    if (value <= 0) r.fail(name, 'must be positive');
  }
  return {
    trustDomain, bind, dataDir, adminSocket, healthBind, logLevel, datastore,
    ca: { keyType, jwtKeyType, ttlSeconds, prepareFraction, activateFraction, checkIntervalSeconds,
      upstream: certFile && keyFile ? { certFile: path.resolve(certFile), keyFile: path.resolve(keyFile) } : undefined },
    defaultX509SvidTtlSeconds, defaultJwtSvidTtlSeconds, agentTtlSeconds, cacheReloadSeconds, bundleRefreshHintSeconds, federation,
    agentRenewalGraceSeconds, jwtAudience, signingQueueMaxCsrs, signingWorkers, tombstoneRetentionSeconds, agentRefreshMinIntervalSeconds, watchMaxStreams,
  };
}

function keyTypeOf(r: ConfigReader, key: string): KeyType {
  const v = r.string(key, 'ec-p256');
  if (!isKeyType(v)) r.fail(key, 'must be one of ec-p256, ec-p384, rsa-2048');
  return v;
}
