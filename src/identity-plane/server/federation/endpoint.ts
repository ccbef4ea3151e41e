import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Clock, TimerHandle } from '../../../common/clock.js';
import { SvidscopeError } from '../../../common/errors/catalog.js';
import type { Logger } from '../../../common/log.js';
import { checkHostPort } from '../../../common/net.js';
import { createSpiffeBundle, spiffeBundleToJson, type SpiffeBundle } from '../../spiffe/bundle/index.js';
import { parseSpiffeId, type TrustDomain } from '../../spiffe/id/index.js';
import { serverSpiffeId } from '../../server-api/server-id.js';
import { encodePem } from '../../spiffe/x509/index.js';
import { generateKeyPair, type X509SvidMinter } from '../../spiffe/mint/index.js';
import { servingSvidDecision, type ServingKeyMarks, type ServingSvid } from '../ca/serving-svid.js';
import type { BundleEndpointConfig } from './config.js';

/** What the endpoint needs of the CA: the active minter and its chain tail (CaManager). */
export interface EndpointCa {
  readonly x509Minter: X509SvidMinter;
  readonly x509ChainTail: Buffer[];
  /** The keys and their marks (CaManager.status), to tell when the CA that signed the served SVID was tainted or left the bundle. */
  status?(): readonly ServingKeyMarks[];
}

export interface BundleEndpointDeps {
  config: BundleEndpointConfig;
  trustDomain: TrustDomain;
  /** The trust domain's current bundle (BundlePublisher). */
  bundles: { readonly current: SpiffeBundle; onChange?(listener: (bundle: SpiffeBundle) => void): () => void };
  ca: EndpointCa;
  clock: Clock;
  logger: Logger;
  /** Refresh hint served when neither the endpoint config nor the bundle sets one. */
  defaultRefreshHintSeconds: number;
}

export interface BundleEndpoint {
  /** `https://host:port/`, with the real port when 0 was asked. */
  readonly url: string;
  /** https_spiffe: the SPIFFE ID the endpoint presents. */
  readonly spiffeId?: string;
  /** Re-mints the X509-SVID (https_spiffe) or re-reads the certificate files (https_web) now. */
  reloadIdentity(): void;
  close(): Promise<void>;
}

/** How often https_web certificate files are checked for changes, and the https_spiffe SVID for renewal. */
const CHECK_INTERVAL_MS = 30_000;

/**
 * The bundle endpoint (SPIFFE Federation §4): an HTTPS GET on any path returns this trust
 * domain's bundle as a SPIFFE bundle document with `spiffe_sequence` and `spiffe_refresh_hint`.
 * No client authentication, as the standard requires. With https_spiffe the server presents an
 * X509-SVID minted by the active CA and renewed at half-life; it is deliberately not re-minted on a
 * CA rotation, so peers that have not fetched the new authority yet still authenticate it. It is
 * re-minted at once when its CA is tainted, revoked or expired while another one signs: a peer
 * verifies it against its copy of this bundle, which after the revoke no longer holds that CA, so
 * the peer could not fetch any later bundle until the half-life renewal. A CA only withheld does
 * not count (withholding is reversible, and a peer that narrowed its trust meanwhile must still
 * connect), and it is never re-minted under an active CA that is itself withheld (no peer could
 * verify it); see servingSvidDecision.
 */
