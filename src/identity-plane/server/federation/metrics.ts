import { Counter, Gauge, type Registry } from 'prom-client';
import { systemClock, type Clock } from '../../../common/clock.js';
import { federationFamilies } from '../../../common/telemetry/names.js';
import type { RelationshipStatus } from './refresher.js';

/** Anything that lists relationship states: the running Federation. */
export interface FederationStateSource {
  relationships(): RelationshipStatus[];
}

/**
 * Registers the federation families on `registry`, all computed from the relationships' state at
 * scrape time (so a deleted relationship's series disappear with it):
 * sequence, last successful refresh, refresh errors by reason, age and authority expiry.
 */
export function registerFederationMetrics(registry: Registry, federation: FederationStateSource, clock: Clock = systemClock): void {
  const fam = federationFamilies;
  const states = () => federation.relationships();
  const gauge = (family: (typeof fam)[keyof typeof fam], value: (s: RelationshipStatus) => number | undefined) =>
    new Gauge({
      name: family.name, help: family.help, labelNames: [...family.labels], registers: [registry],
      collect() {
        this.reset();
        for (const s of states()) {
          const v = value(s);
          if (v !== undefined && Number.isFinite(v)) this.set({ trust_domain: s.relationship.trustDomain }, v);
        }
      },
    });

  gauge(fam.bundleSequence, (s) => (s.bundleSequence === undefined ? undefined : Number(s.bundleSequence)));
  gauge(fam.lastRefresh, (s) => (s.lastSuccessMs === undefined ? undefined : s.lastSuccessMs / 1000));
  gauge(fam.age, (s) => {
    const since = s.lastSuccessMs ?? s.bundleUpdatedAtMs;
    return since === undefined ? undefined : Math.max(0, (clock.nowMs() - since) / 1000);
  });
  gauge(fam.authorityExpiry, (s) => (s.authorityExpiryMs === undefined ? undefined : s.authorityExpiryMs / 1000));
  new Counter({
    name: fam.refreshErrors.name, help: fam.refreshErrors.help, labelNames: [...fam.refreshErrors.labels], registers: [registry],
    collect() {
      this.reset();
      for (const s of states()) for (const [reason, count] of s.errors) this.inc({ trust_domain: s.relationship.trustDomain, reason }, count);
    },
  });
}
