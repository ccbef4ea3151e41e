/**
 * The exporter's one typed config, read from YAML (`svidscope exporter run --config`) with flags
 * on top, validated in full before anything starts. Every key and default is in docs/exporter.md.
 */
import { ConfigReader } from '../common/config/load.js';
import { shown } from '../common/config/shown.js';
import { SvidscopeError } from '../common/errors/catalog.js';
import { checkHostPort } from '../common/net.js';
import { LOG_LEVELS, type LogLevel } from '../common/log.js';
import { parseTrustDomainBounded, type TrustDomain } from '../identity-plane/spiffe/id/index.js';

export const SOURCE_TYPES = ['workload_api', 'files', 'bundle_endpoint', 'server_admin'] as const;
export type SourceType = (typeof SOURCE_TYPES)[number];

interface SourceBase {
  /** The `source` label value: a name, never a path. */
  readonly name: string;
  /** Poll interval, seconds (polled sources). */
  readonly intervalSeconds: number;
}

export interface WorkloadApiSourceConfig extends SourceBase {
  readonly type: 'workload_api';
  /** `unix:///path`, `tcp://IP:port` or an absolute socket path. */
  readonly address: string;
  /** Also watch FetchJWTBundles (JWT authorities, and a finer bundle match for propagation). */
  readonly jwtBundles: boolean;
}

export interface FilesSourceConfig extends SourceBase {
  readonly type: 'files';
  /** Files or directories (read recursively) holding PEM/DER certificates, SPIFFE bundles or JWKS. */
  readonly paths: readonly string[];
  /** The trust domain of bundles that do not name one (PEM CAs without a SPIFFE URI, plain JWKS). */
  readonly trustDomain?: TrustDomain;
  readonly maxFiles: number;
}

export interface BundleEndpointSourceConfig extends SourceBase {
  readonly type: 'bundle_endpoint';
  readonly url: string;
  readonly trustDomain: TrustDomain;
  readonly profile: 'https_web' | 'https_spiffe';
  /** https_spiffe: the SPIFFE ID the endpoint's server certificate must carry. */
  readonly endpointSpiffeId?: string;
  /** https_spiffe: bootstrap bundle of the endpoint's trust domain (PEM, DER or SPIFFE JSON). */
  readonly bundleFile?: string;
  /** https_web: extra PEM roots besides the system's (a private CA). */
  readonly caFile?: string;
  readonly timeoutSeconds: number;
}

export interface ServerAdminSourceConfig extends SourceBase {
  readonly type: 'server_admin';
  readonly socket: string;
  /** Read entries and agents for registration coverage (ListEntries can be large). */
  readonly coverage: boolean;
}

export type SourceConfig = WorkloadApiSourceConfig | FilesSourceConfig | BundleEndpointSourceConfig | ServerAdminSourceConfig;

export interface ExporterConfig {
  /** host:port of /metrics, /healthz, /ready; port 0 picks a free one. */
  readonly listen: string;
  readonly logLevel: LogLevel;
  /** Time budget of one scrape, seconds (lowered further by Prometheus' scrape-timeout header). */
  readonly scrapeTimeoutSeconds: number;
  /** Cap on the series of the observation families per scrape. */
  readonly maxSeries: number;
  /** Opt-in: one expiry series per observed X509-SVID, with spiffe_id and serial labels. */
  readonly perSvidSeries: boolean;
  readonly perSvidMaxSeries: number;
  /** Per trust domain, at most this many authority_key_id values in the per-authority families (the rest fold into "other"). */
  readonly authorityMaxSeries: number;
  /** Sources whose bundle sequence is the reference for propagation lag, in order of preference. */
  readonly propagationReferences: readonly string[];
  readonly sources: readonly SourceConfig[];
}

export interface ExporterFlags {
  listen?: string;
  logLevel?: string;
  source?: string[];
  perSvidSeries?: boolean;
}

