import { isPathChar } from './charset.js';
import { messages, spiffeIdError } from './errors.js';

/**
 * Checks a whole SPIFFE ID path: empty, or "/" followed by segments separated by "/", none of
 * them empty, "." or "..", each made of the path charset; no trailing slash.
 */
export function validatePath(path: string): void {
  if (path === '') return;
  if (path.charCodeAt(0) !== 0x2f) throw spiffeIdError('no-leading-slash', messages.noLeadingSlash);
  let segmentStart = 0;
  for (let i = 1; i <= path.length; i++) {
    const atEnd = i === path.length;
    const c = atEnd ? 0x2f : path.charCodeAt(i);
    if (c === 0x2f) {
      const length = i - segmentStart - 1;
      if (length === 0) throw spiffeIdError(atEnd ? 'trailing-slash' : 'empty-segment', atEnd ? messages.trailingSlash : messages.emptySegment);
      if (isDotSegment(path, segmentStart + 1, length)) throw spiffeIdError('bad-path-segment-dot', messages.dotSegment);
      segmentStart = i;
      continue;
    }
    if (!isPathChar(c)) throw spiffeIdError('bad-path-char', messages.badPathChar);
  }
}

/** Checks one path segment (no slashes) for use with joinPathSegments. */
export function validatePathSegment(segment: string): void {
  if (!segment) throw spiffeIdError('empty-segment', messages.emptySegment);
  if (segment === '.' || segment === '..') throw spiffeIdError('bad-path-segment-dot', messages.dotSegment);
  for (let i = 0; i < segment.length; i++) {
    if (!isPathChar(segment.charCodeAt(i))) throw spiffeIdError('bad-path-char', messages.badPathChar);
  }
}

/** Joins segments into a path ("/a/b"), validating each. */
export function joinPathSegments(segments: readonly string[]): string {
  let out = '';
  for (const segment of segments) {
    validatePathSegment(segment);
    out += '/' + segment;
  }
  return out;
}

function isDotSegment(s: string, start: number, length: number): boolean {
  if (length === 1) return s.charCodeAt(start) === 0x2e;
  return length === 2 && s.charCodeAt(start) === 0x2e && s.charCodeAt(start + 1) === 0x2e;
}
