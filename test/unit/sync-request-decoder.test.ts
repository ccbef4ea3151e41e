/**
 * The server's SyncAuthorizedEntriesRequest decoder against proto-loader's, which it replaced on
 * the server and which stays the oracle here (the client definition keeps it): on random messages
 * (int64 at the edges of 2^53 and 2^64, signed, unicode ids), with unknown fields of every wire type
 * and repeated scalars, both must give the same object; on every truncation this one gives the same
 * object or refuses (proto-loader reads a varint cut short as if zeros followed it).
 */
import { describe, expect, it } from 'vitest';
import { serverServices } from '../../src/identity-plane/server-api/services.js';
import { decodeSyncRequest as decodeOrRefusal } from '../../src/identity-plane/server-api/sync-request-decoder.js';
import { seededRandom } from '../support/prng.js';

const { nodeClient } = serverServices();
/** The decoder's answer, its refusal thrown (it carries a refusal to the handler in `undecodable`). */
function decodeSyncRequest(b: Buffer): unknown {
  const msg = decodeOrRefusal(b);
  if (msg.undecodable) throw msg.undecodable;
  return msg;
}
const oracleDef = nodeClient.service.SyncAuthorizedEntries;
const encode = (m: object): Buffer => oracleDef.requestSerialize(m);
const oracle = (b: Buffer): unknown => oracleDef.requestDeserialize(b);

type Outcome = { ok: true; value: unknown } | { ok: false };
const run = (fn: () => unknown): Outcome => {
  try {
    return { ok: true, value: fn() };
  } catch {
    return { ok: false };
  }
};

/** Protobuf wire pieces for hand-made messages: varints from a BigInt (two's complement for negatives). */
function varint(v: bigint): Buffer {
  let x = BigInt.asUintN(64, v);
  const out: number[] = [];
  do {
    const b = Number(x & 0x7fn);
    x >>= 7n;
    out.push(x > 0n ? b | 0x80 : b);
  } while (x > 0n);
  return Buffer.from(out);
}
const key = (field: number, wire: number) => varint(BigInt((field << 3) | wire));
const lenDelimited = (field: number, body: Buffer) => Buffer.concat([key(field, 2), varint(BigInt(body.length)), body]);

const INT64_EDGES = [0n, 1n, 127n, 128n, 2n ** 31n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 1n, -1n, -(2n ** 63n), -(2n ** 53n) - 3n];

describe('SyncAuthorizedEntriesRequest decoder', () => {
  it('gives what proto-loader gives on random messages', () => {
    const rnd = seededRandom(2026);
    const int64 = () => (rnd() < 0.5 ? INT64_EDGES[Math.floor(rnd() * INT64_EDGES.length)]! : BigInt(Math.floor(rnd() * 1e9))).toString();
    const id = () => (rnd() < 0.1 ? 'entrée-✓-𝄞' : rnd() < 0.1 ? '' : crypto.randomUUID());
    for (let i = 0; i < 500; i++) {
      const msg = {
        known_revision: int64(),
        incremental: rnd() < 0.5,
        known_entries: Array.from({ length: Math.floor(rnd() * 12) }, () => ({ id: id(), revision: int64() })),
      };
      const bytes = encode(msg);
      const ours = decodeSyncRequest(bytes);
      expect(ours).toEqual(oracle(bytes));
      expect(ours).toEqual({ ...msg, known_entries: msg.known_entries });
    }
  });

  it('gives the defaults for an empty message, and keeps the last of a repeated scalar', () => {
    expect(decodeSyncRequest(Buffer.alloc(0))).toEqual({ known_revision: '0', incremental: false, known_entries: [] });
    expect(decodeSyncRequest(Buffer.alloc(0))).toEqual(oracle(Buffer.alloc(0)));
    const twice = Buffer.concat([key(1, 0), varint(5n), key(2, 0), varint(1n), key(1, 0), varint(-7n), lenDelimited(3, Buffer.alloc(0))]);
    expect(decodeSyncRequest(twice)).toEqual({ known_revision: '-7', incremental: true, known_entries: [{ id: '', revision: '0' }] });
    expect(decodeSyncRequest(twice)).toEqual(oracle(twice));
  });

  it('skips unknown fields of every wire type, at both levels, as proto-loader does', () => {
    const unknown = Buffer.concat([
      key(9, 0), varint(2n ** 64n - 1n),
      key(10, 1), Buffer.alloc(8, 0xab),
      lenDelimited(11, Buffer.from('ignored')),
      key(12, 5), Buffer.alloc(4, 0xcd),
    ]);
    const entry = Buffer.concat([unknown, lenDelimited(1, Buffer.from('e-1')), unknown, key(2, 0), varint(42n), unknown]);
    const msg = Buffer.concat([unknown, key(1, 0), varint(2n ** 53n + 1n), lenDelimited(3, entry), unknown, key(2, 0), varint(1n), lenDelimited(3, entry)]);
    const ours = decodeSyncRequest(msg);
    expect(ours).toEqual({ known_revision: '9007199254740993', incremental: true, known_entries: [{ id: 'e-1', revision: '42' }, { id: 'e-1', revision: '42' }] });
    expect(ours).toEqual(oracle(msg));
  });

  it('on every truncation gives what proto-loader gives, or refuses where proto-loader reads past the end', () => {
    const msg = encode({ known_revision: '-1', incremental: true, known_entries: [{ id: 'a-long-entry-id', revision: '9223372036854775807' }, { id: 'b', revision: '300' }] });
    let refused = 0;
    for (let n = 0; n <= msg.length; n++) {
      const cut = msg.subarray(0, n);
      const [ours, theirs] = [run(() => decodeSyncRequest(cut)), run(() => oracle(cut))];
      if (ours.ok) expect(ours, `first ${n} bytes`).toEqual(theirs);
      else {
        refused++;
        // proto-loader reads a varint cut short as if zeros followed; this decoder says where it ends.
        expect(() => decodeSyncRequest(cut), `first ${n} bytes`).toThrow(/truncated|past the end/);
      }
      if (!theirs.ok) expect(ours.ok, `first ${n} bytes: proto-loader refused`).toBe(false);
    }
    expect(refused).toBeGreaterThan(0);
    expect(decodeSyncRequest(msg)).toEqual(oracle(msg));
  });

  it('refuses what node.proto cannot mean, naming the problem', () => {
    const cases: [Buffer, RegExp][] = [
      [lenDelimited(1, Buffer.from('x')), /field 1 has wire type 2/],
      [Buffer.concat([key(3, 0), varint(1n)]), /field 3 has wire type 0/],
      [lenDelimited(3, Buffer.concat([key(2, 2), varint(0n)])), /EntryRevision: field 2 has wire type 2/],
      [Buffer.concat([key(1, 0), Buffer.alloc(10, 0xff), Buffer.from([1])]), /longer than 10 bytes/],
      [Buffer.concat([key(3, 2), varint(100n), Buffer.from('short')]), /runs past the end/],
      [Buffer.concat([key(7, 3)]), /wire type 3/],
      [Buffer.concat([key(7, 1), Buffer.alloc(3)]), /fixed-width field runs past the end/],
      [Buffer.from([0x80]), /truncated inside a varint/],
    ];
    for (const [bytes, message] of cases) {
      expect(() => decodeSyncRequest(bytes), bytes.toString('hex')).toThrow(message);
      expect(decodeOrRefusal(bytes).undecodable?.code).toBe('malformed-message');
    }
  });
});
