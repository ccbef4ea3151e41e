/**
 * Server capacity: the alert, runbook and dashboard row for an identity-plane server running out
 * of headroom. Saturation shows first as admission refusals (the signing queue bound, calls whose
 * deadline passed in the queue) and as agent sync latency creeping towards the sync interval;
 * both come before syncs fail outright, which the SLO burn alerts and SvidscopeAgentNotSyncing catch.
 */
import * as units from '@grafana/grafana-foundation-sdk/units';
import type { MonitoringConfig } from './config.js';
import type { RowSpec } from './dashboards/common.js';
import { f } from './dashboards/common.js';
import { by, humanDuration, m, num } from './promql.js';
import { forText, symptom, type AlertRule } from './rules.js';
import type { Runbook } from './runbooks.js';

export const SERVER_SATURATED = 'SvidscopeServerSaturated';
export const AGENTS_NOT_WATCHING = 'SvidscopeAgentsNotWatching';

/** The server's admission refusals (limit label values of svidscope_server_limit_refusals_total). */
const ADMISSION = 'limit=~"signing_queue_max_csrs|expired_deadline"';

function queries(c: MonitoringConfig) {
  return {
    refusals: `sum by (${by(c, 'instance')}) (rate(${m(c, 'server', 'svidscope_server_limit_refusals_total', ADMISSION)}[5m]))`,
    // Streams are summed over a trust domain's servers (each agent holds one, to whichever server
    // answers); attested agents are the largest view of one server (they share the datastore).
    watchCoverage: `sum by (${by(c)}) (${m(c, 'server', 'svidscope_server_watch_streams')})\n/ on (${by(c)})\nmax by (${by(c)}) (${m(c, 'server', 'svidscope_server_attested_agents', 'state="active"')})`,
    activeAgents: `max by (${by(c)}) (${m(c, 'server', 'svidscope_server_attested_agents', 'state="active"')})`,
    syncP99: `histogram_quantile(0.99, sum by (${by(c, 'instance', 'le')}) (rate(${m(c, 'server', 'svidscope_server_api_request_duration_seconds_bucket', 'service="node"', 'method="SyncAuthorizedEntries"')}[5m])))`,
  };
}

export function serverLoadAlerts(c: MonitoringConfig): AlertRule[] {
  const t = c.thresholds;
  const q = queries(c);
  const td = `{{ $labels.${c.trustDomainLabel} }}`;
  const cl = `{{ $labels.${c.clusterLabel} }}`;
  return [
    symptom(c, {
      alert: SERVER_SATURATED, severity: 'ticket',
      expr: `${q.refusals} > ${num(t.serverAdmissionRefusalsPerSecond)}\nor\n${q.syncP99} > ${num(t.serverSyncLatencySeconds)}`,
      signal: q.syncP99,
      summary: 'An svidscope server is saturated: it refuses or drops agent calls, or syncs are slow.',
      description: `Server {{ $labels.instance }} of trust domain ${td} (cluster ${cl}) is past its capacity: either it refuses or drops more than ${num(t.serverAdmissionRefusalsPerSecond)} agent calls per second (signing queue full or deadline passed in its queue; value in calls/s), or the p99 of SyncAuthorizedEntries is above ${num(t.serverSyncLatencySeconds)}s (value in seconds), both over 5 minutes. Agents still work from what they hold, but entry changes and rotations arrive late, and past this point syncs start to fail.`,
    }),
    symptom(c, {
      alert: AGENTS_NOT_WATCHING, severity: 'ticket',
      // Streams above zero: a trust domain whose servers run with push off (watch_max_streams 0) has none, by design.
      expr: `(${q.watchCoverage}) < ${num(t.serverWatchCoverageRatio)}\nand on (${by(c)}) ${q.activeAgents} >= ${num(t.serverWatchMinAgents)}\nand on (${by(c)}) sum by (${by(c)}) (${m(c, 'server', 'svidscope_server_watch_streams')}) > 0`,
      signal: q.watchCoverage,
      summary: 'Many agents of a trust domain hold no change stream: they fall back to polling.',
      description: `In trust domain ${td} (cluster ${cl}) only {{ $value | humanizePercentage }} of the active agents hold a WatchChanges stream to a server (threshold ${num(t.serverWatchCoverageRatio * 100)} %). The others still get every change, but at their next poll (sync_interval) instead of within a second: entry changes and taints reach them seconds later.`,
    }),
  ];
}

