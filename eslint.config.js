// Lint: the recommended TypeScript rules, plus the module boundaries of docs/ARCHITECTURE.md
// (the SPIFFE primitives import nothing above them; server and agent never import each other).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const boundary = (from, forbidden) => ({
  files: [`src/${from}/**/*.ts`],
  rules: {
    'no-restricted-imports': ['error', {
      patterns: forbidden.map((group) => ({ group: [group], message: `${from} must not import ${group} (see docs/ARCHITECTURE.md)` })),
    }],
  },
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'dashboards/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  {
    // Plain Node scripts (test fixtures run as other uids, bench clients).
    files: ['**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly' } },
  },
  boundary('identity-plane/spiffe', ['**/server/**', '**/agent/**', '**/cli/**', '**/probes/**', '**/exporter/**', '**/chaos/**']),
  boundary('identity-plane/server', ['**/agent/**', '**/cli/**']),
  boundary('identity-plane/agent', ['**/server/**', '**/cli/**']),
  // Probes and the exporter speak only the standard interfaces (plus the server's admin protocol),
  // so they work against any SPIFFE implementation: never the agent's or server's internals.
  boundary('probes', ['**/identity-plane/agent/**', '**/identity-plane/server/**', '**/cli/**', '**/chaos/**']),
  boundary('exporter', ['**/identity-plane/agent/**', '**/identity-plane/server/**', '**/cli/**', '**/chaos/**']),
  boundary('common', ['**/identity-plane/**', '**/cli/**', '**/probes/**', '**/exporter/**', '**/chaos/**']),
  {
    // Scrapes render through common/telemetry/exposition.ts only: prom-client keeps the format as
    // registry state and renames counters when it renders OpenMetrics, so one scrape leaks into the next.
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-syntax': ['error',
        { selector: "CallExpression[callee.property.name='setContentType']", message: 'negotiate per scrape with common/telemetry/exposition.ts instead of switching a registry' },
        { selector: "CallExpression[callee.property.name='metrics'][arguments.length=0]", message: 'render registries with common/telemetry/exposition.ts (registry.metrics() renames counters for later scrapes)' },
      ],
    },
  },
);
