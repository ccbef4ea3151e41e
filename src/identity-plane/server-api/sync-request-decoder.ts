import { SvidscopeError } from '../../common/errors/catalog.js';
import type { SyncRequestMsg } from './messages.js';

/**
 * The server's decoder of `SyncAuthorizedEntriesRequest`, the message every agent sends on every
 * sync. proto-loader's decoder reads each int64 into a `Long`, then `toObject` turns it into a
 * decimal string by Long division: for an incremental sync (one (id, revision) pair per entry the
 * agent holds) that was ≈ 15 % of all the server allocated per sync at 1,000 agents (a sampling heap
 * profile), the largest single item, all of it garbage for the young generation. This one reads the
 * varints as numbers and makes the same object proto-loader gives with the server's options
 * (`keepCase`, `longs: String`, `defaults`): every field present, int64 as a signed decimal
 * string. `test/unit/sync-request-decoder.test.ts` checks it against proto-loader's
 * decoder on random messages, unknown fields and every truncation.
 *
 * Hostile input: a field whose wire type is not the one node.proto gives it, a varint longer than
 * 10 bytes, a length past the end, or a group is refused with `malformed-message`
 * (INVALID_ARGUMENT, the message naming the rule), through `undecodable` and the handler; unknown
 * fields of the other wire types are skipped.
 */
export function decodeSyncRequest(buf: Buffer): SyncRequestMsg {
  try {
    return decode(buf);
  } catch (err) {
    // grpc-js answers a deserializer's throw with a bare INTERNAL "Error deserializing request";
    // carried to the handler, the refusal names the broken rule with its catalogue code.
    if (err instanceof SvidscopeError) return { known_revision: '0', undecodable: err };
    throw err;
  }
}

function decode(buf: Buffer): SyncRequestMsg {
  const r = new Reader(buf, 0, buf.length);
  const msg: SyncRequestMsg = { known_revision: '0', incremental: false, known_entries: [] };
  while (r.pos < r.end) {
    const tag = r.varint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === VARINT) msg.known_revision = r.int64String();
    else if (field === 2 && wire === VARINT) msg.incremental = r.varintNonZero();
    else if (field === 3 && wire === LENGTH_DELIMITED) {
      // The same reader, its end narrowed to the embedded message: no reader per entry.
      const outerEnd = r.end;
      const len = r.length(); // read before pos is: the prefix moves it
      r.end = r.pos + len;
      msg.known_entries!.push(decodeEntryRevision(r));
      r.end = outerEnd;
    } else if (field >= 1 && field <= 3) throw malformed(`SyncAuthorizedEntriesRequest: field ${field} has wire type ${wire}, not the type node.proto gives it`);
    else r.skip(wire, field);
  }
  return msg;
}

/** Reads an EntryRevision from `r.pos` up to `r.end`, leaving `r.pos` at `r.end`. */
function decodeEntryRevision(r: Reader): { id: string; revision: string } {
  const out = { id: '', revision: '0' };
  while (r.pos < r.end) {
    const tag = r.varint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === LENGTH_DELIMITED) {
      const len = r.length();
      out.id = r.buf.toString('utf8', r.pos, r.pos + len);
      r.pos += len;
    } else if (field === 2 && wire === VARINT) out.revision = r.int64String();
    else if (field === 1 || field === 2) throw malformed(`EntryRevision: field ${field} has wire type ${wire}, not the type node.proto gives it`);
    else r.skip(wire, field);
  }
  return out;
}

const malformed = (message: string) => new SvidscopeError('malformed-message', message);

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;
const TWO_32 = 4294967296;

class Reader {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    /** Where the message being read ends (narrowed while an embedded one is read). */
    public end: number,
  ) {}

  private byte(): number {
    if (this.pos >= this.end) throw malformed('protobuf: message truncated inside a varint');
    return this.buf[this.pos++]!;
  }

  /** The high 32 bits of the last varint read (its low ones are returned): no pair allocated per varint. */
  private hi = 0;

  /** A varint's low 32 bits (unsigned), its high ones in `hi`; bits past 64 are dropped, as protobuf does. */
  private varint64(): number {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      const b = this.byte();
      const bits = b & 0x7f;
      if (i < 4) lo += bits * 2 ** (7 * i);
      else if (i === 4) {
        lo += (bits & 0x0f) * 2 ** 28;
        hi += bits >>> 4;
      } else hi += bits * 2 ** (7 * i - 32);
      if (b < 0x80) {
        this.hi = hi % TWO_32;
        return lo;
      }
    }
    throw malformed('protobuf: varint longer than 10 bytes');
  }

  varint32(): number {
    return this.varint64();
  }

  varintNonZero(): boolean {
    const lo = this.varint64();
    return lo !== 0 || this.hi !== 0;
  }

  /** A signed int64 as its decimal string, exactly (through BigInt only past 2^53). */
  int64String(): string {
    const lo = this.varint64();
    const hi = this.hi;
    if (hi < 0x200000) return String(hi * TWO_32 + lo);
    return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo)).toString();
  }

  /** A length prefix, checked against what is left. */
  length(): number {
    const len = this.varint64();
    if (this.hi !== 0 || len > this.end - this.pos) throw malformed('protobuf: length-delimited field runs past the end of its message');
    return len;
  }

  skip(wire: number, field: number): void {
    if (field === 0) throw malformed('protobuf: field number 0');
    if (wire === VARINT) this.varint64();
    else if (wire === FIXED64) this.advance(8);
    else if (wire === LENGTH_DELIMITED) {
      const len = this.length(); // read before pos is: the prefix moves it
      this.pos += len;
    }
    else if (wire === FIXED32) this.advance(4);
    else throw malformed(`protobuf: wire type ${wire} (groups or invalid) is not accepted`);
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) throw malformed('protobuf: fixed-width field runs past the end of its message');
    this.pos += n;
  }
}
