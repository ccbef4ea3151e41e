/**
 * Which tier each test file belongs to; vitest.config.ts builds one vitest project per tier from
 * this table, and test/tiers.unit.test.ts checks that every test file lands in exactly one.
 *
 * - unit: in-process only — no child processes, no listening sockets, no external tools
 *   (temporary files and SQLite are fine). Seconds in all.
 * - integration: one component with real sockets or processes, or an external tool (promtool,
 *   openssl, PostgreSQL, other uids).
 * - e2e: several svidscope components running together as processes (`svidscope up`, server +
 *   agent stacks, game days, federation between two domains, the monitoring stack).
 *
 * A file's tier is the first that applies: its path listed in `files`, its name ending in
 * `.<tier>.test.ts`, then the tier of its top-level folder under test/. A new test file in a
 * known folder therefore always runs; one in a new folder fails the tier check until listed here.
 * Files are named by what they test; the suffix is how a new file states a tier its folder's
 * default does not give.
 */
export const TIER_NAMES = ['unit', 'integration', 'e2e'] as const;
export type Tier = (typeof TIER_NAMES)[number];

/** Default tier of each top-level folder of test/ (mixed folders take their commonest tier). */
export const FOLDER_TIER: Record<string, Tier> = {
  agent: 'integration',
  bench: 'e2e',
  chaos: 'integration',
  cli: 'integration',
  conformance: 'unit',
  datastore: 'integration',
  exporter: 'integration',
  federation: 'integration',
  integration: 'integration',
  monitoring: 'integration',
  probes: 'integration',
  security: 'integration',
  server: 'integration',
  telemetry: 'integration',
  unit: 'unit',
  up: 'e2e',
  'workload-api': 'integration',
};

/** Files whose tier is not their folder's default. */
export const FILE_TIER: Record<Tier, readonly string[]> = {
  unit: [
    'test/agent/workload-limits.test.ts',
    'test/chaos/key-compromise.test.ts',
    'test/chaos/runner-retry.test.ts',
    'test/exporter/config.test.ts',
    'test/security/jwt-limits-config.test.ts',
    'test/server/authority-lifecycle.test.ts',
    'test/server/authority-telemetry.test.ts',
    'test/server/authorized-index.test.ts',
    'test/server/bundle-cache.test.ts',
    'test/server/ca-rotation.test.ts',
    'test/workload-api/address.test.ts',
  ],
  integration: [],
  e2e: [
    'test/agent/e2e.test.ts',
    'test/agent/server-failover.test.ts',
    'test/chaos/federation-and-storm-faults.test.ts',
    'test/chaos/gameday.test.ts',
    'test/chaos/harness.test.ts',
    'test/exporter/e2e.test.ts',
    'test/federation/e2e.test.ts',
    'test/monitoring/stack.test.ts',
    'test/probes/stack.test.ts',
    'test/security/agent-renewal-real.test.ts',
    'test/security/jwt-audience-limits.test.ts',
    'test/security/workload-api.test.ts',
    'test/telemetry/exposition-formats.test.ts',
    'test/telemetry/tracing.test.ts',
  ],
};

const TEST_SUFFIX = '.test.ts';

/** The tier of one test file (path relative to the project root, `/`-separated), or undefined. */
export function tierOf(file: string): Tier | undefined {
  const listed = TIER_NAMES.filter((t) => FILE_TIER[t].includes(file));
  if (listed.length === 1) return listed[0];
  if (listed.length > 1) return undefined;
  const bySuffix = TIER_NAMES.find((t) => file.endsWith(`.${t}${TEST_SUFFIX}`));
  if (bySuffix) return bySuffix;
  const [top, folder, ...rest] = file.split('/');
  return top === 'test' && rest.length > 0 ? FOLDER_TIER[folder] : undefined;
}

/**
 * vitest include/exclude globs for a tier, built so that they select exactly the files tierOf
 * gives that tier: listed files first, then the name suffix, then the folder.
 */
export function tierGlobs(tier: Tier): { include: string[]; exclude: string[] } {
  const others = TIER_NAMES.filter((t) => t !== tier);
  return {
    include: [
      ...FILE_TIER[tier],
      `test/**/*.${tier}${TEST_SUFFIX}`,
      ...Object.entries(FOLDER_TIER).filter(([, t]) => t === tier).map(([folder]) => `test/${folder}/**/*${TEST_SUFFIX}`),
    ],
    exclude: [...others.flatMap((t) => FILE_TIER[t]), ...others.map((t) => `test/**/*.${t}${TEST_SUFFIX}`)],
  };
}
