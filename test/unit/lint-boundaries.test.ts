// The module boundaries of docs/ARCHITECTURE.md are ESLint rules: a crossing of any module's
// boundary, or a reach past a SPIFFE package's index, fails lint; the allowed directions do not.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const eslint = new ESLint({ cwd: root });

/** The no-restricted-imports messages for `import` lines placed in `file`. */
async function crossings(file: string, ...specifiers: string[]): Promise<string[]> {
  const code = specifiers.map((s, i) => `import * as m${i} from '${s}';\nexport const u${i} = m${i};\n`).join('');
  const [result] = await eslint.lintText(code, { filePath: path.join(root, file) });
  return result.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

// [file in the module, a forbidden import, an allowed import]
const cases: [string, string, string][] = [
  ['src/identity-plane/spiffe/id/x.ts', '../../server/server.js', '../../../common/errors/catalog.js'],
  ['src/identity-plane/spiffe/mint/x.ts', '../../workload-api/index.js', '../id/index.js'],
  ['src/identity-plane/server/x.ts', '../agent/agent.js', '../server-api/messages.js'],
  ['src/identity-plane/server/ca/x.ts', '../../../monitoring/rules.js', '../../spiffe/mint/index.js'],
  ['src/identity-plane/agent/x.ts', '../server/server.js', '../server-api/messages.js'],
  ['src/identity-plane/agent/manager/x.ts', '../../../cli/main.js', '../../workload-api/index.js'],
  ['src/identity-plane/server-api/x.ts', '../agent/agent.js', '../spiffe/bundle/index.js'],
  ['src/identity-plane/server-api/x.ts', '../server/datastore/types.js', './messages.js'],
  ['src/identity-plane/server-api/x.ts', '../agent/manager/cache.js', '../spiffe/id/index.js'],
  ['src/identity-plane/workload-api/x.ts', '../server-api/messages.js', '../spiffe/x509svid/index.js'],
  ['src/common/x.ts', '../identity-plane/spiffe/id/index.js', './errors/catalog.js'],
  ['src/common/telemetry/x.ts', '../../monitoring/rules.js', '../log.js'],
  ['src/probes/x.ts', '../identity-plane/agent/agent.js', '../identity-plane/workload-api/index.js'],
  ['src/probes/modules/x.ts', '../../identity-plane/server-api/admin-client.js', '../../common/log.js'],
  ['src/exporter/x.ts', '../identity-plane/server/server.js', '../identity-plane/server-api/admin-client.js'],
  ['src/exporter/sources/x.ts', '../../probes/index.js', '../../identity-plane/workload-api/index.js'],
  ['src/chaos/x.ts', '../identity-plane/server/server.js', '../identity-plane/server-api/admin-client.js'],
  ['src/chaos/faults/x.ts', '../../identity-plane/agent/agent.js', '../../identity-plane/server-api/node-client.js'],
  ['src/chaos/faults/x.ts', '../../identity-plane/agent/manager/cache.js', '../../identity-plane/server-api/messages.js'],
  ['src/monitoring/x.ts', '../identity-plane/spiffe/id/index.js', '../common/telemetry/names.js'],
  ['src/cli/x.ts', '../identity-plane/spiffe/mint/keys.js', '../identity-plane/server/server.js'],
];

describe('module boundaries in ESLint', () => {
  it.each(cases)('%s: refuses %s, allows %s', async (file, forbidden, allowed) => {
    const refused = await crossings(file, forbidden);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatch(/must not import|through its index\.js/);
    expect(await crossings(file, allowed)).toEqual([]);
  });

  it('SPIFFE packages only through their index, also between packages', async () => {
    expect(await crossings('src/identity-plane/server/x.ts', '../spiffe/mint/keys.js', '../spiffe/bundle/types.js')).toEqual([
      expect.stringContaining('through its index.js'), expect.stringContaining('through its index.js'),
    ]);
    expect(await crossings('src/probes/x.ts', '../identity-plane/spiffe/x509/pem.js', '../identity-plane/spiffe/x509/index.js')).toEqual([expect.stringContaining('through its index.js')]);
    expect(await crossings('src/identity-plane/spiffe/x509svid/x.ts', '../bundle/types.js')).toEqual([expect.stringContaining('sibling SPIFFE package')]);
    expect(await crossings('src/identity-plane/spiffe/x509svid/x.ts', '../bundle/index.js', '../x509/index.js', './leaf.js')).toEqual([]);
  });

  it('every module directory under src/ has a boundary rule', async () => {
    const { readdirSync } = await import('node:fs');
    const modules = [
      ...readdirSync(path.join(root, 'src'), { withFileTypes: true }).filter((d) => d.isDirectory() && d.name !== 'identity-plane').map((d) => d.name),
      ...readdirSync(path.join(root, 'src/identity-plane'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => `identity-plane/${d.name}`),
    ];
    for (const m of modules) {
      const config = await eslint.calculateConfigForFile(path.join(root, 'src', m, 'x.ts')) as { rules?: Record<string, unknown> };
      expect(config.rules?.['no-restricted-imports'], m).toBeDefined();
    }
  });
});

describe('one error path in ESLint', () => {
  const syntax = async (file: string, code: string) => {
    const [result] = await eslint.lintText(code, { filePath: path.join(root, file) });
    return result.messages.filter((m) => m.ruleId === 'no-restricted-syntax').map((m) => m.message);
  };

  it('refuses a plain Error thrown in src/, allows a catalogued one and plain Errors in tests', async () => {
    expect(await syntax('src/chaos/x.ts', "export function f(): never {\n  throw new Error('no code');\n}\n")).toEqual([expect.stringContaining('SvidscopeError with a catalogue code')]);
    expect(await syntax('src/chaos/x.ts', "import { SvidscopeError } from '../common/errors/catalog.js';\nexport function f(): never {\n  throw new SvidscopeError('internal', 'coded');\n}\n")).toEqual([]);
    expect(await syntax('test/unit/x.test.ts', "export function f(): never {\n  throw new Error('a test may');\n}\n")).toEqual([]);
  });

  it('refuses subtle.generateKey in src/, tests and benchmarks (a Node.js 20 deadlock), allows the synchronous helper', async () => {
    const generate = "import { webcrypto } from 'node:crypto';\nexport const k = () => webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign']);\n";
    for (const file of ['src/chaos/x.ts', 'test/unit/x.test.ts', 'bench/x.bench.ts']) expect(await syntax(file, generate)).toEqual([expect.stringContaining('ecdsaKeyPair()')]);
    expect(await syntax('test/unit/x.test.ts', "import { ecdsaKeyPair } from '../support/webcrypto-keys.js';\nexport const k = () => ecdsaKeyPair();\n")).toEqual([]);
  });
});
