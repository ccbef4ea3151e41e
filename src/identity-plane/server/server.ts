import * as grpc from '@grpc/grpc-js';
import { GRPC_BASE_OPTIONS, withH2AlpnCallback } from '../../common/grpc-options.js';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Registry } from 'prom-client';
import type { Tracer } from '@opentelemetry/api';
import { systemClock, type Clock } from '../../common/clock.js';
import { SvidscopeError } from '../../common/errors/catalog.js';
import { startOpsServer } from '../../common/http/ops-server.js';
import { createRegistry } from '../../common/telemetry/registry.js';
import { nullLogger, type Logger } from '../../common/log.js';
import { InMemoryCertificateProvider } from '../../common/tls/certificate-provider.js';
import { x509BundleToPem } from '../spiffe/bundle/index.js';
import { encodePem, parseCertificates, parsePrivateKey } from '../spiffe/x509/index.js';
import { generateKeyPair } from '../spiffe/mint/index.js';
import { createAdminService } from './api/admin-service.js';
import { listenAdminSocket, type AdminSocket } from './api/admin-socket.js';
import { serverServices } from './api/grpc.js';
import { createNodeService, type NodeServiceEvents } from './api/node-service.js';
import { ChangeNotifier } from './api/change-notifier.js';

/**
 * Server-side keepalive on agent connections: a dead peer's watch stream is closed within this plus
 * the timeout. Lenient, so a busy agent (or a busy server) is not cut off for answering late.
 */
const WATCH_KEEPALIVE_MS = 300_000;
const WATCH_KEEPALIVE_TIMEOUT_MS = 60_000;
import { BundlePublisher } from './bundle/publisher.js';
import { CaManager, type UpstreamAuthority } from './ca/manager.js';
import { SigningPool } from './ca/signing-pool.js';
import { servingSvidDecision, type ServingSvid } from './ca/serving-svid.js';
import type { ServerConfig } from './config.js';
import { checkHostPort } from '../../common/net.js';
import { BundleCache, observeBundleWrites } from './bundle/bundle-cache.js';
import { openDatastore } from './datastore/index.js';
import type { Datastore } from './datastore/types.js';
import { AgentCache } from './registration/agent-cache.js';
import { TombstonePruner } from './registration/tombstone-pruner.js';
import { EntryCache } from './registration/entry-cache.js';
import { serverSpiffeId } from '../server-api/server-id.js';
import { createServerTelemetry } from './telemetry.js';
import { registerFederationMetrics, startFederation } from './federation/index.js';
import { createFederationHandlers } from './api/federation-service.js';

export interface ServerDeps {
  clock?: Clock;
  logger?: Logger;
  registry?: Registry;
  /** From startTracing(); undefined = tracing off. */
  tracer?: Tracer;
  /** Runs without metric hooks (the instrumentation-overhead benchmark's baseline). */
  withoutMetrics?: boolean;
  /** Lets tests make a signing worker exit mid-batch (SigningPool.crashNextChunkForTest). */
  signingPoolTestHooks?: boolean;
}

export interface RunningServer {
  /** host:port the agent API listens on (the real port when 0 was asked). */
  readonly address: string;
  /** The SPIFFE bundle endpoint, when `federation.bundle_endpoint` is configured. */
  readonly bundleEndpointUrl: string | undefined;
  readonly adminSocket: string;
  readonly opsUrl: string | undefined;
  readonly datastore: Datastore;
  readonly ca: CaManager;
  readonly bundles: BundlePublisher;
  readonly signingPool: SigningPool;
  /** Runs the periodic work once (bundle, entries, server SVID); the loop calls it every cache_reload_interval. */
  tick(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The composition root of the identity plane server: the only place that builds real clocks,
 * loggers, sockets and the datastore. Order matters: keys and bundle exist before any listener
 * opens, so the first agent to connect already sees a complete trust domain.
 */
export async function startServer(config: ServerConfig, deps: ServerDeps = {}): Promise<RunningServer> {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? nullLogger();
  const registry = deps.registry ?? createRegistry();
  const td = config.trustDomain;
  // Telemetry reads live state at scrape time; the references fill in as the parts start.
  const live: { ca?: CaManager; bundles?: BundlePublisher; entries?: EntryCache; agents?: AgentCache; datastore?: Datastore; changes?: ChangeNotifier; signingPool?: SigningPool } = {};
  const telemetry = deps.withoutMetrics
    ? { observe: () => undefined, nodeEvents: {} as NodeServiceEvents, adminEvents: {}, watchEvents: {}, instrumentDatastore: (ds: Datastore) => ds, signingWorkerRestarted: () => undefined }
    : createServerTelemetry(registry, deps.tracer, { ca: () => live.ca, bundles: () => live.bundles, entries: () => live.entries, agents: () => live.agents, datastore: () => live.datastore, changes: () => live.changes, signingPool: () => live.signingPool });
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });

