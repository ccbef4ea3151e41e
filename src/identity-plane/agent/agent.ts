import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Registry } from 'prom-client';
import type { Tracer } from '@opentelemetry/api';
import { systemClock, type Clock } from '../../common/clock.js';
import { startOpsServer } from '../../common/http/ops-server.js';
import { createRegistry } from '../../common/telemetry/registry.js';
import { isSvidscopeError } from '../../common/errors/catalog.js';
import { nullLogger, type Logger } from '../../common/log.js';
import { checkHostPort } from '../../common/net.js';
import { attestUnix, createUnixAttestorCaches, type Selector } from './attestor-workload/unix.js';
import type { AgentConfig } from './config.js';
import { H2GrpcServer } from './endpoints/h2-grpc-server.js';
import { createWorkloadHandler, workloadApiServerDefinition, type WorkloadAttestor, type WorkloadHandlerEvents } from './endpoints/workload-handler.js';
import { WorkloadCache } from './manager/cache.js';
import { AgentManager, type ManagerEvents } from './manager/manager.js';
import { effectiveMaxConnections, openFileLimit } from './peercred/limits.js';
import { listenWorkloadSocket } from './peercred/listener.js';
import { ServerClient } from '../server-api/node-client.js';
import { AgentSvidStore } from './svid-store.js';
import { createAgentTelemetry } from './telemetry.js';

export interface AgentDeps {
  clock?: Clock;
  logger?: Logger;
  registry?: Registry;
  /** Replaces kernel attestation (tests of the handler alone); production always uses peer credentials. */
  attestor?: WorkloadAttestor;
  managerEvents?: ManagerEvents;
  workloadEvents?: WorkloadHandlerEvents;
  /** From startTracing(); undefined = tracing off. */
  tracer?: Tracer;
}

export interface RunningAgent {
  readonly socketPath: string;
  readonly opsUrl: string | undefined;
  readonly manager: AgentManager;
  readonly cache: WorkloadCache;
  stop(): Promise<void>;
}

/**
 * The agent's composition root: attests to the server (or reuses its SVID on disk), syncs, and
 * serves the Workload API on a Unix socket whose callers are identified from the kernel.
 */
