/**
 * A minimal DER writer and reader: just what certificate templates need (X.690 definite lengths,
 * minimal INTEGERs, OIDs, strings, RFC 5280 times) and a reader that walks TLVs without decoding
 * them, so a CA's subject Name can be copied byte for byte into the issuer field of its leaves.
 *
 * Every writer returns a complete TLV, so callers build structures by nesting calls; there is no
 * indefinite-length or BER leniency anywhere.
 */

/** Octets the long form needs for a length (X.690 8.1.3); 0 means the short form. */
function lengthOctets(n: number): number {
  return n < 0x80 ? 0 : n < 0x100 ? 1 : n < 0x10000 ? 2 : n < 0x1000000 ? 3 : 4;
}

/** Encodes a definite length: short form below 128, else the minimal long form. */
export function derLength(n: number): Buffer {
  const k = lengthOctets(n);
  const out = Buffer.allocUnsafe(1 + k);
  writeLength(out, 0, n, k);
  return out;
}

function writeLength(out: Buffer, at: number, n: number, k: number): number {
  if (k === 0) {
    out[at] = n;
    return at + 1;
  }
  out[at++] = 0x80 | k;
  for (let i = k - 1; i >= 0; i--) out[at++] = (n >>> (8 * i)) & 0xff;
  return at;
}

/**
 * A TLV with a one-byte tag around already-encoded parts, written with a single allocation:
 * this runs several times per minted certificate, so it must not build intermediate buffers.
 */
export function tlv(tag: number, ...parts: Buffer[]): Buffer {
  let n = 0;
  for (const p of parts) n += p.length;
  const k = lengthOctets(n);
  const out = Buffer.allocUnsafe(2 + k + n);
  out[0] = tag;
  let o = writeLength(out, 1, n, k);
  for (const p of parts) o += p.copy(out, o);
  return out;
}

export const sequence = (...items: Buffer[]): Buffer => tlv(0x30, ...items);
export const set = (...items: Buffer[]): Buffer => tlv(0x31, ...items);
export const octetString = (b: Buffer): Buffer => tlv(0x04, b);
export const derNull = (): Buffer => Buffer.from([0x05, 0x00]);
export const boolean = (v: boolean): Buffer => Buffer.from([0x01, 0x01, v ? 0xff : 0x00]);
export const utf8String = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
export const printableString = (s: string): Buffer => tlv(0x13, Buffer.from(s, 'latin1'));
export const ia5String = (s: string): Buffer => tlv(0x16, Buffer.from(s, 'latin1'));
/** `[n] EXPLICIT`: constructed context tag around a complete TLV. */
export const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);
/** `[n] IMPLICIT` primitive: the context tag replaces the universal tag of a primitive value. */
export const implicitPrimitive = (n: number, content: Buffer): Buffer => tlv(0x80 | n, content);

/** BIT STRING with `unusedBits` padding bits in the last octet. */
export function bitString(bits: Buffer, unusedBits = 0): Buffer {
  return tlv(0x03, Buffer.from([unusedBits]), bits);
}

/** A named-bit BIT STRING (X.690 11.2.2: trailing zero bits removed), e.g. KeyUsage. */
export function namedBits(bitNumbers: readonly number[]): Buffer {
  if (bitNumbers.length === 0) return bitString(Buffer.alloc(0));
  const last = Math.max(...bitNumbers);
  const bytes = Buffer.alloc(Math.floor(last / 8) + 1);
  for (const b of bitNumbers) bytes[b >> 3] |= 0x80 >> (b & 7);
  return bitString(bytes, 7 - (last & 7));
}

/** Minimal two's-complement content octets of a non-negative integer. */
export function unsignedIntegerContent(value: bigint | Buffer): Buffer {
  let b = typeof value === 'bigint' ? bigintToBytes(value) : value;
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  b = b.subarray(i);
  if (b.length === 0) b = Buffer.from([0]);
  // A set top bit would read as negative, so a zero octet goes in front (X.690 8.3.2).
  return b[0] & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b;
}

