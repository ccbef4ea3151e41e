/**
 * The prober configuration (YAML), modelled on blackbox_exporter's: named modules, each with a
 * `prober` kind, a `timeout` and a settings section named after the kind; plus the targets probed
 * on a schedule. Every module kind is also available under its own name with default settings, so
 * `/probe?module=x509_svid` works without any config. Defaults are documented in docs/probes.md.
 */
import { ConfigReader, readYamlConfig } from '../common/config/load.js';
import { shown } from '../common/config/shown.js';
import { SvidscopeError } from '../common/errors/catalog.js';
import { LOG_LEVELS, type LogLevel } from '../common/log.js';
import { checkHostPort } from '../common/net.js';
// IDs in a prober config are held to the standard's size limits, like every ID entering svidscope.
import { parseSpiffeIdBounded as parseSpiffeId, parseTrustDomainBounded as parseTrustDomain, type SpiffeId, type TrustDomain } from '../identity-plane/spiffe/id/index.js';
import { MODULE_KINDS, type ModuleKind } from './result.js';

export const DEFAULT_TIMEOUT_SECONDS = 10;
export const DEFAULT_CLOCK_SKEW_SECONDS = 5;
export const DEFAULT_MIN_TTL_RATIO = 0.1;
export const DEFAULT_AUDIENCE = 'svidscope-probe';
export const DEFAULT_WATCH_SECONDS = 30;
export const DEFAULT_INTERVAL_SECONDS = 30;
export const DEFAULT_LISTEN = '127.0.0.1:9465';

export interface X509SvidSettings {
  /** Pick the SVID with this ID (else the default, first one) and require it. */
  readonly expectedSpiffeId?: SpiffeId;
  readonly expectedTrustDomain?: TrustDomain;
  readonly clockSkewSeconds: number;
  /** Fail with rotation_overdue below this fraction of lifetime left; 0 turns the check off. */
  readonly minTtlRatio: number;
}

export interface JwtSvidSettings {
  readonly audience: readonly string[];
  /** The audience the token is validated for (locally and through ValidateJWTSVID); default: the first requested. */
  readonly validateAudience: string;
  readonly spiffeId?: SpiffeId;
  readonly expectedTrustDomain?: TrustDomain;
  readonly clockSkewSeconds: number;
  readonly minTtlRatio: number;
  readonly validateLocally: boolean;
  readonly validateViaApi: boolean;
}

export interface MtlsSettings {
  /** The Workload API of the server side; default: the target (two entries of one caller). */
  readonly serverTarget?: string;
  readonly clientSpiffeId?: SpiffeId;
  readonly serverSpiffeId?: SpiffeId;
  /** SPIFFE IDs, or `spiffe://<td>` for any ID of a trust domain; empty = any ID of the verifier's own trust domain. */
  readonly allowedServerIds: readonly string[];
  readonly allowedClientIds: readonly string[];
  readonly clockSkewSeconds: number;
}

export type BundleProfile = 'https_web' | 'https_spiffe';

export interface BundleEndpointSettings {
  /** The trust domain the fetched bundle belongs to: always explicit (SPIFFE Federation §5). */
  readonly trustDomain?: TrustDomain;
  readonly profile: BundleProfile;
  /** https_web: PEM CA file to verify the server with; default: Node's bundled roots. */
  readonly caFile?: string;
  /** https_spiffe: the SPIFFE ID the endpoint must present. */
  readonly endpointSpiffeId?: SpiffeId;
  /** https_spiffe: the bundle of the endpoint's trust domain (PEM, DER or SPIFFE JSON)… */
  readonly bundleFile?: string;
  /** …or a Workload API address whose X.509 bundles include it. */
  readonly bundleSource?: string;
  /** stale_bundle when the newest X.509 authority is older than this; 0 = off. */
  readonly maxAgeSeconds: number;
}

export interface RotationWatchSettings {
  /** How long a one-shot watch (CLI, `/probe`) holds the stream; capped by the timeout. */
  readonly durationSeconds: number;
  readonly spiffeId?: SpiffeId;
  readonly clockSkewSeconds: number;
  readonly minTtlRatio: number;
  /** A one-shot watch fails unless at least one rotation arrived. */
  readonly requireRotation: boolean;
}

interface ModuleBase {
  readonly name: string;
  readonly timeoutSeconds: number;
  /** The settings section as written, so the CLI can layer flags over it. */
  readonly raw: Readonly<Record<string, unknown>>;
}

export type ModuleConfig =
  | (ModuleBase & { readonly kind: 'x509_svid'; readonly settings: X509SvidSettings })
  | (ModuleBase & { readonly kind: 'jwt_svid'; readonly settings: JwtSvidSettings })
  | (ModuleBase & { readonly kind: 'mtls'; readonly settings: MtlsSettings })
  | (ModuleBase & { readonly kind: 'bundle_endpoint'; readonly settings: BundleEndpointSettings })
  | (ModuleBase & { readonly kind: 'rotation_watch'; readonly settings: RotationWatchSettings });

