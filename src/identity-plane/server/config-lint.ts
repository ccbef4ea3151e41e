/**
 * Settings that make key rotation or a key-compromise response unsafe, found in a valid server
 * config (`svidscope server check-config`, and one warning line each at `server run`). The rules
 * follow from the rotation schedule of the CA manager: with CA lifetime T, a successor is
 * prepared (published) at prepare_fraction·T and activated at activate_fraction·T, and the old key
 * stays published until T.
 *
 * - The activation window (1 − activate_fraction)·T is how long the outgoing key still lives when
 *   its successor takes over: anything it signs just before is capped to at most that, so longer
 *   SVID TTLs are silently cut short near every rotation.
 * - The propagation window (activate_fraction − prepare_fraction)·T is the time a new key has to
 *   reach every verifier before it signs; federated peers poll at the published refresh hint.
 * - After `authority revoke`, a peer keeps trusting the key until its next fetch: up to the
 *   refresh hint this server publishes; and this server keeps a peer's revoked key up to its own
 *   `federation.refresh_max` (or `refresh_default` when the peer publishes no hint).
 */
import { formatDuration as dur } from '../../common/duration.js';
import type { ServerConfig } from './config.js';

export type FindingSeverity = 'error' | 'warning';

export interface ConfigFinding {
  /** Stable identifier of the rule. */
  code: string;
  severity: FindingSeverity;
  /** The config key to change (YAML path). */
  setting: string;
  message: string;
}

export interface LintOptions {
  /** How long peers may keep trusting a revoked key before it is worth a warning (default 1 h). */
  revokedKeyTrustMaxSeconds?: number;
}

export const DEFAULT_REVOKED_KEY_TRUST_MAX_SECONDS = 3600;

/** Every finding for `config`; empty when rotation and revocation are safe with it. */
export function lintServerConfig(config: ServerConfig, opts: LintOptions = {}): ConfigFinding[] {
  const { ttlSeconds: caTtl, prepareFraction, activateFraction } = config.ca;
  // Whole seconds, as durations are configured: 5/6 of 24 h must compare equal to 20 h, not a hair under.
  const activationWindow = Math.round((1 - activateFraction) * caTtl);
  const propagationWindow = Math.round((activateFraction - prepareFraction) * caTtl);
  const revokedMax = opts.revokedKeyTrustMaxSeconds ?? DEFAULT_REVOKED_KEY_TRUST_MAX_SECONDS;
  const findings: ConfigFinding[] = [];
  const add = (f: ConfigFinding) => findings.push(f);

  const svidTtl = (setting: string, what: string, ttl: number, keyName: string, code: string) => {
    if (ttl > caTtl) {
      add({ code: `${code}-exceeds-ca-ttl`, severity: 'error', setting,
        message: `${setting} (${dur(ttl)}) is longer than ca.ttl (${dur(caTtl)}): no ${what} can outlive the ${keyName} that signs it, so every one is cut short and the setting is never honoured` });
    } else if (ttl > activationWindow) {
      add({ code: `${code}-exceeds-activation-window`, severity: 'warning', setting,
        message: `${setting} (${dur(ttl)}) is longer than the ${keyName}'s activation window, (1 − ca.activate_fraction) × ca.ttl = ${dur(activationWindow)}: ${what}s signed just before each rotation are capped at the outgoing ${keyName}'s expiry, as little as ${dur(activationWindow)}` });
    }
  };
  svidTtl('default_x509_svid_ttl', 'X509-SVID', config.defaultX509SvidTtlSeconds, 'X.509 CA', 'x509-svid-ttl');
  svidTtl('agent_ttl', 'agent SVID', config.agentTtlSeconds, 'X.509 CA', 'agent-svid-ttl');
  svidTtl('default_jwt_svid_ttl', 'JWT-SVID', config.defaultJwtSvidTtlSeconds, 'JWT key', 'jwt-svid-ttl');

  const endpointHint = config.federation?.bundleEndpoint?.refreshHintSeconds;
  const hint = endpointHint ?? config.bundleRefreshHintSeconds;
  const hintSetting = endpointHint !== undefined ? 'federation.bundle_endpoint.refresh_hint' : 'bundle_refresh_hint';
  if (hint > propagationWindow) {
    add({ code: 'refresh-hint-exceeds-propagation-window', severity: 'error', setting: hintSetting,
      message: `${hintSetting} (${dur(hint)}) is longer than the propagation window, (ca.activate_fraction − ca.prepare_fraction) × ca.ttl = ${dur(propagationWindow)}: a federated peer polling at the hint can miss a new key before it signs, and then rejects this trust domain's SVIDs` });
  } else if (hint > propagationWindow / 2) {
    add({ code: 'refresh-hint-near-propagation-window', severity: 'warning', setting: hintSetting,
      message: `${hintSetting} (${dur(hint)}) is more than half the propagation window (${dur(propagationWindow)}): one failed fetch and a federated peer misses a new key before it signs` });
  }
  if (hint > revokedMax) {
    add({ code: 'peers-trust-revoked-key', severity: 'warning', setting: hintSetting,
      message: `${hintSetting} (${dur(hint)}) lets federated peers keep trusting a revoked key of this trust domain for up to ${dur(hint)} after \`authority revoke\` (more than ${dur(revokedMax)})` });
  }

  const fed = config.federation;
  if (fed && fed.relationships.length > 0) {
    if (fed.maxRefreshSeconds > revokedMax) {
      add({ code: 'peer-revoked-key-trusted', severity: 'warning', setting: 'federation.refresh_max',
        message: `federation.refresh_max (${dur(fed.maxRefreshSeconds)}): a peer that publishes a long refresh hint has its revoked keys trusted here for up to ${dur(fed.maxRefreshSeconds)} (more than ${dur(revokedMax)})` });
    }
    if (fed.defaultRefreshSeconds > revokedMax) {
      add({ code: 'peer-revoked-key-trusted', severity: 'warning', setting: 'federation.refresh_default',
        message: `federation.refresh_default (${dur(fed.defaultRefreshSeconds)}): a peer that publishes no refresh hint has its revoked keys trusted here for up to ${dur(fed.defaultRefreshSeconds)} (more than ${dur(revokedMax)})` });
    }
  }
  return findings;
}
