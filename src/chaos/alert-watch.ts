import type { Clock } from '../common/clock.js';
import type { Experiment, ExpectedAlert } from './experiment/schema.js';
import type { AlertRecord, Journal } from './journal.js';
import { sleep } from './proc.js';
import type { AlertmanagerClient, PrometheusClient } from './prometheus.js';

/** Clock slack when telling alerts raised by this run from older ones (Prometheus and the harness share a host). */
const ACTIVE_AT_SLACK_MS = 2000;

type WatchedAlert = AlertRecord & { spec: ExpectedAlert };

/**
 * The expected alerts of one run: checked before the method, polled from the first injection to
 * the end of the run, and judged against their windows at the end.
 */
export class AlertWatch {
  private readonly alerts: WatchedAlert[];
  /** Epoch milliseconds of the run's first injection; alert delays count from it. */
  firstInjection: number | undefined;
  private polling = false;
  private pollerDone = false;
  private poller: Promise<void> | undefined;

  constructor(
    private readonly exp: Experiment,
    private readonly prometheus: PrometheusClient | undefined,
    private readonly alertmanager: AlertmanagerClient | undefined,
    private readonly progress: (line: string) => void,
    private readonly clock: Clock,
  ) {
    this.alerts = exp.expectedAlerts.map((a) => ({ spec: a, name: a.name, labels: a.labels, within_seconds: a.withinMs / 1000, fired: false, checked_alertmanager: !!alertmanager }));
  }

  /**
   * Before anything is injected: every expected alert must be loaded in Prometheus with a `for`
   * that fits its window (production rules wait minutes; `svidscope up --alert-profile gameday`
   * loads rules made for rehearsals), else the run could only deviate.
   */
  async preflight(): Promise<string[]> {
    if (!this.prometheus || this.alerts.length === 0) return [];
    const rules = await this.prometheus.alertRules();
    const problems: string[] = [];
    for (const a of this.alerts) {
      const rule = rules.get(a.name);
      if (!rule) problems.push(`expected alert ${a.name} is not loaded in Prometheus (${this.prometheus.url}): load alerts/svidscope-alerts.yaml`);
      else {
        a.for_seconds = rule.forSeconds;
        if (rule.forSeconds >= a.within_seconds) problems.push(`expected alert ${a.name} waits for: ${rule.forSeconds}s in Prometheus but must fire within ${a.within_seconds}s: it cannot fire in time (run the stack with \`svidscope up --alert-profile gameday\`, or raise \`within\`)`);
      }
    }
    return problems;
  }

  /** Expected alerts still pending or firing from an earlier run: the names, empty when all are quiet. */
  async noisy(): Promise<string[]> {
    if (!this.prometheus) return [];
    const noisy: string[] = [];
    for (const a of this.alerts) if ((await this.prometheus.alerts(a.name, a.labels).catch(() => [])).length > 0) noisy.push(a.name);
    return noisy;
  }

  /** Records the first injection (later ones keep it) and starts polling. */
  injected(): void {
    this.firstInjection ??= this.clock.nowMs();
    this.startPoller();
  }

  async poll(): Promise<void> {
    if (this.firstInjection === undefined || !this.prometheus || this.polling) return;
    this.polling = true;
    try {
      await this.pollOnce(this.firstInjection, this.prometheus);
    } finally {
      this.polling = false;
    }
  }

  allFired(): boolean {
    return this.alerts.length > 0 && this.alerts.every((a) => this.reported(a));
  }

  /** Every expected alert either fired or had its whole window. */
  settled(): boolean {
    return this.alerts.every((a) => this.reported(a) || (this.firstInjection !== undefined && this.clock.nowMs() - this.firstInjection > a.spec.withinMs));
  }

  /** Stops the background poller and waits for its last round. */
  async stop(): Promise<void> {
    this.pollerDone = true;
    await this.poller;
  }

  /** Marks each alert fired or not and, for a completed run, deviates it for each one that did not fire in time. */
  judge(journal: Journal): void {
    for (const a of this.alerts) {
      a.fired = a.prometheus_delay_seconds !== undefined && a.prometheus_delay_seconds <= a.within_seconds
        && (!this.alertmanager || (a.alertmanager_delay_seconds !== undefined && a.alertmanager_delay_seconds <= a.within_seconds));
      if (journal.status === 'completed' && !a.fired) {
        journal.deviated = true;
        journal.reasons.push(`expected alert ${a.name} did not fire within ${a.within_seconds}s (Prometheus: ${fmt(a.prometheus_delay_seconds)}, Alertmanager: ${this.alertmanager ? fmt(a.alertmanager_delay_seconds) : 'not checked'})`);
      }
    }
    journal.alerts = this.alerts.map(({ spec: _spec, ...a }) => a);
  }

  private reported(a: WatchedAlert): boolean {
    return a.prometheus_delay_seconds !== undefined && (!this.alertmanager || a.alertmanager_delay_seconds !== undefined);
  }

  // An alert counts for this run only if it became active after the first injection (less a little
  // clock slack): one still going from an earlier experiment proves nothing about this fault.
  private raisedByThisRun(activeAt: Date): boolean {
    return this.firstInjection !== undefined && activeAt.getTime() >= this.firstInjection - ACTIVE_AT_SLACK_MS;
  }

  private async pollOnce(injectedAt: number, prometheus: PrometheusClient): Promise<void> {
    const since = (this.clock.nowMs() - injectedAt) / 1000;
    for (const a of this.alerts) {
      try {
        if (a.prometheus_delay_seconds === undefined && (await prometheus.alerts(a.name, a.labels)).some((x) => x.state === 'firing' && this.raisedByThisRun(x.activeAt))) {
          a.prometheus_delay_seconds = since;
          this.progress(`alert ${a.name} firing in Prometheus after ${since.toFixed(0)}s`);
        }
        if (this.alertmanager && a.alertmanager_delay_seconds === undefined) {
          const am = (await this.alertmanager.alerts(a.name)).filter((x) => x.status.state === 'active' && this.raisedByThisRun(new Date(x.startsAt)) && Object.entries(a.labels).every(([k, v]) => x.labels[k] === v));
          if (am.length > 0) {
            a.alertmanager_delay_seconds = since;
            this.progress(`alert ${a.name} received by Alertmanager after ${since.toFixed(0)}s`);
          }
        }
      } catch (err) {
        this.progress(`alert check failed: ${(err as Error).message}`);
      }
    }
  }

  // Alerts are polled on their own loop from the first injection to the end of the run, so their
  // delays stay exact while the harness waits on a slow rollback (e.g. admin calls to a starved server).
  private startPoller(): void {
    if (this.poller || !this.prometheus || this.alerts.length === 0) return;
    this.poller = (async () => {
      while (!this.pollerDone) {
        await this.poll();
        await sleep(this.exp.runtime.pollIntervalMs, undefined, this.clock);
      }
    })();
  }
}

const fmt = (s: number | undefined) => (s === undefined ? 'never' : `${s.toFixed(0)}s`);
