import type { Command } from 'commander';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../common/fs/atomic.js';
import { createLogger } from '../../common/log.js';
import { encodePem } from '../../identity-plane/spiffe/x509/index.js';
import { createWorkloadApiClient, watchWithRetry, type X509Context } from '../../identity-plane/workload-api/index.js';
import type { Io } from '../output.js';
import { withErrors } from '../run.js';
import { waitForShutdownSignal } from '../signals.js';

/**
 * `svidscope workload sample`: a stand-in workload for `svidscope up` and game days. It keeps a
 * FetchX509SVID stream open like any SPIFFE-aware service, logs every update (rotation, bundle
 * change) and optionally writes its current SVID, key and bundle to a directory.
 */
export function registerSampleWorkload(program: Command, io: Io): void {
  const workload = program.command('workload').description('sample workloads for demos and game days');
  workload.command('sample').description('hold a Workload API stream open, log each update, optionally write the SVID to a directory')
    .option('--socket-path <path>', 'Workload API socket (default $SPIFFE_ENDPOINT_SOCKET)')
    .option('--write <dir>', 'write svid.pem, svid.key (0600) and bundle.pem on every update')
    .option('--name <name>', 'a name for the logs', 'workload')
    .action(withErrors(io, async (f: { socketPath?: string; write?: string; name: string }) => {
      const logger = createLogger({ name: f.name });
      const client = createWorkloadApiClient(f.socketPath ? { address: `unix://${path.resolve(f.socketPath)}` } : {});
      let updates = 0;
      const onUpdate = (ctx: X509Context) => {
        updates++;
        const svid = ctx.svids[0];
        const leaf = svid.certificates[0];
        logger.info({ spiffeId: svid.id.toString(), serial: leaf.serialNumber, notAfter: new Date(leaf.validTo).toISOString(), updates, trustDomains: ctx.bundles.bundles().map((b) => b.trustDomain.name) }, 'received X509-SVID update');
        if (f.write) {
          mkdirSync(f.write, { recursive: true });
          writeFileAtomic(path.join(f.write, 'svid.pem'), svid.certificates.map((c) => encodePem('CERTIFICATE', c.raw)).join(''), 0o644);
          writeFileAtomic(path.join(f.write, 'svid.key'), svid.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
          const own = ctx.bundles.getBundleForTrustDomain(svid.id.trustDomain);
          writeFileAtomic(path.join(f.write, 'bundle.pem'), (own?.x509Authorities ?? []).map((a) => encodePem('CERTIFICATE', a.der)).join(''), 0o644);
        }
      };
      // Reconnect per the standard's retry table (PermissionDenied may be eventual consistency).
      const watch = watchWithRetry<X509Context>((u, e) => client.watchX509Context(u, e), onUpdate,
        (err) => logger.warn({ code: err.code, status: err.statusName, msg: err.message }, 'Workload API stream error; retrying with backoff'));
      // Retry timers do not hold the process open (the clock unrefs them); this does, until a signal.
      const keepAlive = setInterval(() => undefined, 1 << 30);
      await Promise.race([waitForShutdownSignal(logger), watch.done]);
      clearInterval(keepAlive);
      watch.close();
      client.close();
    }));
}
