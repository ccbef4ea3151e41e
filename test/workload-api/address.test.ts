import { describe, expect, it } from 'vitest';
import { isSvidscopeError } from '../../src/common/errors/catalog.js';
import { parseWorkloadApiAddress, resolveWorkloadApiAddress } from '../../src/identity-plane/workload-api/index.js';

function failure(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    if (!isSvidscopeError(err)) throw err;
    return { code: err.code, message: err.message };
  }
  throw new Error('expected a failure');
}

describe('parseWorkloadApiAddress', () => {
  const good: { name: string; input: string; kind: 'unix' | 'tcp'; target: string; path?: string }[] = [
    { name: 'unix URI', input: 'unix:///tmp/agent.sock', kind: 'unix', target: 'unix:///tmp/agent.sock', path: '/tmp/agent.sock' },
    { name: 'unix URI without authority slashes', input: 'unix:/tmp/agent.sock', kind: 'unix', target: 'unix:///tmp/agent.sock', path: '/tmp/agent.sock' },
    { name: 'percent-encoded unix path', input: 'unix:///tmp/my%20agent.sock', kind: 'unix', target: 'unix:///tmp/my agent.sock', path: '/tmp/my agent.sock' },
    { name: 'bare absolute path', input: '/run/spire/api.sock', kind: 'unix', target: 'unix:///run/spire/api.sock', path: '/run/spire/api.sock' },
    { name: 'tcp IPv4', input: 'tcp://127.0.0.1:8000', kind: 'tcp', target: 'ipv4:127.0.0.1:8000' },
    { name: 'tcp IPv6', input: 'tcp://[::1]:8000', kind: 'tcp', target: 'ipv6:[::1]:8000' },
  ];
  for (const c of good) {
    it(`accepts ${c.name}`, () => {
      const a = parseWorkloadApiAddress(c.input);
      expect(a.kind).toBe(c.kind);
      expect(a.grpcTarget).toBe(c.target);
      if (c.path) expect(a.kind === 'unix' && a.path).toBe(c.path);
    });
  }

  const bad: { name: string; input: string; message: string }[] = [
    { name: 'empty', input: '', message: 'workloadapi: workload endpoint socket address is empty' },
    { name: 'other scheme', input: 'http://127.0.0.1:80', message: 'workload endpoint socket URI must have a "tcp" or "unix" scheme' },
    { name: 'relative path without scheme', input: 'agent/api.sock', message: 'must have a "tcp" or "unix" scheme' },
    { name: 'opaque unix', input: 'unix:tmp/agent.sock', message: 'workload endpoint unix socket URI must not be opaque' },
    { name: 'unix with authority', input: 'unix://host/agent.sock', message: 'workload endpoint unix socket URI must not include an authority' },
    { name: 'unix without path', input: 'unix://', message: 'workload endpoint unix socket URI must include a path' },
    { name: 'unix root path', input: 'unix:///', message: 'workload endpoint unix socket URI must include a path' },
    { name: 'unix with query', input: 'unix:///tmp/a.sock?x=1', message: 'workload endpoint unix socket URI must not include query values' },
    { name: 'unix with empty query', input: 'unix:///tmp/a.sock?', message: 'must not include query values' },
    { name: 'unix with fragment', input: 'unix:///tmp/a.sock#f', message: 'workload endpoint unix socket URI must not include a fragment' },
    { name: 'tcp with path', input: 'tcp://127.0.0.1:8000/foo', message: 'workload endpoint tcp socket URI must not include a path' },
    { name: 'tcp with trailing slash', input: 'tcp://127.0.0.1:8000/', message: 'workload endpoint tcp socket URI must not include a path' },
    { name: 'tcp host name', input: 'tcp://localhost:8000', message: 'workload endpoint tcp socket URI host component must be an IP:port' },
    { name: 'tcp without port', input: 'tcp://127.0.0.1', message: 'workload endpoint tcp socket URI host component must be an IP:port' },
    { name: 'tcp with user info', input: 'tcp://user@127.0.0.1:8000', message: 'workload endpoint tcp socket URI must not include user info' },
    { name: 'tcp without host', input: 'tcp://:8000', message: 'workload endpoint tcp socket URI' },
    { name: 'opaque tcp', input: 'tcp:127.0.0.1:8000', message: 'workload endpoint tcp socket URI must not be opaque' },
  ];
  for (const c of bad) {
    it(`refuses ${c.name}`, () => {
      const f = failure(() => parseWorkloadApiAddress(c.input));
      expect(f.code).toBe('config-invalid');
      expect(f.message).toContain(c.message);
    });
  }
});

describe('resolveWorkloadApiAddress', () => {
  it('prefers the explicit address over SPIFFE_ENDPOINT_SOCKET', () => {
    const a = resolveWorkloadApiAddress('unix:///explicit.sock', { SPIFFE_ENDPOINT_SOCKET: 'unix:///env.sock' });
    expect(a.address).toBe('unix:///explicit.sock');
  });

  it('falls back to SPIFFE_ENDPOINT_SOCKET', () => {
    expect(resolveWorkloadApiAddress(undefined, { SPIFFE_ENDPOINT_SOCKET: 'tcp://10.0.0.1:9000' }).grpcTarget).toBe('ipv4:10.0.0.1:9000');
  });

  it('says what to set when nothing is configured', () => {
    const f = failure(() => resolveWorkloadApiAddress(undefined, {}));
    expect(f).toEqual({ code: 'config-invalid', message: 'workloadapi: workload endpoint socket address is not configured: pass an address or set SPIFFE_ENDPOINT_SOCKET' });
  });

  it('names the variable when its value is invalid', () => {
    const f = failure(() => resolveWorkloadApiAddress(undefined, { SPIFFE_ENDPOINT_SOCKET: 'tcp://localhost:1' }));
    expect(f.code).toBe('config-invalid');
    expect(f.message).toBe('workloadapi: SPIFFE_ENDPOINT_SOCKET: workload endpoint tcp socket URI host component must be an IP:port');
  });
});