export const DEFAULT_LISTEN = '127.0.0.1:9190';
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** The `trust_domain` key, parsed once here: sources build every bundle with the typed value. */
function trustDomainKey(r: ConfigReader, value: string): TrustDomain {
  try {
    return parseTrustDomainBounded(value);
  } catch (err) {
    return r.fail('trust_domain', (err as Error).message);
  }
}

function seconds(r: ConfigReader, key: string, fallback: string, min = 0): number {
  const s = r.duration(key, fallback);
  if (s < min) r.fail(key, `must be at least ${min}s`);
  return s;
}

function stringList(r: ConfigReader, key: string): string[] {
  const { value, path } = r.raw(key);
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  if (!list.every((v) => typeof v === 'string' && v !== '')) throw new SvidscopeError('config-invalid', `config: ${path}: expected a list of strings`);
  return list as string[];
}

function buildSource(doc: unknown, index: number, defaultInterval: number): SourceConfig {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new SvidscopeError('config-invalid', `config: sources[${index}]: expected a mapping`);
  const r = new ConfigReader(doc as Record<string, unknown>, `sources[${index}]`);
  const name = r.requiredString('name', 'it becomes the source label');
  if (!NAME.test(name)) r.fail('name', `must be letters, digits, "_", "." or "-", at most 63 (got ${shown(name)})`);
  const type = r.requiredOneOf('type', SOURCE_TYPES);
  const intervalSeconds = r.raw('interval').value === undefined ? defaultInterval : seconds(r, 'interval', '15s', 0.05);
  let source: SourceConfig;
  switch (type) {
    case 'workload_api': {
      const address = r.string('address', '');
      if (!address) r.fail('address', 'is required (unix:///path/to/api.sock, tcp://IP:port or an absolute path)');
      source = { type, name, intervalSeconds, address, jwtBundles: r.boolean('jwt_bundles', true) };
      break;
    }
    case 'files': {
      const paths = stringList(r, 'paths');
      if (paths.length === 0) r.fail('paths', 'is required (at least one file or directory)');
      const trustDomain = r.optionalString('trust_domain');
      source = { type, name, intervalSeconds, paths, trustDomain: trustDomain === undefined ? undefined : trustDomainKey(r, trustDomain), maxFiles: r.number('max_files', 200_000, { min: 1 }) };
      break;
    }
    case 'bundle_endpoint': {
      const url = r.string('url', '');
      if (!url) r.fail('url', 'is required (the https:// URL of the bundle endpoint)');
      if (!/^https:\/\/[^/@]+/.test(url)) r.fail('url', `must be an https:// URL without userinfo, as SPIFFE Federation requires (got ${shown(url)})`);
      const trustDomain = r.string('trust_domain', '');
      if (!trustDomain) r.fail('trust_domain', 'is required (the trust domain whose bundle the endpoint serves; never inferred from the URL)');
      const profile = r.oneOf('profile', ['https_web', 'https_spiffe'] as const, 'https_web');
      const endpointSpiffeId = r.optionalString('endpoint_spiffe_id');
      const bundleFile = r.optionalString('bundle_file');
      if (profile === 'https_spiffe' && (!endpointSpiffeId || !bundleFile)) {
        r.fail('profile', 'https_spiffe needs endpoint_spiffe_id and bundle_file (the bootstrap bundle)');
      }
      source = { type, name, intervalSeconds, url, trustDomain: trustDomainKey(r, trustDomain), profile, endpointSpiffeId, bundleFile, caFile: r.optionalString('ca_file'), timeoutSeconds: seconds(r, 'timeout', '10s', 0.1) };
      break;
    }
    case 'server_admin': {
      const socket = r.string('socket', '');
      if (!socket) r.fail('socket', 'is required (the server admin socket path)');
      source = { type, name, intervalSeconds, socket, coverage: r.boolean('coverage', true) };
      break;
    }
    default:
      return r.fail('type', `must be one of ${SOURCE_TYPES.join(', ')}`); // unreachable: requiredOneOf reported it
  }
  r.rejectUnknown();
  return source;
}

