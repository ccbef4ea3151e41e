import type { experimental } from '@grpc/grpc-js';

type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/**
 * A grpc-js certificate provider fed from memory: the identity (an X.509-SVID chain and key) and
 * the trust anchors (bundle certificates) are pushed whenever they rotate, and grpc-js rebuilds
 * the TLS context for new connections without restarting the server or channel. One object serves
 * as both the identity and the CA provider.
 */
export class InMemoryCertificateProvider implements experimental.CertificateProvider {
  private identity: { certificate: Buffer; privateKey: Buffer } | null = null;
  private ca: { caCertificate: Buffer } | null = null;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();

  setIdentity(certificateChainPem: string, privateKeyPem: string): void {
    this.identity = { certificate: Buffer.from(certificateChainPem), privateKey: Buffer.from(privateKeyPem) };
    for (const l of this.identityListeners) l(this.identity);
  }

  setTrustAnchors(bundlePem: string): void {
    this.ca = { caCertificate: Buffer.from(bundlePem) };
    for (const l of this.caListeners) l(this.ca);
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    this.replay(() => this.ca && this.caListeners.has(listener) && listener(this.ca));
  }
  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }
  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    this.replay(() => this.identity && this.identityListeners.has(listener) && listener(this.identity));
  }
  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  /**
   * The current value reaches a new listener on the next tick, not synchronously: grpc-js 1.14
   * registers its own watcher only after adding ours, so a synchronous replay would be lost and
   * the server would drop every connection as having no credentials.
   */
  private replay(deliver: () => unknown): void {
    setImmediate(deliver);
  }
}
