export { buildExporterConfig, parseSourceFlag, DEFAULT_LISTEN, SOURCE_TYPES, type ExporterConfig, type ExporterFlags, type SourceConfig, type SourceType } from './config.js';
export { createExporter, startExporter, type Exporter, type ExporterDeps, type RunningExporter } from './exporter.js';
export { METRIC, KINDS, ERROR_REASONS, LIFETIME_BUCKETS, LAG_BUCKETS, type CredentialKind, type ErrorReason } from './names.js';
export type { RenderResult } from './render.js';
export { ExporterState, type ObservedBundle, type ObservedSvid, type ObservedCoverage, type SourceSnapshot } from './state.js';
export type { AdminApi, AdminConnector } from './sources/server-admin.js';
