import type { TrustDomain } from '../id/index.js';
import { createSpiffeBundle } from './spiffe-bundle.js';
import type { JwtBundle, JwtBundleSource, SpiffeBundle, X509Bundle, X509BundleSource } from './types.js';

/**
 * Bundles by trust domain, one per trust domain (bundles of different trust domains are never
 * merged). Serves as both an X.509 and a JWT bundle source, so verification code can take either.
 */
export class BundleSet implements X509BundleSource, JwtBundleSource {
  private readonly byName = new Map<string, SpiffeBundle>();

  constructor(bundles: Iterable<X509Bundle | JwtBundle | SpiffeBundle> = []) {
    for (const b of bundles) this.set(b);
  }

  /** Adds or replaces the bundle of the bundle's trust domain; X.509- or JWT-only bundles are widened. */
  set(bundle: X509Bundle | JwtBundle | SpiffeBundle): void {
    this.byName.set(bundle.trustDomain.name, toSpiffeBundle(bundle));
  }

  get(td: TrustDomain): SpiffeBundle | undefined {
    return this.byName.get(td.name);
  }

  has(td: TrustDomain): boolean {
    return this.byName.has(td.name);
  }

  delete(td: TrustDomain): boolean {
    return this.byName.delete(td.name);
  }

  get size(): number {
    return this.byName.size;
  }

  bundles(): SpiffeBundle[] {
    return [...this.byName.values()];
  }

  getX509BundleForTrustDomain(td: TrustDomain): X509Bundle | undefined {
    return this.get(td);
  }

  getJwtBundleForTrustDomain(td: TrustDomain): JwtBundle | undefined {
    return this.get(td);
  }

  getBundleForTrustDomain(td: TrustDomain): SpiffeBundle | undefined {
    return this.get(td);
  }
}

export function toSpiffeBundle(bundle: X509Bundle | JwtBundle | SpiffeBundle): SpiffeBundle {
  if ('x509Authorities' in bundle && 'jwtAuthorities' in bundle) return bundle as SpiffeBundle;
  return createSpiffeBundle({
    trustDomain: bundle.trustDomain,
    x509Authorities: 'x509Authorities' in bundle ? bundle.x509Authorities : [],
    jwtAuthorities: 'jwtAuthorities' in bundle ? bundle.jwtAuthorities : [],
  });
}
