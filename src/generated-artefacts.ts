import { renderErrorsDoc } from './common/errors/docs.js';
import { renderMetricsDoc } from './common/telemetry/docs.js';
import { monitoringArtefacts } from './monitoring/artefacts.js';

/** Every file generated from code, with its renderer. `npm run generate` writes them; a test checks them. */
export function generatedArtefacts(): { file: string; render: () => string }[] {
  return [
    { file: 'docs/errors.md', render: renderErrorsDoc },
    { file: 'docs/metrics.md', render: renderMetricsDoc },
    ...monitoringArtefacts(),
  ];
}
