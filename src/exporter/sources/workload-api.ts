/**
 * A Workload API socket the exporter may call (standard proto only, so it works against SPIRE's
 * agents too). Two long-lived watches instead of polling: FetchX509SVID (the SVIDs this exporter's
 * identity is entitled to, with its own and federated X.509 bundles) and, optionally,
 * FetchJWTBundles. Reconnects follow go-spiffe's retry table; a PermissionDenied on a live stream
 * redacts what the source held, as the standard says.
 */
import * as grpc from '@grpc/grpc-js';
import type { TimerHandle } from '../../common/clock.js';
import type { BundleSet } from '../../identity-plane/spiffe/bundle/index.js';
import { createWorkloadApiClient, watchWithRetry, type WatchHandle, type WorkloadApiClient, type WorkloadApiError, type X509Context } from '../../identity-plane/workload-api/index.js';
import type { WorkloadApiSourceConfig } from '../config.js';
import type { ObservedBundle, ObservedSvid } from '../state.js';
import { authorityOf, reasonOf, svidOf } from './convert.js';
import type { Source, SourceContext } from './types.js';

export function createWorkloadApiSource(config: WorkloadApiSourceConfig, ctx: SourceContext): Source {
  let client: WorkloadApiClient | undefined;
  const watches: WatchHandle[] = [];
  const timers = new Set<TimerHandle>();
  let stopped = false;
  let svids: ObservedSvid[] | undefined;
  let x509 = new Map<string, ObservedBundle['x509']>();
  let jwt = new Map<string, string[]>();

  const publish = (): void => {
    const tds = new Set([...x509.keys(), ...jwt.keys()]);
    // The agent's own trust domain is its SVIDs' (federated bundles are the others); unknown without an SVID.
    const own = svids?.[0]?.trustDomain;
    const bundles: ObservedBundle[] = [...tds].map((td) => ({
      trustDomain: td,
      x509: x509.get(td),
      jwtKeyIds: config.jwtBundles ? jwt.get(td) : undefined,
      federated: own === undefined ? undefined : td !== own,
    }));
    ctx.observe({ svids: svids ?? [], bundles });
  };

  const onX509 = (c: X509Context): void => {
    svids = [];
    for (const s of c.svids) {
      const o = svidOf(`${s.id.toString()}#${s.hint}`, s.certificates[0], s.id.toString());
      if (o) svids.push(o);
    }
    x509 = new Map(c.bundles.bundles().map((b) => [b.trustDomain.name, b.x509Authorities.map(authorityOf)]));
    publish();
  };

  const onJwt = (set: BundleSet): void => {
    jwt = new Map(set.bundles().map((b) => [b.trustDomain.name, [...b.jwtAuthorities.keys()]]));
    publish();
  };

  const onError = (stream: 'x509' | 'jwt') => (err: WorkloadApiError): void => {
    if (stopped) return;
    if (err.status === grpc.status.PERMISSION_DENIED) {
      // The standard: a PermissionDenied on a live stream means everything it delivered is withdrawn.
      if (stream === 'x509') {
        svids = [];
        x509 = new Map();
      } else jwt = new Map();
      publish();
    }
    ctx.fail(reasonOf(err), err);
    ctx.logger.warn({ source: config.name, stream, code: err.code, status: err.statusName, msg: err.message }, 'Workload API stream error; reconnecting');
  };

  function watch<T>(open: (u: (v: T) => void, e: (err: WorkloadApiError) => void) => WatchHandle, onUpdate: (v: T) => void, stream: 'x509' | 'jwt'): void {
    const handle = watchWithRetry<T>(open, onUpdate, onError(stream), { clock: ctx.clock });
    watches.push(handle);
    // A stop-with-error (InvalidArgument) ends go-spiffe's loop; the exporter tries again after its interval.
    void handle.done.then((err) => {
      if (stopped || err === undefined) return;
      const t = ctx.clock.setTimeout(() => {
        timers.delete(t);
        if (!stopped) watch(open, onUpdate, stream);
      }, config.intervalSeconds * 1000);
      timers.add(t);
    });
  }

  return {
    name: config.name,
    start() {
      client = createWorkloadApiClient({ address: config.address });
      const c = client;
      watch<X509Context>((u, e) => c.watchX509Context(u, e), onX509, 'x509');
      if (config.jwtBundles) watch<BundleSet>((u, e) => c.watchJwtBundles(u, e), onJwt, 'jwt');
    },
    async stop() {
      stopped = true;
      for (const t of timers) ctx.clock.clearTimeout(t);
      for (const w of watches) w.close();
      client?.close();
    },
  };
}