export interface TargetConfig {
  /** A bounded label value: the name the target has in the config, never the address. */
  readonly name: string;
  readonly module: string;
  readonly target: string;
  readonly intervalSeconds: number;
}

export interface ProberConfig {
  readonly listen: string;
  readonly logLevel: LogLevel;
  /** Subtracted from Prometheus' scrape timeout header, as blackbox's --timeout-offset. */
  readonly timeoutOffsetSeconds: number;
  readonly modules: ReadonlyMap<string, ModuleConfig>;
  readonly targets: readonly TargetConfig[];
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$/;

function optional<T>(r: ConfigReader, key: string, parse: (s: string) => T): T | undefined {
  const v = r.optionalString(key);
  if (v === undefined) return undefined;
  try {
    return parse(v);
  } catch (err) {
    return r.fail(key, (err as Error).message);
  }
}

function stringList(r: ConfigReader, key: string, fallback: readonly string[]): string[] {
  const { value } = r.raw(key);
  if (value === undefined || value === null) return [...fallback];
  const list = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',') : r.fail(key, 'expected a list of strings');
  const out = list.map((v) => (typeof v === 'string' ? v.trim() : r.fail(key, 'expected a list of strings'))).filter((v) => v !== '');
  return out;
}

function idOrTrustDomainList(r: ConfigReader, key: string): string[] {
  const list = stringList(r, key, []);
  for (const v of list) {
    try {
      if (/^spiffe:\/\/[^/]+$/.test(v)) parseTrustDomain(v);
      else parseSpiffeId(v);
    } catch (err) {
      r.fail(key, `${JSON.stringify(v)}: ${(err as Error).message}`);
    }
  }
  return list;
}

const ratio = (r: ConfigReader) => r.number('min_ttl_ratio', DEFAULT_MIN_TTL_RATIO, { min: 0, max: 1 });
const skew = (r: ConfigReader) => r.duration('clock_skew', DEFAULT_CLOCK_SKEW_SECONDS);

/** Parses the settings section of one module kind; unknown keys are refused. */
export function parseModuleSettings(kind: ModuleKind, raw: Record<string, unknown>, path: string): ModuleConfig['settings'] {
  const r = new ConfigReader(raw, path);
  let settings: ModuleConfig['settings'];
  switch (kind) {
    case 'x509_svid':
      settings = { expectedSpiffeId: optional(r, 'expected_spiffe_id', parseSpiffeId), expectedTrustDomain: optional(r, 'expected_trust_domain', parseTrustDomain), clockSkewSeconds: skew(r), minTtlRatio: ratio(r) } satisfies X509SvidSettings;
      break;
    case 'jwt_svid': {
      const audience = stringList(r, 'audience', [DEFAULT_AUDIENCE]);
      if (audience.length === 0) r.fail('audience', 'needs at least one audience');
      settings = {
        audience, validateAudience: r.optionalString('validate_audience') ?? audience[0], spiffeId: optional(r, 'spiffe_id', parseSpiffeId),
        expectedTrustDomain: optional(r, 'expected_trust_domain', parseTrustDomain), clockSkewSeconds: skew(r), minTtlRatio: ratio(r),
        validateLocally: r.boolean('validate_locally', true), validateViaApi: r.boolean('validate_via_api', true),
      } satisfies JwtSvidSettings;
      if (!settings.validateLocally && !settings.validateViaApi) r.fail('validate_via_api', 'validate_locally and validate_via_api cannot both be false');
      break;
    }
    case 'mtls':
      settings = {
        serverTarget: r.optionalString('server_target'), clientSpiffeId: optional(r, 'client_spiffe_id', parseSpiffeId), serverSpiffeId: optional(r, 'server_spiffe_id', parseSpiffeId),
        allowedServerIds: idOrTrustDomainList(r, 'allowed_server_ids'), allowedClientIds: idOrTrustDomainList(r, 'allowed_client_ids'), clockSkewSeconds: skew(r),
      } satisfies MtlsSettings;
      break;
    case 'bundle_endpoint': {
      const profile = r.oneOf('profile', ['https_web', 'https_spiffe'] as const, 'https_web');
      const s: BundleEndpointSettings = {
        trustDomain: optional(r, 'trust_domain', parseTrustDomain), profile, caFile: r.optionalString('ca_file'),
        endpointSpiffeId: optional(r, 'endpoint_spiffe_id', parseSpiffeId), bundleFile: r.optionalString('bundle_file'),
        bundleSource: r.optionalString('bundle_source'), maxAgeSeconds: r.duration('max_age', 0),
      };
      if (profile === 'https_spiffe' && !s.endpointSpiffeId) r.fail('endpoint_spiffe_id', 'is required with profile https_spiffe');
      if (profile === 'https_spiffe' && !s.bundleFile && !s.bundleSource) r.fail('bundle_file', 'https_spiffe needs bundle_file or bundle_source (the bundle of the endpoint\'s trust domain)');
      settings = s;
      break;
    }
    case 'rotation_watch':
      settings = {
        durationSeconds: r.duration('duration', DEFAULT_WATCH_SECONDS), spiffeId: optional(r, 'spiffe_id', parseSpiffeId), clockSkewSeconds: skew(r),
        minTtlRatio: ratio(r), requireRotation: r.boolean('require_rotation', false),
      } satisfies RotationWatchSettings;
      break;
  }
  r.rejectUnknown();
  return settings;
}