export function serverLoadRunbooks(c: MonitoringConfig): Record<string, Runbook> {
  const t = c.thresholds;
  const td = c.trustDomainLabel;
  return {
    [SERVER_SATURATED]: {
      meaning: `The server has more agent work than one process can do in time: over 5 minutes it refused or dropped more than ${num(t.serverAdmissionRefusalsPerSecond)} calls per second (\`signing_queue_max_csrs\` reached, or calls whose deadline passed while they waited), or the p99 of agent syncs rose above ${humanDuration(t.serverSyncLatencySeconds)}.`,
      impact: 'Agents keep serving the SVIDs and bundles they hold, but entry changes, rotations and CA changes reach them late; refused issuance batches are retried at the next sync. If the load keeps growing, syncs exceed their deadline and agents stop syncing (SvidscopeAgentNotSyncing).',
      confirm: [
        `\`sum by (instance, limit) (rate(svidscope_server_limit_refusals_total{job="svidscope-server"}[5m]))\` — which limit refuses (\`signing_queue_max_csrs\`: a signing backlog; \`expired_deadline\`: calls waited in the queue past their deadline).`,
        `\`histogram_quantile(0.99, sum by (instance, method, le) (rate(svidscope_server_api_request_duration_seconds_bucket{service="node"}[5m])))\` — which agent calls are slow.`,
        `\`rate(process_cpu_seconds_total{job="svidscope-server"}[5m])\` near 1 means the server's event loop is busy all the time (a Node process uses one core for its handlers).`,
        `\`sum by (${td}) (svidscope_server_attested_agents)\` and \`rate(svidscope_server_svids_issued_total[5m])\`: did the fleet or the issuance rate grow (a rollout, an entry change touching many agents, a forced CA rotation)?`,
        '`histogram_quantile(0.99, sum by (le, operation) (rate(svidscope_server_datastore_operation_duration_seconds_bucket[5m])))`: a slow datastore makes every call slower.',
      ],
      mitigate: [
        'A burst (CA rotation, mass entry change, agents restarting together): it settles by itself once the rotations are done; refused batches are retried at the next sync.',
        'Sustained: add a server on the same PostgreSQL datastore and spread the agents over the servers; give the server a dedicated core.',
        'Raise `signing_queue_max_csrs` only when the refusals come in short bursts and sync latency stays low: a longer queue turns refusals into late answers.',
        'Lengthen the agents\' sync interval or the SVID TTLs to lower the steady load.',
      ],
      escalate: 'Ticket to the identity-plane owners for capacity; page through the SLO burn alerts if issuance or the Workload API start failing.',
      verify: [
        'Refusals stop increasing and the SyncAuthorizedEntries p99 is under the threshold for 15 minutes (Server load row of the On-call dashboard).',
      ],
      experiment: {
        file: 'experiments/issuance-storm.yaml', what: '50 workloads start at once on agent-1 and all ask for SVIDs',
        proves: false,
        why: 'the game-day fleet is a few agents; saturating a server needs thousands of agents or a flood well beyond signing_queue_max_csrs, which `npm run bench -- fleet` and test/security/server-load.test.ts do, not a game day',
      },
    },
    [AGENTS_NOT_WATCHING]: {
      meaning: `Fewer than ${num(t.serverWatchCoverageRatio * 100)} % of a trust domain's active agents hold a change stream (WatchChanges) to a server, for ${forText(c, AGENTS_NOT_WATCHING)} or more, in a fleet of at least ${num(t.serverWatchMinAgents)} agents. Agents without one learn of entry changes, taints and bundle changes only at their next poll.`,
      impact: 'Nothing fails: polling (sync_interval, 5 s by default) still delivers every change. Propagation falls from well under a second to seconds, the time to clear a tainted authority grows by up to one sync interval, and the servers carry the fleet\'s full polling load.',
      confirm: [
        `\`sum by (${td}) (svidscope_server_watch_streams)\` against \`max by (${td}) (svidscope_server_attested_agents{state="active"})\`: how many agents are missing.`,
        '`sum by (limit) (rate(svidscope_server_limit_refusals_total{limit="watch_max_streams"}[5m]))` above 0: the servers refuse new streams (`watch-streams-exhausted`); the fleet outgrew `watch_max_streams`.',
        '`sum by (reason) (rate(svidscope_server_watch_streams_closed_total[5m]))`: streams the servers close (slow_consumer: agents that do not read; not_attested, banned, stale_serial: re-authentication).',
        '`sum by (instance) (svidscope_agent_push_stream_connected == 0)` on the agents, and their logs (`change stream ended`): a network path (proxy, load balancer, firewall) that cuts long-lived HTTP/2 streams shows as streams ending with `UNAVAILABLE` at a fixed age.',
      ],
      mitigate: [
        'Limit reached: raise `watch_max_streams` on the servers (each stream costs a few tens of KiB; see docs/security.md), or add a server.',
        'Streams cut by the network: allow long-lived HTTP/2 streams between agents and servers, or keep their idle timeout above the keepalive (5 minutes).',
        'Slow consumers: look at those agents\' CPU; a stream is dropped when 16 notifications wait unsent.',
      ],
      escalate: 'Ticket to the identity-plane owners; nothing is lost while agents poll.',
      verify: [
        'Streams climb back to the attested agents (Server load row, "Push: watch streams and notifications").',
      ],
      experiment: {
        file: 'experiments/issuance-storm.yaml', what: 'the game day\'s fleet',
        proves: false,
        why: 'the game-day fleet is three agents, under the alert\'s minimum fleet size; `npm run bench -- fleet --push on` shows the streams against the agents at fleet size',
      },
    },
  };
}

