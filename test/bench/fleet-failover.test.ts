/**
 * The fleet simulator's failover run at a tiny size: two server processes on one PostgreSQL, one
 * SIGKILLed mid-window. Checks what the run reports (every agent of the killed server moved to the
 * survivor, no call failed after the kill, each sync that moved answered within the sync interval;
 * no SVID lapsed or missing), not how fast anything was.
 */
import { describe, expect, it } from 'vitest';
import fleet from '../../bench/fleet.bench.js';
import { postgresUrl } from '../support/postgres.js';

const url = postgresUrl('the fleet failover run');

if (url) {
  describe('fleet simulator, two servers on PostgreSQL, one killed', () => {
    it('moves every agent of the killed server to the survivor without losing an SVID', async () => {
      const lines: string[] = [];
      const f = await fleet({ log: (l) => lines.push(l), args: ['--from-source', '--agents', '6', '--entries-per-agent', '2', '--servers', '2', '--datastore', 'postgres', '--postgres-url', url,
        '--duration', '5', '--sync-interval', '2', '--churn', '1', '--kill-one-at', '1.5', '--rotate-ca-at=-1', '--setup-timeout', '60'] });
      const context = lines.join('\n');
      expect(f, context).toMatchObject({ attested: 6, converged: true, killedServerAgents: 3, agentsFailedOver: 3, callsFailedAfterKill: 0,
        svidsLapsed: 0, agentsLostSvids: 0, failoverWithinSyncInterval: true });
      expect(f.svidsHeld, context).toBe(f.entriesHeld);
      expect(f.entriesHeld, context).toBe(f.entriesExpected);
    }, 120_000);
  });
}
