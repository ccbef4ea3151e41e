/** The svidscope monitoring mixin: config → rules, alerts, dashboards, runbooks, Alertmanager config; and the local Prometheus stack. */
export { defaultConfig, resolveConfig, type ConfigOverrides, type MonitoringConfig, type Severity } from './config.js';
export { monitoringArtefacts, RULE_FILES, ALERTMANAGER_FILE } from './artefacts.js';
export { allAlerts, alertNames, recordingGroups, alertGroups, renderAlertingRules, renderRecordingRules, type AlertRule, type RecordingRule } from './rules.js';
export { slos, type Slo } from './slos.js';
export { dashboards, dashboardSpecs, renderDashboard } from './dashboards/index.js';
export { alertmanagerConfig, renderAlertmanagerConfig } from './alertmanager.js';
export { startPrometheusStack, prometheusConfig, findBinaries, INSTALL_HINT, type PrometheusStack, type PrometheusStackOptions, type StackEndpoints } from './stack.js';