export async function startBundleEndpoint(deps: BundleEndpointDeps): Promise<BundleEndpoint> {
  const { config, trustDomain, clock, logger } = deps;
  const spiffeId = config.profile === 'https_spiffe' ? (config.spiffeId ? parseSpiffeId(config.spiffeId) : serverSpiffeId(trustDomain)) : undefined;
  if (spiffeId && !spiffeId.memberOf(trustDomain)) throw new SvidscopeError('config-invalid', `config: federation.bundle_endpoint.spiffe_id: ${spiffeId} is not in trust domain ${trustDomain.name}`);

  const serving: ServingSvid = { renewAtMs: Infinity, notAfterMs: Infinity };
  const activeCaId = () => deps.ca.status?.().find((k) => k.kind === 'x509' && k.phase === 'active')?.id;
  let webFiles = '';
  let holdLogged: string | undefined;
  /** https_spiffe: whether the SVID is due for re-keying now (without status, only at half-life). */
  const renewalDue = (): boolean => {
    if (!deps.ca.status) return clock.nowMs() >= serving.renewAtMs;
    const decision = servingSvidDecision(deps.ca.status(), serving, clock.nowMs(), 3 * CHECK_INTERVAL_MS);
    if (decision.action !== 'hold') {
      holdLogged = undefined;
      return decision.action === 'renew';
    }
    const key = `${serving.caId}>${decision.activeCaId}`;
    if (holdLogged !== key) logger.warn({ servingCaId: serving.caId, activeCaId: decision.activeCaId, wanted: decision.wanted },
      'bundle endpoint X509-SVID not re-keyed: the active X.509 CA is withheld from the bundle, so no peer could authenticate an SVID it signs');
    holdLogged = key;
    return false;
  };
  const identity = (): { cert: string; key: string } => {
    if (spiffeId) {
      const key = generateKeyPair('ec-p256');
      const now = clock.now();
      serving.caId = activeCaId();
      const minted = deps.ca.x509Minter.mint({ id: spiffeId, publicKey: key.publicKey, ttlSeconds: config.svidTtlSeconds, now, dnsNames: [] });
      serving.notAfterMs = minted.notAfter.getTime();
      serving.renewAtMs = now.getTime() + (minted.notAfter.getTime() - now.getTime()) / 2;
      logger.info({ spiffeId: spiffeId.toString(), notAfter: minted.notAfter.toISOString() }, 'bundle endpoint X509-SVID minted');
      return {
        cert: [minted.der, ...deps.ca.x509ChainTail].map((d) => encodePem('CERTIFICATE', d)).join(''),
        key: key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      };
    }
    let cert: string;
    let key: string;
    try {
      cert = readFileSync(config.certFile!, 'utf8');
      key = readFileSync(config.keyFile!, 'utf8');
    } catch (err) {
      throw new SvidscopeError('io-error', `federation: cannot read the bundle endpoint certificate: ${(err as Error).message}`, { cause: err });
    }
    webFiles = cert + key;
    return { cert, key };
  };

  let cached: { sequence: bigint | undefined; body: Buffer } | undefined;
  const document = (): Buffer => {
    const current = deps.bundles.current;
    if (!cached || cached.sequence !== current.sequenceNumber) {
      const hint = config.refreshHintSeconds ?? current.refreshHintSeconds ?? deps.defaultRefreshHintSeconds;
      cached = { sequence: current.sequenceNumber, body: Buffer.from(spiffeBundleToJson(createSpiffeBundle({ ...current, refreshHintSeconds: hint }))) };
    }
    return cached.body;
  };

  const server: Server = createServer({ ...identity(), minVersion: 'TLSv1.2' }, (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    let body: Buffer;
    try {
      body = document();
    } catch (err) {
      logger.error({ err }, 'bundle endpoint has no bundle to serve');
      res.writeHead(503, { 'content-type': 'text/plain' }).end('bundle not available\n');
      return;
    }
    logger.debug({ remote: req.socket.remoteAddress, sequence: String(cached?.sequence) }, 'served bundle');
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length, 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  });

  const reloadIdentity = () => server.setSecureContext({ ...identity(), minVersion: 'TLSv1.2' });
  let timer: TimerHandle | undefined;
  let closed = false;
  const check = () => {
    timer = clock.setTimeout(() => {
      try {
        if (spiffeId && renewalDue()) reloadIdentity();
        if (!spiffeId) {
          const files = readFileSync(config.certFile!, 'utf8') + readFileSync(config.keyFile!, 'utf8');
          if (files !== webFiles) {
            reloadIdentity();
            logger.info({ certFile: config.certFile }, 'bundle endpoint certificate reloaded');
          }
        }
      } catch (err) {
        logger.error({ err }, 'bundle endpoint identity renewal failed; retrying');
      }
      if (!closed) check();
    }, Math.max(1000, Math.min(CHECK_INTERVAL_MS, serving.renewAtMs - clock.nowMs())));
  };
  check();
  // A revoke changes the bundle: re-mint before a peer fetches the document without the old CA.
  const unsubscribe = deps.bundles.onChange?.(() => {
    try {
      if (spiffeId && renewalDue()) {
        reloadIdentity();
        logger.info({ spiffeId: spiffeId.toString() }, 'bundle endpoint X509-SVID re-minted on a bundle change: its CA was tainted, revoked or expired, or it was due');
      }
    } catch (err) {
      logger.error({ err }, 'bundle endpoint identity renewal failed; retrying');
    }
  });

  const { host, port } = checkHostPort(config.bind, 'federation.bundle_endpoint.bind');
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new SvidscopeError('io-error', `federation: cannot listen on ${config.bind}: ${err.message}`, { cause: err })));
    server.listen(port, host, () => resolve());
  }).catch((err: unknown) => {
    closed = true;
    if (timer) clock.clearTimeout(timer);
    unsubscribe?.();
    throw err;
  });
  const bound = (server.address() as AddressInfo).port;
  const url = `https://${host.includes(':') ? `[${host}]` : host}:${bound}/`;
  logger.info({ url, profile: config.profile, spiffeId: spiffeId?.toString(), refreshHintSeconds: config.refreshHintSeconds }, 'bundle endpoint listening');

  return {
    url,
    spiffeId: spiffeId?.toString(),
    reloadIdentity,
    close: async () => {
      closed = true;
      if (timer) clock.clearTimeout(timer);
      unsubscribe?.();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
