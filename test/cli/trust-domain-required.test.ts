// A server or agent started without a trust domain refuses to start, naming the key, instead of
// silently issuing for (or asking for) example.org.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildAgentConfig } from '../../src/identity-plane/agent/config.js';
import { buildServerConfig } from '../../src/identity-plane/server/config.js';
import { spawnCli } from '../support/process.js';

const dir = mkdtempSync(path.join(tmpdir(), 'svidscope-td-required-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('trust_domain is required', () => {
  it('server and agent configs without trust_domain are config-invalid naming trust_domain; a flag or the key satisfies it', () => {
    for (const build of [buildServerConfig, buildAgentConfig]) {
      for (const doc of [{}, { trust_domain: '' }, { trust_domain: null }]) {
        expect(() => build(doc)).toThrow(expect.objectContaining({ code: 'config-invalid', message: expect.stringMatching(/^config: trust_domain: is required \(.*example\.org.*--trust-domain\)$/) as string }));
      }
      expect(build({ trust_domain: 'a.test' }).trustDomain.name).toBe('a.test');
      expect(build({}, { trustDomain: 'b.test' }).trustDomain.name).toBe('b.test');
      expect(() => build({ trust_domain: 'Bad_TD' })).toThrow(/^config: trust_domain: /);
    }
  });

  it.each([
    ['server', ['server', 'run', '--data-dir', path.join(dir, 'server'), '--bind', '127.0.0.1:0', '--health-bind', '']],
    ['agent', ['agent', 'run', '--data-dir', path.join(dir, 'agent'), '--insecure-bootstrap', '--health-bind', '']],
  ])('%s run without one exits with the config error and starts nothing', async (_name, args) => {
    const run = spawnCli(args);
    const result = await run.child;
    expect(result.exitCode).toBe(2);
    expect(run.logs()).toMatch(/config: trust_domain: is required/);
    expect(existsSync(args[3])).toBe(false); // no data dir, no keys
  });
});
