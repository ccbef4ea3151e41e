/**
 * x509_svid: what a workload does at start. Connect to the Workload API, take the first
 * FetchX509SVID message (time to first message), then validate the SVID per X509-SVID against the
 * bundle of its own trust domain from the same message, and check identity and remaining lifetime.
 */
import type { X509SvidSettings } from '../config.js';
import { workloadClient, type ProbeContext } from '../context.js';
import { classifyError } from '../reasons.js';
import type { ProbeRun } from '../result.js';
import { checkX509Svid, selectSvid } from './x509-checks.js';

export async function probeX509Svid(run: ProbeRun, target: string, settings: X509SvidSettings, ctx: ProbeContext): Promise<void> {
  const client = workloadClient(target, ctx);
  const context = await run.phase('first_message', () =>
    run.check('fetch X509-SVID', () => client.fetchX509Context({ deadlineMs: ctx.remainingMs() }), (c) => `${c.svids.length} SVID(s), bundles for ${c.bundles.bundles().map((b) => b.trustDomain.name).join(', ')}`, classifyError),
  );
  client.close();
  await run.phase('validate', () => {
    let svid;
    try {
      svid = selectSvid(context, settings.expectedSpiffeId);
    } catch (err) {
      const { reason, message } = classifyError(err);
      return run.fail('select SVID', reason, message);
    }
    run.fact('spiffeId', svid.id.toString());
    run.fact('svids', context.svids.map((s) => s.id.toString()));
    const own = context.bundles.get(svid.id.trustDomain);
    run.gauge('probe_svid_x509_svids', 'X509-SVIDs in the Workload API answer.', context.svids.length);
    run.gauge('probe_svid_bundle_x509_authorities', 'X.509 authorities in the bundle of the SVID\'s trust domain.', own?.x509Authorities.length ?? 0);
    const life = checkX509Svid(run, svid, context.bundles, ctx.clock.now(), settings);
    run.fact('expiresAt', life.notAfter.toISOString());
    run.fact('remainingSeconds', Math.round(life.remainingSeconds * 10) / 10);
  });
}
