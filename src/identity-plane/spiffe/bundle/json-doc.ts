import { errorFactory } from '../../../common/errors/catalog.js';

/**
 * A parsed JSON object document plus the raw source text of its top-level members. Node 20's
 * JSON.parse has no source-text access, and `spiffe_sequence` is a uint64 that loses precision as a
 * double, so the raw number text is recovered by scanning the top level once.
 */
export interface JsonDoc {
  readonly value: Record<string, unknown>;
  /** The raw JSON text of a top-level member's value (last occurrence, as JSON.parse keeps the last), or undefined. */
  raw(key: string): string | undefined;
}

export function parseJsonObject(input: Uint8Array | string, area: string): JsonDoc {
  const fail = errorFactory(area);
  const text = typeof input === 'string' ? input : Buffer.from(input).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw fail('malformed-json', `unable to parse JWKS: ${(err as Error).message}`, err);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fail('malformed-json', 'unable to parse JWKS: document is not a JSON object');
  }
  let members: Map<string, string> | undefined;
  return {
    value: value as Record<string, unknown>,
    raw(key) {
      members ??= topLevelMembers(text);
      return members.get(key);
    },
  };
}

/** Scans an object document already known to be valid JSON; returns key -> raw value text. */
function topLevelMembers(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = text.indexOf('{') + 1;
  const skipWs = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const readString = (): string => {
    const start = i;
    i++;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  for (;;) {
    skipWs();
    if (text[i] === '}' || i >= text.length) return out;
    if (text[i] === ',') {
      i++;
      continue;
    }
    const key = readString();
    skipWs();
    i++; // the colon
    skipWs();
    const start = i;
    let depth = 0;
    while (i < text.length) {
      const c = text[i];
      if (c === '"') {
        readString();
        if (depth === 0) break;
        continue;
      }
      if (c === '{' || c === '[') depth++;
      else if (c === '}' || c === ']') {
        if (depth === 0) break;
        depth--;
        if (depth === 0) {
          i++;
          break;
        }
      } else if (depth === 0 && (c === ',' || /\s/.test(c))) break;
      i++;
    }
    out.set(key, text.slice(start, i));
  }
}