export const integer = (value: bigint | Buffer | number): Buffer =>
  tlv(0x02, unsignedIntegerContent(typeof value === 'number' ? BigInt(value) : value));

function bigintToBytes(v: bigint): Buffer {
  if (v < 0n) throw new RangeError('der: negative integers are not supported');
  const hex = v.toString(16);
  return Buffer.from(hex.length % 2 ? '0' + hex : hex, 'hex');
}

/** OBJECT IDENTIFIER from dotted form (X.690 8.19): first two arcs folded, base-128 arcs. */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => BigInt(a));
  const out: number[] = [];
  const push = (arc: bigint) => {
    const groups: number[] = [Number(arc & 0x7fn)];
    for (let v = arc >> 7n; v > 0n; v >>= 7n) groups.unshift(Number(v & 0x7fn) | 0x80);
    out.push(...groups);
  };
  push(arcs[0] * 40n + arcs[1]);
  for (const arc of arcs.slice(2)) push(arc);
  return tlv(0x06, Buffer.from(out));
}

/**
 * RFC 5280 4.1.2.5: dates through 2049 are UTCTime (YYMMDDHHMMSSZ), 2050 and later
 * GeneralizedTime (YYYYMMDDHHMMSSZ); both always in UTC with whole seconds.
 */
export function time(date: Date): Buffer {
  const y = date.getUTCFullYear();
  const utc = y >= 1950 && y < 2050;
  const out = Buffer.allocUnsafe(utc ? 15 : 17);
  out[0] = utc ? 0x17 : 0x18;
  out[1] = utc ? 13 : 15;
  let p = 2;
  const two = (n: number) => {
    out[p++] = 0x30 + Math.floor(n / 10);
    out[p++] = 0x30 + (n % 10);
  };
  if (!utc) two(Math.floor(y / 100));
  two(y % 100);
  two(date.getUTCMonth() + 1);
  two(date.getUTCDate());
  two(date.getUTCHours());
  two(date.getUTCMinutes());
  two(date.getUTCSeconds());
  out[p] = 0x5a; // 'Z'
  return out;
}

/** Parses a UTCTime or GeneralizedTime TLV written in the RFC 5280 profile. */
export function parseTime(node: DerNode, buf: Buffer): Date {
  const s = buf.toString('latin1', node.contentStart, node.end);
  const m = /^(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m || (node.tag === 0x17) !== (m[1].length === 2)) throw new RangeError(`der: bad time ${s}`);
  let year = Number(m[1]);
  if (m[1].length === 2) year += year >= 50 ? 1900 : 2000;
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

/** One TLV located in a buffer: `start` is the tag byte, the content is [contentStart, end). */
export interface DerNode {
  readonly tag: number;
  readonly start: number;
  readonly contentStart: number;
  readonly end: number;
}

/** Reads the TLV at `offset`, bounded by `limit`; throws on truncated or non-minimal lengths. */
export function readNode(buf: Buffer, offset = 0, limit = buf.length): DerNode {
  if (offset + 2 > limit) throw new RangeError('der: truncated');
  const tag = buf[offset];
  if ((tag & 0x1f) === 0x1f) throw new RangeError('der: multi-byte tags are not supported');
  let len = buf[offset + 1];
  let p = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || p + n > limit) throw new RangeError('der: bad length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p++];
    if (len < 0x80 || buf[offset + 2] === 0) throw new RangeError('der: non-minimal length');
  }
  if (p + len > limit) throw new RangeError('der: truncated');
  return { tag, start: offset, contentStart: p, end: p + len };
}

/** The children of a constructed node, in order. */
export function children(buf: Buffer, node: DerNode): DerNode[] {
  const out: DerNode[] = [];
  for (let p = node.contentStart; p < node.end; ) {
    const child = readNode(buf, p, node.end);
    out.push(child);
    p = child.end;
  }
  return out;
}

/** The complete bytes (tag, length, content) of a node. */
export const raw = (buf: Buffer, node: DerNode): Buffer => buf.subarray(node.start, node.end);
export const content = (buf: Buffer, node: DerNode): Buffer => buf.subarray(node.contentStart, node.end);
