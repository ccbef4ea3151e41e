// The agent's Workload API request and limit series exist at 0 from start: a first burst of
// failures (or refusals) that ends between two scrapes is then an increase to the Workload API SLO,
// SvidscopeWorkloadApiErrors and the limit counters, not a series first scraped already holding it.
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/common/clock.js';
import { createRegistry } from '../../src/common/telemetry/registry.js';
import { WORKLOAD_API_SERVER_ERROR_CODES } from '../../src/common/telemetry/names.js';
import { WORKLOAD_API_METHODS } from '../../src/identity-plane/agent/endpoints/workload-handler.js';
import { createAgentTelemetry } from '../../src/identity-plane/agent/telemetry.js';

describe('agent Workload API series at start', () => {
  it('holds every method\'s OK and agent-failure request series, and every limit, at 0', async () => {
    const registry = createRegistry();
    createAgentTelemetry(registry, new FakeClock(), { manager: () => undefined, cache: () => undefined });
    const requests = (await registry.getSingleMetric('svidscope_agent_workload_api_requests_total')!.get()).values;
    expect(requests.every((v) => v.value === 0)).toBe(true);
    const seen = new Set(requests.map((v) => `${v.labels.method}/${v.labels.code}`));
    expect(WORKLOAD_API_SERVER_ERROR_CODES).toContain('INTERNAL');
    for (const method of WORKLOAD_API_METHODS) for (const code of ['OK', ...WORKLOAD_API_SERVER_ERROR_CODES]) expect(seen.has(`${method}/${code}`), `${method}/${code}`).toBe(true);
    const limits = (await registry.getSingleMetric('svidscope_agent_limit_refusals_total')!.get()).values;
    expect(limits.map((v) => v.labels.limit).sort()).toEqual(['jwt_audience_max_bytes', 'jwt_audience_max_count', 'workload_api_max_request_bytes', 'workload_api_max_streams_per_connection']);
    expect(limits.every((v) => v.value === 0)).toBe(true);
  });
});
