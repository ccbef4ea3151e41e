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
import { symptom, type AlertRule } from './rules.js';
import type { Runbook } from './runbooks.js';

export const SERVER_SATURATED = 'SvidscopeServerSaturated';

/** The server's admission refusals (limit label values of svidscope_server_limit_refusals_total). */
const ADMISSION = 'limit=~"signing_queue_max_csrs|expired_deadline"';

function queries(c: MonitoringConfig) {
  return {
    refusals: `sum by (${by(c, 'instance')}) (rate(${m(c, 'server', 'svidscope_server_limit_refusals_total', ADMISSION)}[5m]))`,
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
        ] },
    ],
  };
}