export function serverLoadRow(c: MonitoringConfig): RowSpec {
  const t = c.thresholds;
  return {
    title: 'Server load',
    panels: [
      { kind: 'timeseries', title: 'Admission refusals', unit: units.RequestsPerSecond, runbooks: [SERVER_SATURATED], redAbove: t.serverAdmissionRefusalsPerSecond,
        description: `Agent calls the server refused (signing queue full: signing_queue_max_csrs) or dropped (deadline passed before the work began: expired_deadline), per second; sustained above ${num(t.serverAdmissionRefusalsPerSecond)}/s the server is saturated.`,
        queries: [{ expr: `sum by (instance, limit) (rate(svidscope_server_limit_refusals_total${f(c, 'server', {}, ADMISSION)}[$__rate_interval]))`, legend: '{{instance}} {{limit}}' }] },
      { kind: 'timeseries', title: 'Agent sync latency p99', unit: units.Seconds, runbooks: [SERVER_SATURATED], redAbove: t.serverSyncLatencySeconds,
        description: `p99 of SyncAuthorizedEntries at the server; above ${num(t.serverSyncLatencySeconds)}s syncs approach the agents' sync interval.`,
        queries: [{ expr: `histogram_quantile(0.99, sum by (instance, le) (rate(svidscope_server_api_request_duration_seconds_bucket${f(c, 'server', {}, 'service="node"', 'method="SyncAuthorizedEntries"')}[$__rate_interval])))`, legend: '{{instance}}' }] },
      { kind: 'timeseries', title: 'Entry syncs by kind', unit: units.OpsPerSecond,
        description: 'Entry syncs the server answered per second: unchanged (the agent\'s view was current), incremental (only the changed entries and deleted ids sent) and full (the whole authorized list: first syncs, periodic consistency checks, agents of the first protocol). A rise in full syncs at fleet scale costs bandwidth and server time; with push, incremental syncs follow entry changes closely.',
        queries: [{ expr: `sum by (kind) (rate(svidscope_server_entry_syncs_total${f(c, 'server')}[$__rate_interval]))`, legend: '{{kind}}' }] },
      { kind: 'timeseries', title: 'Push: watch streams and notifications', unit: units.Short,
        description: 'Agents holding a change stream (WatchChanges) to each server, against the agents attested, and change notifications sent per second by reason (entries: only the agents that reach a changed entry; bundle: every stream). Streams well below the attested agents mean agents fall back to polling (watch_max_streams reached, or a network path that cuts long-lived streams); closed streams by reason show slow consumers and re-authentication.',
        queries: [
          { expr: `sum by (instance) (svidscope_server_watch_streams${f(c, 'server')})`, legend: '{{instance}} streams' },
          { expr: `sum by (instance) (svidscope_server_attested_agents${f(c, 'server', {}, 'state="active"')})`, legend: '{{instance}} agents' },
          { expr: `sum by (reason) (rate(svidscope_server_change_notifications_total${f(c, 'server')}[$__rate_interval]))`, legend: 'notifications/s {{reason}}' },
          { expr: `sum by (reason) (rate(svidscope_server_watch_streams_closed_total${f(c, 'server')}[$__rate_interval]))`, legend: 'closed/s {{reason}}' },
        ], runbooks: [AGENTS_NOT_WATCHING] },
      { kind: 'timeseries', title: 'Signing pool', unit: units.Short,
        description: 'Signing worker threads busy and idle (signing_workers) and batches of CSRs waiting for one. Every worker busy with batches waiting means issuance runs at the CPU ceiling; idle workers while calls are refused as overloaded (Admission refusals) mean the main thread, not signing, is the limit. Restarts are workers that died (each failed its batches, signing-worker-failed).',
        queries: [
          { expr: `sum by (instance, state) (svidscope_server_signing_workers${f(c, 'server')})`, legend: '{{instance}} {{state}}' },
          { expr: `sum by (instance) (svidscope_server_signing_queued_batches${f(c, 'server')})`, legend: '{{instance}} batches waiting' },
          { expr: `sum by (instance) (increase(svidscope_server_signing_worker_restarts_total${f(c, 'server')}[$__rate_interval]))`, legend: '{{instance}} restarts' },
        ] },
    ],
  };
}
