/** Every file the monitoring mixin generates, with its renderer (committed; `npm run generate` writes them). */
import { resolveConfig, type ConfigOverrides } from './config.js';
import { renderAlertmanagerConfig } from './alertmanager.js';
import { dashboards, renderDashboard } from './dashboards/index.js';
import { renderAlertingRules, renderRecordingRules } from './rules.js';
import { renderRunbook, renderRunbookIndex, runbookAlerts } from './runbooks.js';

export const RULE_FILES = { recording: 'alerts/svidscope-recording-rules.yaml', alerting: 'alerts/svidscope-alerts.yaml' } as const;
export const ALERTMANAGER_FILE = 'alerts/alertmanager.yml';

export function monitoringArtefacts(overrides: ConfigOverrides = {}): { file: string; render: () => string }[] {
  const c = resolveConfig(overrides);
  return [
    { file: RULE_FILES.recording, render: () => renderRecordingRules(c) },
    { file: RULE_FILES.alerting, render: () => renderAlertingRules(c) },
    { file: ALERTMANAGER_FILE, render: () => renderAlertmanagerConfig(c) },
    ...dashboards(c).map((d) => ({ file: `dashboards/${d.file}`, render: () => renderDashboard(d.dashboard) })),
    { file: 'runbooks/README.md', render: () => renderRunbookIndex(c) },
    ...runbookAlerts(c).map((a) => ({ file: `runbooks/${a}.md`, render: () => renderRunbook(c, a) })),
  ];
}
