import { SvidscopeError } from '../../../common/errors/catalog.js';

/**
 * Bounds on the audiences of one JWT-SVID request, enforced by the agent's Workload API and again by
 * the server: every audience ends up in the token, in the agent's cache key and in the server's
 * signing input, so an unbounded list lets any local caller grow both processes at will.
 */
export interface JwtAudienceLimits {
  /** Most audiences in one request. */
  readonly maxCount: number;
  /** Longest audience, in UTF-8 bytes. */
  readonly maxBytes: number;
}

/** Config keys of the limits, used as the `limit` label of the refusal counters (a fixed set). */
export const JWT_AUDIENCE_LIMIT_KEYS = { count: 'jwt_audience_max_count', bytes: 'jwt_audience_max_bytes' } as const;

/**
 * 16 audiences of 256 bytes: a token names its relying parties, rarely more than a handful, and a URL
 * audience fits easily; the largest request stays at 4 KiB.
 */
export const DEFAULT_JWT_AUDIENCE_LIMITS: JwtAudienceLimits = { maxCount: 16, maxBytes: 256 };

/** The SvidscopeError (`jwt-audience-limit`, InvalidArgument) naming the limit a request breaks, or undefined. */
export function checkJwtAudienceLimits(audience: readonly string[], limits: JwtAudienceLimits): (SvidscopeError & { limit: string }) | undefined {
  const refuse = (limit: string, message: string) => Object.assign(new SvidscopeError('jwt-audience-limit', message), { limit });
  if (audience.length > limits.maxCount) {
    return refuse(JWT_AUDIENCE_LIMIT_KEYS.count, `${audience.length} audiences requested; at most ${limits.maxCount} are allowed (${JWT_AUDIENCE_LIMIT_KEYS.count})`);
  }
  for (const a of audience) {
    const bytes = Buffer.byteLength(a, 'utf8');
    if (bytes > limits.maxBytes) {
      return refuse(JWT_AUDIENCE_LIMIT_KEYS.bytes, `an audience of ${bytes} bytes was requested; each is at most ${limits.maxBytes} bytes (${JWT_AUDIENCE_LIMIT_KEYS.bytes})`);
    }
  }
  return undefined;
}