export function isModuleKind(value: string): value is ModuleKind {
  return (MODULE_KINDS as readonly string[]).includes(value);
}

/**
 * Builds one module from its kind, settings section and timeout. The default timeout is 10 s,
 * except for rotation_watch: its watch window plus 10 s.
 */
export function buildModule(name: string, kind: ModuleKind, raw: Record<string, unknown>, timeoutSeconds?: number, path = `modules.${name}.${kind}`): ModuleConfig {
  const settings = parseModuleSettings(kind, raw, path);
  const timeout = timeoutSeconds ?? (kind === 'rotation_watch' ? (settings as RotationWatchSettings).durationSeconds + 10 : DEFAULT_TIMEOUT_SECONDS);
  if (!(timeout > 0)) throw new SvidscopeError('config-invalid', `config: ${path}: timeout must be positive`);
  return { name, kind, timeoutSeconds: timeout, raw, settings } as ModuleConfig;
}

/** The module of a kind with every default, available under the kind's own name. */
export function defaultModules(): Map<string, ModuleConfig> {
  return new Map(MODULE_KINDS.map((kind) => [kind, buildModule(kind, kind, {})]));
}

export function buildProberConfig(doc: Record<string, unknown>): ProberConfig {
  const r = new ConfigReader(doc);
  const listen = r.string('listen', DEFAULT_LISTEN);
  checkHostPort(listen, 'listen');
  const logLevel = r.oneOf('log_level', LOG_LEVELS, 'info');
  const timeoutOffsetSeconds = r.duration('timeout_offset', 0.5);
  const modules = defaultModules();
  const ms = r.section('modules');
  for (const name of ms.keys()) {
    if (!NAME.test(name)) ms.fail(name, 'a module name must be letters, digits, _ . : -, at most 63');
    const m = ms.section(name);
    const kindText = m.string('prober', '');
    const kind: ModuleKind = isModuleKind(kindText) ? kindText : m.fail('prober', `must be one of ${MODULE_KINDS.join(', ')} (got ${shown(kindText)})`);
    const timeout = m.raw('timeout').value === undefined ? undefined : m.duration('timeout', DEFAULT_TIMEOUT_SECONDS);
    const { value } = m.raw(kind);
    if (value !== undefined && value !== null && (typeof value !== 'object' || Array.isArray(value))) m.fail(kind, 'expected a mapping');
    m.rejectUnknown();
    modules.set(name, buildModule(name, kind, (value ?? {}) as Record<string, unknown>, timeout, `modules.${name}.${kind}`));
  }
  ms.rejectUnknown();
  const targets: TargetConfig[] = [];
  for (const tr of r.items('targets')) {
    const name = tr.requiredString('name', 'it becomes the target label');
    if (!NAME.test(name)) tr.fail('name', `must be letters, digits, _ . : -, at most 63 (got ${shown(name)})`);
    if (targets.some((x) => x.name === name)) tr.fail('name', `${JSON.stringify(name)} is used twice`);
    const module = tr.string('module', '');
    if (!modules.has(module)) tr.fail('module', `${JSON.stringify(module)} is not a module (known: ${[...modules.keys()].join(', ')})`);
    const target = tr.string('target', '');
    if (target === '') tr.fail('target', 'is required (a Workload API address or a bundle endpoint URL)');
    const intervalSeconds = tr.duration('interval', DEFAULT_INTERVAL_SECONDS);
    if (!(intervalSeconds > 0)) tr.fail('interval', 'must be positive');
    tr.rejectUnknown();
    targets.push({ name, module, target, intervalSeconds });
  }
  r.rejectUnknown();
  return { listen, logLevel, timeoutOffsetSeconds, modules, targets };
}

export function loadProberConfig(file: string): ProberConfig {
  return buildProberConfig(readYamlConfig(file));
}