  const instrumented = telemetry.instrumentDatastore(await openDatastore(config.datastore));
  const bundleCache = new BundleCache(instrumented);
  const datastore = observeBundleWrites(instrumented, bundleCache);
  live.datastore = datastore;
  const cleanups: (() => Promise<void> | void)[] = [() => datastore.close()];
  try {
    const upstream = config.ca.upstream ? loadUpstream(config.ca.upstream) : undefined;
    const bundlesRef: { publisher?: BundlePublisher } = {};
    let taintMark = '|'; // the mark of no tainted authority
    const taintChanged = () => {
      const t = live.ca?.taintedAuthorities();
      const mark = t ? `${t.x509.map((d) => d.toString('base64')).join()}|${t.jwt.join()}` : '';
      if (mark === taintMark) return false;
      taintMark = mark;
      return true;
    };
    const ca = new CaManager({
      trustDomain: td, dir: path.join(config.dataDir, 'ca'), clock, logger: logger.child({ subsystem: 'ca' }), upstream,
      config: { caTtlSeconds: config.ca.ttlSeconds, prepareFraction: config.ca.prepareFraction, activateFraction: config.ca.activateFraction,
        checkIntervalSeconds: config.ca.checkIntervalSeconds, keyType: config.ca.keyType, jwtKeyType: config.ca.jwtKeyType },
      // A new taint mark does not change the bundle, so only the notifier can carry it to agents at once.
      onChange: () => void bundlesRef.publisher?.sync().then(() => taintChanged() && live.changes?.bundleChanged()).catch((err: unknown) => logger.error({ err }, 'bundle publication failed; retrying at the next tick')),
    });
    ca.start();
    live.ca = ca;
    cleanups.push(() => ca.stop());
    const bundles = new BundlePublisher({ trustDomain: td, datastore, clock, logger: logger.child({ subsystem: 'bundle' }), refreshHintSeconds: config.bundleRefreshHintSeconds, ownAuthorities: () => ca.published() });
    bundlesRef.publisher = bundles;
    live.bundles = bundles;
    await bundles.sync();
    const entries = new EntryCache(datastore, serverSpiffeId(td).toString());
    live.entries = entries;
    await entries.refresh();
    const agents = new AgentCache(datastore, { clock, minUnknownRefreshIntervalMs: config.agentRefreshMinIntervalSeconds * 1000 });
    live.agents = agents;
    await agents.refresh();
    // Push: agents' WatchChanges streams, told of the entry, agent and bundle changes this server applies.
    const changes = new ChangeNotifier({ clock, logger: logger.child({ subsystem: 'watch' }), maxStreams: config.watchMaxStreams, events: telemetry.watchEvents });
    live.changes = changes;
    entries.observe(changes);
    agents.onChange((ids) => changes.reauthenticate(ids));
    bundles.onChange(() => changes.bundleChanged());
    const tombstones = new TombstonePruner({ datastore, clock, retentionSeconds: config.tombstoneRetentionSeconds,
      revisions: () => ({ entries: entries.currentRevision, agents: agents.currentRevision }) });

    // TLS: the server presents its own X509-SVID and trusts the bundle's authorities for agent certificates.
    const tls = new InMemoryCertificateProvider();
    const serverId = serverSpiffeId(td);
    const serverKey = generateKeyPair('ec-p256');
    // The SVID the server presents, and when to re-key it (servingSvidDecision). A rotation does
    // not re-key it at once: the previous CA stays in every bundle until it expires, while the new
    // one may not have reached an agent that was partitioned when it was activated (a forced
    // rotation publishes and activates in one step). Re-keying then would lock such agents out;
    // keeping the old SVID lets them connect and fetch the new bundle.
    const serving: ServingSvid = { renewAtMs: 0, notAfterMs: 0 };
    const activeCaId = () => ca.status().find((s) => s.kind === 'x509' && s.phase === 'active')?.id;
    const renewServerSvid = () => {
      const now = clock.now();
      serving.caId = activeCaId();
      const minted = ca.x509Minter.mint({ id: serverId, publicKey: serverKey.publicKey, ttlSeconds: config.agentTtlSeconds, now, dnsNames: [] });
      const chain = [minted.der, ...ca.x509ChainTail].map((d) => encodePem('CERTIFICATE', d)).join('');
      tls.setIdentity(chain, serverKey.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
      serving.notAfterMs = minted.notAfter.getTime();
      serving.renewAtMs = now.getTime() + (minted.notAfter.getTime() - now.getTime()) / 2;
    };
    /** The hold last logged, so a withheld active CA is reported once rather than every tick. */
    let holdLogged: string | undefined;
    const checkServerSvid = () => {
      const decision = servingSvidDecision(ca.status(), serving, clock.nowMs(), 3 * config.cacheReloadSeconds * 1000);
      if (decision.action === 'hold') {
        const key = `${serving.caId}>${decision.activeCaId}`;
        if (holdLogged !== key) logger.warn({ servingCaId: serving.caId, activeCaId: decision.activeCaId, wanted: decision.wanted, notAfter: new Date(serving.notAfterMs).toISOString() },
          'server X509-SVID not re-keyed: the active X.509 CA is withheld from the bundle, so no agent could authenticate an SVID it signs; publish it again');
        holdLogged = key;
        return;
      }
      holdLogged = undefined;
      if (decision.action === 'renew') {
        renewServerSvid();
        if (decision.reason === 'authority-gone' || decision.reason === 'expiring') logger.info({ reason: decision.reason, servingCaId: serving.caId, notAfter: new Date(serving.notAfterMs).toISOString() }, 'server X509-SVID re-keyed');
      }
    };
    checkServerSvid();
    tls.setTrustAnchors(x509BundleToPem(bundles.current));
    bundles.onChange((b) => tls.setTrustAnchors(x509BundleToPem(b)));

    // Issuance on every core: the pool gets the active CA in memory and follows every activation.
    const signingPool = new SigningPool({ size: config.signingWorkers, signer: () => ca.x509Signer, minter: () => ca.x509Minter, logger: logger.child({ subsystem: 'signing' }),
      testHooks: deps.signingPoolTestHooks, workerRestarted: () => telemetry.signingWorkerRestarted() });
    live.signingPool = signingPool;
    cleanups.push(() => signingPool.stop());
    const { node, admin } = serverServices();
    // Keepalive pings find dead peers of idle watch streams (an agent gone without a FIN) at no cost in between.
    const nodeServer = new grpc.Server({ ...GRPC_BASE_OPTIONS, 'grpc.keepalive_time_ms': WATCH_KEEPALIVE_MS, 'grpc.keepalive_timeout_ms': WATCH_KEEPALIVE_TIMEOUT_MS });
    nodeServer.addService(node, createNodeService({ trustDomain: td, datastore, bundleCache, ca, bundles, entries, agents, clock, logger: logger.child({ subsystem: 'api' }),
      ttl: { defaultX509SvidSeconds: config.defaultX509SvidTtlSeconds, defaultJwtSvidSeconds: config.defaultJwtSvidTtlSeconds, agentSeconds: config.agentTtlSeconds },
      agentRenewalGraceSeconds: config.agentRenewalGraceSeconds, jwtAudience: config.jwtAudience, signingQueueMaxCsrs: config.signingQueueMaxCsrs, signingPool,
      observe: telemetry.observe('node'), events: telemetry.nodeEvents, tracer: deps.tracer,
      // watch_max_streams 0 turns push off: WatchChanges answers UNIMPLEMENTED, which agents retry only rarely.
      changes: config.watchMaxStreams > 0 ? changes : undefined }));
    const credentials = withH2AlpnCallback(grpc.experimental.createCertificateProviderServerCredentials(tls, tls, false));
    const { host, port } = checkHostPort(config.bind, 'bind');
    const boundPort = await bindAsync(nodeServer, `${host.includes(':') ? `[${host}]` : host}:${port}`, credentials);
    cleanups.push(() => shutdown(nodeServer));
    cleanups.push(() => changes.closeAll()); // open streams would hold the graceful shutdown for its whole grace
    const address = `${host}:${boundPort}`;

    // Federation: the bundle endpoint and the refreshers of federated bundles (stopped before the datastore closes).
    const federation = await startFederation({ config: config.federation, trustDomain: td, datastore, ca, bundles, clock, logger: logger.child({ subsystem: 'federation' }),
      dataDir: config.dataDir, bundleRefreshHintSeconds: config.bundleRefreshHintSeconds, metrics: { limitHit: (limit) => telemetry.nodeEvents.limitHit?.(limit) } });
    cleanups.push(() => federation.stop());
    if (!deps.withoutMetrics) registerFederationMetrics(registry, federation, clock);

    const adminServer = new grpc.Server(GRPC_BASE_OPTIONS);
    const adminLogger = logger.child({ subsystem: 'admin' });
    const adminSocket: { served?: AdminSocket } = {};
    adminServer.addService(admin, {
      ...createAdminService({ trustDomain: td, datastore, ca, bundles, entries, agents, clock, logger: adminLogger, maxSvidTtlSeconds: config.ca.ttlSeconds, observe: telemetry.observe('admin'), events: telemetry.adminEvents,
        peerOf: (call) => adminSocket.served?.peerOf(call) }),
      ...createFederationHandlers({ federation, logger: adminLogger, observe: telemetry.observe('admin') }),
    });
    prepareSocketPath(config.adminSocket);
    const served = await listenAdminSocket(adminServer, config.adminSocket, adminLogger);
    adminSocket.served = served;
    cleanups.push(async () => {
      served.close();
      await shutdown(adminServer);
      rmSync(config.adminSocket, { force: true });
    });

    /** The federated bundles as of the last tick (undefined before the first). */
    let federatedSeen: string | undefined;
    const tick = async () => {
      await bundles.sync();
      await entries.refresh();
      await agents.refresh();
      changes.checkDue(); // renewal grace windows and SVID lifetimes end without a feed change
      bundleCache.invalidate(); // federated bundles written by other servers sharing the datastore
      // A federated bundle that moved (refreshed here or by another server) is pushed like the own
      // one: agents whose stream is up poll only every push_sync_interval.
      const federated = (await bundleCache.list()).filter((b) => b.trustDomain !== td.name).map((b) => `${b.trustDomain}@${b.sequence}@${b.updatedAt.getTime()}`).sort().join(' ');
      if (federatedSeen !== undefined && federated !== federatedSeen) changes.bundleChanged();
      federatedSeen = federated;
      await datastore.pruneJoinTokens(clock.now());
      const pruned = await tombstones.run();
      if (pruned.entries + pruned.agents > 0) logger.info(pruned, 'pruned tombstones older than tombstone_retention');
      checkServerSvid();
    };
    let stopped = false;
    let loopTimer: { id: number } | undefined;
    const loop = () => {
      loopTimer = clock.setTimeout(() => {
        tick().catch((err: unknown) => logger.error({ err }, 'periodic server work failed; retrying'))
          .finally(() => {
            if (!stopped) loop();
          });
      }, config.cacheReloadSeconds * 1000);
    };
    loop();
    cleanups.push(() => {
      stopped = true;
      if (loopTimer) clock.clearTimeout(loopTimer);
    });

    let opsUrl: string | undefined;
    if (config.healthBind) {
      const ops = checkHostPort(config.healthBind, 'health_bind');
      const health = async () => {
        const ds = await datastore.health();
        const hasCa = ca.status().some((s) => s.kind === 'x509' && s.phase === 'active' && s.notAfter > clock.nowMs());
        return { ok: ds.ok && hasCa, checks: { datastore: ds.ok ? 'ok' : (ds.error ?? 'unhealthy'), ca: hasCa ? 'ok' : 'no active X.509 CA' } };
      };
      const opsServer = await startOpsServer({ host: ops.host, port: ops.port, registry, logger, live: async () => ({ ok: true, checks: { process: 'ok' } }), ready: health });
      opsUrl = opsServer.url;
      cleanups.push(() => opsServer.close());
    }
    logger.info({ trustDomain: td.name, address, adminSocket: config.adminSocket, opsUrl }, 'server started');

    return {
      address, adminSocket: config.adminSocket, opsUrl, datastore, ca, bundles, signingPool, tick, bundleEndpointUrl: federation.endpointUrl,
      stop: async () => {
        for (const c of cleanups.reverse()) await c();
        cleanups.length = 0;
        logger.info('server stopped');
      },
    };
  } catch (err) {
    for (const c of cleanups.reverse()) await c();
    throw err;
  }
}

function loadUpstream(files: { certFile: string; keyFile: string }): UpstreamAuthority {
  const certificate = parseCertificates(readFileSync(files.certFile))[0];
  const privateKey = parsePrivateKey(readFileSync(files.keyFile));
  if (!certificate.checkPrivateKey(privateKey)) throw new SvidscopeError('ca-key-mismatch', `ca: upstream key ${files.keyFile} does not match ${files.certFile}`);
  if (!certificate.ca) throw new SvidscopeError('config-invalid', `ca: upstream certificate ${files.certFile} is not a CA`);
  return { certificate: new X509Certificate(certificate.raw), privateKey };
}

/** A socket file left by a crashed process must not block a restart; its directory is owner-only. */
export function prepareSocketPath(socket: string): void {
  mkdirSync(path.dirname(socket), { recursive: true, mode: 0o700 });
  if (existsSync(socket)) rmSync(socket, { force: true });
}

export function bindAsync(server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(address, credentials, (err, port) => (err ? reject(new SvidscopeError('io-error', `cannot listen on ${address}: ${err.message}`, { cause: err })) : resolve(port))),
  );
}

export function shutdown(server: grpc.Server, graceMs = 5000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
