// Lint: the recommended TypeScript rules, plus the module boundaries of docs/ARCHITECTURE.md: every
// module under src/ has a rule naming what it must not import, and the SPIFFE packages are entered
// only through their index (test/unit/lint-boundaries.test.ts proves each rule fires).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Patterns are regular expressions over the import specifier, so relative imports inside
// identity-plane/ (`../server/…`) match and an allowed file can be carved out with a lookahead.
const seg = (name, except = '') => `(^|/)${name}/${except}`;
const AGENT = seg('agent');
const SERVER = seg('server');
const SERVER_API = seg('server-api');
const WORKLOAD_API = seg('workload-api');
const IDENTITY_PLANE = seg('identity-plane');
const [CLI, PROBES, EXPORTER, CHAOS, MONITORING] = ['cli', 'probes', 'exporter', 'chaos', 'monitoring'].map((m) => seg(m));

// `spiffe/<pkg>/<file>` from outside the package: only `index.js` is public.
const SPIFFE_INDEX_ONLY = {
  regex: '(^|/)spiffe/[^/]+/(?!index\\.js$)',
  message: 'import a SPIFFE package through its index.js (see docs/ARCHITECTURE.md)',
};
// The same between the SPIFFE packages themselves (`../bundle/types.js` from spiffe/x509svid).
const SPIFFE_SIBLING_INDEX_ONLY = {
  regex: '^\\.\\./[^/.][^/]*/(?!index\\.js$)',
  message: 'import a sibling SPIFFE package through its index.js (see docs/ARCHITECTURE.md)',
};

// Node.js 20 can deadlock a thread that exports a key to JWK while a GC collects the generation
// job of the same key (test/support/webcrypto-keys.ts has the gdb trace): WebCrypto keys are
// generated synchronously and imported instead, everywhere.
const NO_SUBTLE_GENERATE_KEY = {
  selector: "MemberExpression[property.name='generateKey']:matches([object.name='subtle'], [object.property.name='subtle'])",
  message: 'use ecdsaKeyPair() from test/support/webcrypto-keys.ts: subtle.generateKey can deadlock a Node.js 20 thread during a JWK export',
};

// One `no-restricted-imports` per file (flat config replaces, not merges, a rule's options), so
// each module's entry carries the index rule too.
const boundary = (from, forbidden, extra = [SPIFFE_INDEX_ONLY]) => ({
  files: [`src/${from}/**/*.ts`],
  rules: {
    'no-restricted-imports': ['error', {
      patterns: [
        ...forbidden.map((regex) => ({ regex, message: `${from} must not import ${regex.replace('(^|/)', '').replace(/\/.*/, '/')} (see docs/ARCHITECTURE.md)` })),
        ...extra,
      ],
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
  // The SPIFFE primitives import nothing above them but common/.
  boundary('identity-plane/spiffe', [AGENT, SERVER, SERVER_API, WORKLOAD_API, CLI, PROBES, EXPORTER, CHAOS, MONITORING], [SPIFFE_SIBLING_INDEX_ONLY]),
  // Server and agent never import each other; both speak through server-api.
  boundary('identity-plane/server', [AGENT, WORKLOAD_API, CLI, PROBES, EXPORTER, CHAOS, MONITORING]),
  boundary('identity-plane/agent', [SERVER, CLI, PROBES, EXPORTER, CHAOS, MONITORING]),
  // server-api is the protocol package (wire shapes, service definitions, the agent's server client,
  // protocol constants), shared by server, agent, CLI, exporter and chaos; it depends on nothing
  // server- or agent-side.
  boundary('identity-plane/server-api', [SERVER, AGENT, WORKLOAD_API, CLI, PROBES, EXPORTER, CHAOS, MONITORING]),
  boundary('identity-plane/workload-api', [AGENT, SERVER, SERVER_API, CLI, PROBES, EXPORTER, CHAOS, MONITORING]),
  // The CLI composes everything; only the SPIFFE index rule applies.
  boundary('cli', []),
  // Probes and the exporter speak only the standard interfaces (plus the server's admin protocol),
  // so they work against any SPIFFE implementation: never the agent's or server's internals.
  boundary('probes', [AGENT, SERVER, SERVER_API, CLI, EXPORTER, CHAOS, MONITORING]),
  boundary('exporter', [AGENT, SERVER, CLI, PROBES, CHAOS, MONITORING]),
  // Chaos touches the plane through processes, APIs, files, network and metrics, and the standard
  // Workload API as a workload would (the issuance storm's clients); the attestation-flood and
  // bad-csr faults drive server-api's node client as a rogue agent would.
  boundary('chaos', [AGENT, SERVER, CLI, PROBES, EXPORTER, MONITORING]),
  // Monitoring is generated from metric names and thresholds only.
  boundary('monitoring', [IDENTITY_PLANE, CLI, PROBES, EXPORTER, CHAOS]),
  boundary('common', [IDENTITY_PLANE, CLI, PROBES, EXPORTER, CHAOS, MONITORING]),
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    ignores: ['test/support/webcrypto-keys.ts'],
    rules: { 'no-restricted-syntax': ['error', NO_SUBTLE_GENERATE_KEY] },
  },
  {
    // Scrapes render through common/telemetry/exposition.ts only: prom-client keeps the format as
    // registry state and renames counters when it renders OpenMetrics, so one scrape leaks into the next.
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-syntax': ['error',
        { selector: "CallExpression[callee.property.name='setContentType']", message: 'negotiate per scrape with common/telemetry/exposition.ts instead of switching a registry' },
        { selector: "CallExpression[callee.property.name='metrics'][arguments.length=0]", message: 'render registries with common/telemetry/exposition.ts (registry.metrics() renames counters for later scrapes)' },
        // Every error the project raises carries a catalogue code (common/errors/catalog.ts): a plain
        // Error reaches the CLI as `internal`, exit 5, and callers could only classify it by its text.
        { selector: "ThrowStatement > NewExpression[callee.name='Error']", message: 'throw a SvidscopeError with a catalogue code (common/errors/catalog.ts), not a plain Error' },
        NO_SUBTLE_GENERATE_KEY,
      ],
    },
  },
);