export async function startAgent(config: AgentConfig, deps: AgentDeps = {}): Promise<RunningAgent> {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? nullLogger();
  const registry = deps.registry ?? createRegistry();
  const live: { manager?: AgentManager; cache?: WorkloadCache; socket?: Awaited<ReturnType<typeof listenWorkloadSocket>> } = {};
  const telemetry = createAgentTelemetry(registry, clock, { manager: () => live.manager, cache: () => live.cache, workloadConnections: () => live.socket?.connections });
  const managerEvents = combine(telemetry.managerEvents, deps.managerEvents);
  const workloadEvents = combine(telemetry.workloadEvents, deps.workloadEvents);
  // The data dir may hold the public socket directory; private material lives in a 0700 subdirectory.
  mkdirSync(config.dataDir, { recursive: true, mode: 0o755 });

  // An evicted entry's SVID is minted when a workload asks for it (first fetch waits for the mint).
  const cache = new WorkloadCache(clock, config.x509SvidCache, { evicted: telemetry.cacheEvents.evicted, wanted: (ids) => live.manager?.mintOnDemand(ids) });
  telemetry.cacheEvents.maxSize(config.x509SvidCache.maxSize);
  const server = new ServerClient({ addresses: config.serverAddresses, trustDomain: config.trustDomain, logger, insecureBootstrap: config.insecureBootstrap, onFailover: telemetry.serverFailover });
  const manager = new AgentManager({ config, clock, logger: logger.child({ subsystem: 'manager' }), server, cache, store: new AgentSvidStore(path.join(config.dataDir, 'private')), events: managerEvents, tracer: deps.tracer });
  Object.assign(live, { manager, cache });
  const cleanups: (() => Promise<void> | void)[] = [() => cache.close(), () => server.close(), () => manager.stop()];
  try {
    await manager.start();

    // Any call reaching a handler is the connection's first request: its deadline is lifted.
    const grpcServer = new H2GrpcServer({
      onCall: (call) => live.socket?.requestArrived(call),
      onLimit: (limit) => workloadEvents.limitHit?.(limit),
    });
    const attestorCaches = createUnixAttestorCaches({ clock });
    // Calls that arrive on one connection while its caller is being attested share that
    // attestation: a workload opening many streams at once costs one attestation, not one each.
    // A call only joins one still running, whose liveness and exec checks come after the call arrived.
    // The attestation starts once the event loop has handled the I/O it is in (setImmediate), so
    // that every call of a burst read from the connection together joins it: without the wait,
    // each call's attestation ended before the next call of the same read was dispatched.
    const attesting = new WeakMap<object, Promise<Selector[]>>();
    const afterThisRead = () => new Promise<void>((resolve) => setImmediate(resolve));
    const attestor: WorkloadAttestor = deps.attestor ?? {
      attest: async (call) => {
        const caller = live.socket!.callerOf(call);
        let pending = attesting.get(caller);
        if (!pending) {
          pending = afterThisRead()
            .then(() => attestUnix(caller, { discoverWorkloadPath: config.discoverWorkloadPath, workloadSizeLimit: config.workloadSizeLimit, clock, caches: attestorCaches }))
            .finally(() => attesting.delete(caller));
          attesting.set(caller, pending);
        }
        try {
          return await pending;
        } catch (err) {
          if (isSvidscopeError(err) && err.code === 'workload-exec-after-connect') live.socket?.refused('exec_after_connect', caller.uid);
          throw err;
        }
      },
    };
    grpcServer.addService(workloadApiServerDefinition(), createWorkloadHandler({ cache, attestor, jwt: manager, jwtAudience: config.jwtAudience, clock, logger: logger.child({ subsystem: 'workload_api' }), events: workloadEvents, tracer: deps.tracer }));
    const nofile = openFileLimit();
    const total = effectiveMaxConnections(config.workloadApi.maxConnections, nofile);
    if (total.warning) logger.warn({ openFileLimit: nofile }, total.warning);
    const limits = { maxConnections: total.value, maxConnectionsPerUid: config.workloadApi.maxConnectionsPerUid, firstRequestTimeoutMs: config.workloadApi.firstRequestTimeoutMs };
    telemetry.socketEvents.limits(limits);
    const socket = await listenWorkloadSocket({ socketPath: config.socketPath, mode: config.socketMode, server: grpcServer, logger, clock, limits, onRefused: telemetry.socketEvents.refused });
    live.socket = socket;
    // Closing the socket also closes every connection handed to the gRPC server.
    cleanups.push(() => socket.close());

    let opsUrl: string | undefined;
    if (config.healthBind) {
      const ops = checkHostPort(config.healthBind, 'health_bind');
      const ready = async () => {
        const s = manager.status;
        const fresh = s.lastSyncSuccessMs > 0 && clock.nowMs() - s.lastSyncSuccessMs < Math.max(60_000, config.syncIntervalSeconds * 12_000);
        // A Workload API at its connection limit or out of descriptors turns callers away: not ready.
        const wapi = socket.health();
        return { ok: s.attested && fresh && wapi.ok, checks: { attested: s.attested ? 'ok' : 'not attested', sync: fresh ? 'ok' : 'no successful sync recently', workload_api: wapi.detail } };
      };
      const opsServer = await startOpsServer({ host: ops.host, port: ops.port, registry, logger, live: async () => ({ ok: true, checks: { process: 'ok' } }), ready });
      opsUrl = opsServer.url;
      cleanups.push(() => opsServer.close());
    }
    logger.info({ agentId: manager.status.agentId, socketPath: config.socketPath, opsUrl }, 'agent started');
    return {
      socketPath: config.socketPath, opsUrl, manager, cache,
      stop: async () => {
        for (const c of cleanups.reverse()) await c();
        cleanups.length = 0;
        logger.info('agent stopped');
      },
    };
  } catch (err) {
    for (const c of cleanups.reverse()) await c();
    throw err;
  }
}

/** Calls every hook set's function of the same name (telemetry plus any the caller injected). */
function combine<T extends object>(a: T, b: T | undefined): T {
  if (!b) return a;
  const out = { ...a } as Record<string, unknown>;
  for (const [k, fn] of Object.entries(b)) {
    const first = (a as Record<string, unknown>)[k];
    out[k] = typeof first === 'function' ? (...args: unknown[]) => { (first as (...x: unknown[]) => void)(...args); (fn as (...x: unknown[]) => void)(...args); } : fn;
  }
  return out as T;
}