/**
 * `--source <type>:<name>=<target>` shortcuts: `workload_api:agent-a=/run/agent.sock`,
 * `files:svids=/var/run/svids`, `server_admin:server=/run/svidscope/admin.sock`. Bundle endpoints
 * need more keys than fit a flag, so they come from the config file only.
 */
export function parseSourceFlag(flag: string): Record<string, unknown> {
  const m = /^([a-z_]+):([^=]+)=(.+)$/.exec(flag);
  if (!m) throw new SvidscopeError('usage', `--source ${JSON.stringify(flag)}: expected <type>:<name>=<target>, e.g. workload_api:agent-a=/run/agent.sock`);
  const [, type, name, target] = m;
  switch (type) {
    case 'workload_api':
      return { name, type, address: target };
    case 'files':
      return { name, type, paths: target.split(',') };
    case 'server_admin':
      return { name, type, socket: target };
    default:
      throw new SvidscopeError('usage', `--source ${JSON.stringify(flag)}: type must be workload_api, files or server_admin (bundle endpoints go in the config file)`);
  }
}

export function buildExporterConfig(doc: Record<string, unknown>, flags: ExporterFlags = {}): ExporterConfig {
  const r = new ConfigReader(doc);
  // File keys are always read (so rejectUnknown knows them), then flags win.
  const fileListen = r.string('listen', DEFAULT_LISTEN);
  const listen = flags.listen ?? fileListen;
  checkHostPort(listen, 'listen');
  const logLevel: LogLevel = r.oneOf('log_level', LOG_LEVELS, 'info', flags.logLevel);
  const scrape = r.section('scrape');
  const scrapeTimeoutSeconds = seconds(scrape, 'timeout', '5s', 0.01);
  const maxSeries = scrape.number('max_series', 10_000, { min: 1 });
  scrape.rejectUnknown();
  const filePerSvid = r.boolean('per_svid_series', false);
  const perSvidSeries = flags.perSvidSeries ?? filePerSvid;
  const perSvidMaxSeries = r.number('per_svid_max_series', 1000, { min: 1 });
  const authorityMaxSeries = r.number('authority_max_series', 16, { min: 2, max: 1000 });
  const defaultInterval = seconds(r, 'default_interval', '15s', 0.05);
  const { value: rawSources, path } = r.raw('sources');
  if (rawSources !== undefined && rawSources !== null && !Array.isArray(rawSources)) throw new SvidscopeError('config-invalid', `config: ${path}: expected a list`);
  const docs = [...((rawSources as unknown[] | undefined) ?? []), ...(flags.source ?? []).map(parseSourceFlag)];
  const sources = docs.map((d, i) => buildSource(d, i, defaultInterval));
  if (sources.length === 0) throw new SvidscopeError('config-invalid', 'config: sources: at least one source is needed (or --source <type>:<name>=<target>)');
  const seen = new Set<string>();
  for (const s of sources) {
    if (seen.has(s.name)) throw new SvidscopeError('config-invalid', `config: sources: the name ${JSON.stringify(s.name)} is used twice (it is the source label)`);
    seen.add(s.name);
  }
  const configuredRefs = stringList(r, 'propagation_references');
  for (const ref of configuredRefs) {
    if (!seen.has(ref)) r.fail('propagation_references', `${JSON.stringify(ref)} is not the name of a source`);
  }
  const propagationReferences = configuredRefs.length > 0
    ? configuredRefs
    : [...sources.filter((s) => s.type === 'server_admin'), ...sources.filter((s) => s.type === 'bundle_endpoint')].map((s) => s.name);
  r.rejectUnknown();
  return { listen, logLevel, scrapeTimeoutSeconds, maxSeries, perSvidSeries, perSvidMaxSeries, authorityMaxSeries, propagationReferences, sources };
}
