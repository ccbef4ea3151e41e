export {
  buildModule,
  buildProberConfig,
  defaultModules,
  isModuleKind,
  loadProberConfig,
  parseModuleSettings,
  type BundleEndpointSettings,
  type JwtSvidSettings,
  type ModuleConfig,
  type MtlsSettings,
  type ProberConfig,
  type RotationWatchSettings,
  type TargetConfig,
  type X509SvidSettings,
} from './config.js';
export { renderProbeMetrics, probeGauges } from './exposition.js';
export { createProberMetrics, type ProberMetrics } from './metrics.js';
export { watchRotations, type RotationRecord, type RotationWatcher, type RotationWatcherEvents } from './modules/rotation-watch.js';
export { runProbe, type RunProbeOptions } from './probe.js';
export { startProber, type ProberDeps, type RunningProber } from './prober.js';
export { classifyError, FAILURE_REASONS, ProbeFailure, REASON_MEANING, type FailureReason } from './reasons.js';
export { formatReport, reportJson } from './report.js';
export { MODULE_KINDS, type ModuleKind, type ProbeCheck, type ProbeGauge, type ProbeResult } from './result.js';
