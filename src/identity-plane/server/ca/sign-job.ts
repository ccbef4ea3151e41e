/**
 * One X.509-SVID request as the signing pool carries it, and the function that serves it: check
 * the CSR (decode, self-signature), then mint. The same function runs on the main thread
 * (`signing_workers = 0`) and in the worker threads, so both paths answer alike, refusals included.
 * Everything here crosses a thread boundary by structured clone: plain data only.
 */
import type { KeyObject } from 'node:crypto';
import { isSvidscopeError, type ErrorCode } from '../../../common/errors/catalog.js';
import { parseSpiffeId } from '../../spiffe/id/index.js';
import { parseCsr, type X509SvidMinter } from '../../spiffe/mint/index.js';

export interface SigningJob {
  /** The CSR as received (DER); checked here, not by the caller. */
  readonly csr: Uint8Array;
  /** The entry's SPIFFE ID, already authorized for the caller. */
  readonly spiffeId: string;
  readonly ttlSeconds: number;
  readonly dnsNames: readonly string[];
}

export type SigningOutcome =
  | {
    readonly ok: true;
    readonly der: Buffer;
    readonly notAfterMs: number;
    /** Time spent on this item (CSR check and signature), seconds. */
    readonly seconds: number;
  }
  | {
    readonly ok: false;
    /** A catalogue code; `internal` for anything unexpected (its message then says what). */
    readonly code: ErrorCode;
    readonly message: string;
    /** Whether the CSR passed its check (false = refused as a CSR, for the csr counter). */
    readonly csrValid: boolean;
    readonly seconds: number;
  };

/** Serves one job with `minter` at `nowMs`; never throws. */
export function signJob(minter: X509SvidMinter, job: SigningJob, nowMs: number): SigningOutcome {
  const start = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - start) / 1e9;
  let csrValid = false;
  try {
    const csr = parseCsr(asBuffer(job.csr));
    csrValid = true;
    const minted = minter.mint({ id: parseSpiffeId(job.spiffeId), publicKey: csr.publicKey, ttlSeconds: job.ttlSeconds, now: new Date(nowMs), dnsNames: job.dnsNames });
    return { ok: true, der: minted.der, notAfterMs: minted.notAfter.getTime(), seconds: elapsed() };
  } catch (err) {
    return isSvidscopeError(err)
      ? { ok: false, code: err.code, message: err.message, csrValid, seconds: elapsed() }
      : { ok: false, code: 'internal', message: `failed to sign X509-SVID: ${err instanceof Error ? err.message : String(err)}`, csrValid, seconds: elapsed() };
  }
}

/** Main thread → signing worker. */
export type ToSigningWorker =
  /** The CA to sign with from now on; sent before the first batch of each generation. */
  | { readonly type: 'key'; readonly generation: number; readonly caCertificateDer: Uint8Array; readonly privateKey: KeyObject }
  | { readonly type: 'batch'; readonly id: number; readonly generation: number; readonly nowMs: number; readonly jobs: readonly SigningJob[]; readonly crash?: boolean };

/** Signing worker → main thread. */
export type FromSigningWorker =
  | { readonly type: 'ready' }
  /** The SVIDs' DER each in a buffer of its own, moved to the main thread. */
  | { readonly type: 'result'; readonly id: number; readonly outcomes: readonly SigningOutcome[] }
  /** The batch could not be served at all (no key of its generation, the CA refused): nothing was signed. */
  | { readonly type: 'failed'; readonly id: number; readonly message: string };

/** A Buffer view of bytes that crossed a thread (structured clone delivers a plain Uint8Array). */
export const asBuffer = (u: Uint8Array): Buffer => (Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength));
