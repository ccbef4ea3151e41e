import { errorFactory } from '../../../common/errors/catalog.js';

/** One decoded PEM block: its label (`CERTIFICATE`, `PRIVATE KEY`…) and the DER bytes. */
export interface PemBlock {
  readonly type: string;
  readonly der: Buffer;
}

// Labels per RFC 7468 (printable characters without '-'); the END label must repeat the BEGIN one.
const BLOCK = /-----BEGIN ([\x21-\x2c\x2e-\x7e](?:[\x21-\x2c\x2e-\x7e ]*[\x21-\x2c\x2e-\x7e])?)-----([\s\S]*?)-----END \1-----/g;
const BASE64_BODY = /^[A-Za-z0-9+/]*={0,2}$/;
// RFC 1421 encapsulated headers (Proc-Type, DEK-Info) precede a blank line; encrypted keys carry them.
const HEADER_LINE = /^[A-Za-z0-9-]+:.*$/;

/**
 * Decodes every PEM block of the input, ignoring text around the blocks (comments, OpenSSL's
 * human-readable dumps), as go's pem.Decode does. Throws `not-pem` when the input holds no block.
 * A block whose body is not base64 is skipped rather than fatal, again like pem.Decode.
 */
export function decodePem(input: Uint8Array | string, area = 'pem'): PemBlock[] {
  const blocks = scanPem(input);
  if (blocks.length === 0) throw errorFactory(area)('not-pem', 'no PEM blocks found');
  return blocks;
}

/** Like decodePem but returns an empty list instead of throwing. */
export function scanPem(input: Uint8Array | string): PemBlock[] {
  const text = typeof input === 'string' ? input : Buffer.from(input).toString('latin1');
  const out: PemBlock[] = [];
  for (const m of text.matchAll(BLOCK)) {
    const lines = m[2].split(/\r?\n/).map((l) => l.trim());
    const body = lines.filter((l) => l !== '' && !HEADER_LINE.test(l)).join('');
    if (!BASE64_BODY.test(body) || body.length % 4 !== 0) continue;
    out.push({ type: m[1], der: Buffer.from(body, 'base64') });
  }
  return out;
}

/** True when the input holds at least one PEM block. */
export function isPem(input: Uint8Array | string): boolean {
  return scanPem(input).length > 0;
}

/** Encodes DER as one PEM block with 64-column lines. */
export function encodePem(type: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${type}-----\n${lines.join('\n')}\n-----END ${type}-----\n`;
}
