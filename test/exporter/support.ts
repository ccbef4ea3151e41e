import type { Exporter } from '../../src/exporter/index.js';
import { parseSamples } from '../support/metrics.js';

/** One scrape of an in-process exporter: what it rendered, and the samples in it. */
export async function renderSamples(ex: Exporter, budgetMs?: number) {
  const r = await ex.render(budgetMs);
  return { ...r, series: parseSamples(r.body) };
}
