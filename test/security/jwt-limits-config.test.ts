// The limits' defaults and config keys on both sides, and the byte bound of the agent's JWT cache.
import { describe, expect, it } from 'vitest';
import { buildAgentConfig } from '../../src/identity-plane/agent/config.js';
import { JwtSvidCache } from '../../src/identity-plane/agent/manager/jwt-cache.js';
import { buildServerConfig } from '../../src/identity-plane/server/config.js';
import { checkJwtAudienceLimits } from '../../src/identity-plane/spiffe/jwtsvid/index.js';

describe('JWT audience limits and agent renewal grace: config', () => {
  it('defaults to 16 audiences of 256 bytes, a 4 MiB JWT cache and a 30 s renewal grace', () => {
    expect(buildAgentConfig({ trust_domain: 'example.org' })).toMatchObject({ jwtAudience: { maxCount: 16, maxBytes: 256 }, jwtCacheMaxBytes: 4 * 1024 * 1024 });
    expect(buildServerConfig({ trust_domain: 'example.org' })).toMatchObject({ jwtAudience: { maxCount: 16, maxBytes: 256 }, agentRenewalGraceSeconds: 30 });
  });

  it('reads every key and refuses values out of bounds, naming the key', () => {
    expect(buildAgentConfig({ trust_domain: 'example.org', jwt_audience_max_count: 4, jwt_audience_max_bytes: 1024, jwt_cache_max_bytes: 1000 }))
      .toMatchObject({ jwtAudience: { maxCount: 4, maxBytes: 1024 }, jwtCacheMaxBytes: 1000 });
    expect(buildServerConfig({ trust_domain: 'example.org', jwt_audience_max_count: 2, agent_renewal_grace: '5s' })).toMatchObject({ jwtAudience: { maxCount: 2, maxBytes: 256 }, agentRenewalGraceSeconds: 5 });
    expect(() => buildAgentConfig({ trust_domain: 'example.org', jwt_audience_max_count: 0 })).toThrow(/jwt_audience_max_count/);
    expect(() => buildServerConfig({ trust_domain: 'example.org', jwt_audience_max_bytes: 1e9 })).toThrow(/jwt_audience_max_bytes/);
  });

  it('counts UTF-8 bytes, not characters, against jwt_audience_max_bytes', () => {
    const limits = { maxCount: 2, maxBytes: 8 };
    expect(checkJwtAudienceLimits(['12345678'], limits)).toBeUndefined();
    expect(checkJwtAudienceLimits(['ééééé'], limits)).toMatchObject({ code: 'jwt-audience-limit', limit: 'jwt_audience_max_bytes', message: expect.stringMatching(/10 bytes/) as string });
    expect(checkJwtAudienceLimits(['a', 'b', 'c'], limits)).toMatchObject({ code: 'jwt-audience-limit', limit: 'jwt_audience_max_count' });
  });
});

describe('JwtSvidCache', () => {
  const jwt = (n: number, keyId = '') => ({ token: 't'.repeat(n), issuedAt: 0, expiresAt: 1000, keyId });

  it('evicts the oldest tokens to stay within its byte bound, and never stores one larger than the bound', () => {
    let evicted = 0;
    const cache = new JwtSvidCache({ maxEntries: 1000, maxBytes: 10_000 }, () => evicted++);
    for (let i = 0; i < 20; i++) cache.set(`k${i}`, jwt(1000));
    expect(cache.bytes).toBeLessThanOrEqual(10_000);
    expect(cache.get('k19')).toBeDefined();
    expect(cache.get('k0')).toBeUndefined();
    expect(evicted).toBe(20 - cache.size);
    cache.set('huge', jwt(20_000));
    expect(cache.get('huge')).toBeUndefined();
    expect(cache.get('k19')).toBeDefined();
  });

  it('replaces a key without counting it twice, and also honours the entry cap', () => {
    const cache = new JwtSvidCache({ maxEntries: 3, maxBytes: 1_000_000 });
    cache.set('a', jwt(100));
    const one = cache.bytes;
    cache.set('a', jwt(100));
    expect(cache.bytes).toBe(one);
    for (const k of ['b', 'c', 'd']) cache.set(k, jwt(100));
    expect(cache.size).toBe(3);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.bytes).toBe(3 * one);
  });

  it('drops every token of a tainted key and gives their bytes back', () => {
    const cache = new JwtSvidCache({ maxEntries: 100, maxBytes: 1_000_000 });
    cache.set('a', jwt(100, 'old'));
    cache.set('b', jwt(100, 'new'));
    cache.set('c', jwt(100, 'old'));
    const one = cache.bytes / 3;
    expect(cache.deleteWhere((v) => v.keyId === 'old')).toBe(2);
    expect([...cache.values()].map((v) => v.keyId)).toEqual(['new']);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.bytes).toBe(one);
  });
});
