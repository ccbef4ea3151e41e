/**
 * The server's signing pool: CSR checks and X.509-SVID signatures on worker threads, so issuance
 * uses every core instead of the one the event loop runs on. At the crypto floor one SVID costs
 * a key import, a CSR verification and a signature (≈ 150–250 µs of CPU), all of which run in the
 * workers; the main thread keeps authentication, authorization and admission (queue bound,
 * deadlines) and only moves bytes.
 *
 * Requests are cut into chunks queued first in, first out; a chunk is dispatched only to a worker
 * with fewer than BATCHES_IN_FLIGHT batches, after its caller's `beforeChunk` check (deadline,
 * cancel), so work for a caller that has gone is never started. Small chunks (one CSR per call)
 * that wait together go to a worker as one batch of up to a chunk's size.
 *
 * Key handling. The CA key reaches a worker as a KeyObject through its message port (cloned in
 * memory, never written anywhere), with the CA generation (CaManager.x509Signer), before the first
 * chunk of each generation. Each chunk names the generation it is signed under, and its result is
 * accepted only if that generation is still the active one when the result arrives; otherwise the
 * chunk is signed again under the new key. So no SVID from a key the main thread no longer holds
 * active (after an activation; taint and revoke apply only to keys that are not active) reaches a
 * caller, whatever the timing of a rotation.
 *
 * A worker that dies fails the batches it held with `signing-worker-failed` (the requests whose
 * chunks were in them, and no other) and is replaced at once. Size 0 signs on the main thread in the
 * same chunks, yielding to the event loop between them, with the same signing function.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { SvidscopeError } from '../../../common/errors/catalog.js';
import type { Logger } from '../../../common/log.js';
import type { X509SvidMinter } from '../../spiffe/mint/index.js';
import type { X509Signer } from './manager.js';
import { asBuffer, signJob, type FromSigningWorker, type SigningJob, type SigningOutcome, type ToSigningWorker } from './sign-job.js';

export type { SigningJob, SigningOutcome } from './sign-job.js';

/** Default pool size (`signing_workers`): one worker per core this process may use. */
export const defaultSigningWorkers = (): number => Math.max(1, availableParallelism());

/** CSRs per chunk: ≈ 5–8 ms of signing, small enough to spread one agent's batch over the workers. */
export const DEFAULT_SIGNING_CHUNK = 32;

/**
 * Batches in flight per worker. With one, a worker that finished idles until the main thread takes
 * its answer and sends the next batch, and under load the main thread answers late: the fleet bench
 * saw the two workers at 5 % of a core each while 2,000 CSRs waited and callers were refused as
 * overloaded. A second batch already in the worker's port keeps it signing meanwhile.
 */
export const BATCHES_IN_FLIGHT = 2;

/**
 * Young generation of each signing worker's heap, in MiB. What a worker allocates (a CSR's parse,
 * a certificate's bytes) dies within its chunk, so a small young generation costs nothing in
 * throughput (`bench -- issuance`, pool batches of 50: 6,735 SVIDs/s at 4 MiB against 5,948 at
 * V8's default in back-to-back runs), while the default let each worker keep tens of MiB after a
 * bulk mint: the fleet bench at 2,000 agents measured the server's peak RSS 418 MiB at 4 MiB and
 * 438 MiB at the default.
 */
const SIGNING_WORKER_YOUNG_GENERATION_MB = 4;

/** A chunk re-signed this many times because the CA kept rotating under it fails instead. */
const MAX_RESIGN = 3;

/** A worker that exits before it ever reported ready is restarted after this long, not in a tight loop. */
const STARTUP_FAILURE_BACKOFF_MS = 1000;

export interface SigningPoolOptions {
  /** Worker threads; 0 signs on the main thread. */
  readonly size: number;
  /** The active CA as a signer (CaManager.x509Signer): read at each dispatch and at each result. */
  readonly signer: () => X509Signer;
  /** The active CA's minter, for size 0 (CaManager.x509Minter). */
  readonly minter: () => X509SvidMinter;
  readonly logger: Logger;
  readonly chunk?: number;
  /** Lets `crashNextChunkForTest` make a worker exit mid-chunk. Tests only. */
  readonly testHooks?: boolean;
  /** A worker exited and was replaced (telemetry). */
  readonly workerRestarted?: () => void;
}

export interface SignRequest {
  readonly jobs: readonly SigningJob[];
  /** The signing time of a chunk (the server's injected clock). */
  readonly nowMs: () => number;
  /** Runs before each chunk starts; a throw (deadline passed, caller gone) fails the request with it. */
  readonly beforeChunk?: () => void;
  /** Called as chunks finish, with their size (to release admission as the work goes). */
  readonly chunkDone?: (n: number) => void;
}

/** One job's outcome and, when signed, the chain to append (that of the CA that signed it). */
export interface SignedItem {
  readonly outcome: SigningOutcome;
  readonly chainTail: readonly Buffer[];
}

export interface SigningPoolStats {
  readonly workers: number;
  readonly busy: number;
  /** Chunks waiting for a worker. */
  readonly queuedChunks: number;
}

interface Chunk {
  readonly request: SignRequest;
  readonly jobs: readonly SigningJob[];
  readonly offset: number;
  resigned: number;
  /** The request failed (another chunk, a deadline): skip this one. */
  readonly abandoned: () => boolean;
  done(outcomes: readonly SigningOutcome[], chainTail: readonly Buffer[]): void;
  fail(err: unknown): void;
}

interface Batch {
  readonly id: number;
  readonly chunks: Chunk[];
  readonly generation: number;
  readonly chainTail: readonly Buffer[];
}

interface Slot {
  readonly index: number;
  worker: Worker;
  ready: boolean;
  /** Generation of the key last sent to this worker. */
  generation: number | undefined;
  /** The batches in this worker, by id, oldest first: each one chunk, or several small ones of different requests sent together. */
  readonly inFlight: Map<number, Batch>;
  restartTimer?: NodeJS.Timeout;
}

export class SigningPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Chunk[] = [];
  private readonly chunkSize: number;
  private nextId = 0;
  private stopping = false;
  private crashNext = false;

  constructor(private readonly opts: SigningPoolOptions) {
    if (!Number.isInteger(opts.size) || opts.size < 0) throw new SvidscopeError('config-invalid', `signing pool size must be a whole number ≥ 0, got ${opts.size}`);
    this.chunkSize = Math.max(1, opts.chunk ?? DEFAULT_SIGNING_CHUNK);
  }

  get size(): number {
    return this.opts.size;
  }

  stats(): SigningPoolStats {
    return { workers: this.opts.size, busy: this.slots.filter((s) => s.inFlight.size > 0).length, queuedChunks: this.queue.length };
  }

  /** Checks and signs `request.jobs`; the items come back in order. Rejects as a whole (see the module comment). */
  async sign(request: SignRequest): Promise<SignedItem[]> {
    if (this.stopping) throw new SvidscopeError('unavailable', 'the server is stopping; nothing was signed');
    if (this.opts.size === 0) return this.signHere(request);
    // Started at the first batch, not with the server: a server that never signs a batch (most
    // test servers, an admin-only restart) does not pay for threads it does not use.
    while (this.slots.length < this.opts.size) this.slots.push(this.spawn(this.slots.length));
    const items: SignedItem[] = new Array<SignedItem>(request.jobs.length);
    return new Promise<SignedItem[]>((resolve, reject) => {
      let left = Math.ceil(request.jobs.length / this.chunkSize);
      let failed = false;
      if (left === 0) return resolve(items);
      for (let offset = 0; offset < request.jobs.length; offset += this.chunkSize) {
        const jobs = request.jobs.slice(offset, offset + this.chunkSize);
        this.queue.push({
          request, jobs, offset, resigned: 0,
          abandoned: () => failed,
          done: (outcomes, chainTail) => {
            if (failed) return;
            outcomes.forEach((outcome, i) => (items[offset + i] = { outcome, chainTail }));
            request.chunkDone?.(jobs.length);
            if (--left === 0) resolve(items);
          },
          fail: (err) => {
            if (failed) return;
            failed = true;
            reject(err);
          },
        });
      }
      this.pump();
    });
  }

  /** Makes the worker that takes the next chunk exit before answering (needs `testHooks`). */
  crashNextChunkForTest(): void {
    if (!this.opts.testHooks) throw new SvidscopeError('internal', 'signing pool: test hooks are off');
    this.crashNext = true;
  }

  /** Stops the workers; queued and in-flight chunks fail with `unavailable`. */
  async stop(): Promise<void> {
    this.stopping = true;
    const gone = new SvidscopeError('unavailable', 'the server is stopping; the batch was not signed');
    for (const chunk of this.queue.splice(0)) chunk.fail(gone);
    await Promise.all(this.slots.map(async (s) => {
      clearTimeout(s.restartTimer);
      for (const batch of s.inFlight.values()) for (const chunk of batch.chunks) chunk.fail(gone);
      s.inFlight.clear();
      await s.worker.terminate();
    }));
  }

  /** Size 0: the same chunks on the main thread, with a turn of the event loop between them. */
  private async signHere(request: SignRequest): Promise<SignedItem[]> {
    const items: SignedItem[] = [];
    for (let at = 0; at < request.jobs.length; at += this.chunkSize) {
      if (at > 0) await yieldToLoop();
      request.beforeChunk?.();
      // Read together, in one turn of the loop: the minter and the chain are of the same CA.
      const minter = this.opts.minter();
      const { chainTail } = this.opts.signer();
      const jobs = request.jobs.slice(at, at + this.chunkSize);
      for (const job of jobs) items.push({ outcome: signJob(minter, job, request.nowMs()), chainTail });
      request.chunkDone?.(jobs.length);
    }
    return items;
  }

  private pump(): void {
    // Fill the least loaded workers first, one batch at a time, up to BATCHES_IN_FLIGHT each.
    for (let depth = 0; depth < BATCHES_IN_FLIGHT; depth++) {
      for (const slot of this.slots) {
        if (slot.inFlight.size > depth || slot.restartTimer) continue;
        if (!this.dispatchNext(slot)) return;
      }
    }
  }

  /** Sends the next batch to `slot`; false when nothing is waiting. */
  private dispatchNext(slot: Slot): boolean {
    const first = this.next(this.chunkSize);
    if (!first) return false;
    // Small chunks of other requests (one CSR per call, say) ride along up to a chunk's size:
    // one message and one wake-up of the worker for many calls.
    const chunks = [first];
    let jobs = first.jobs.length;
    for (let more = this.next(this.chunkSize - jobs); more; more = this.next(this.chunkSize - jobs)) {
      chunks.push(more);
      jobs += more.jobs.length;
    }
    this.dispatch(slot, chunks);
    return true;
  }

  /** The next chunk of at most `room` jobs whose caller still waits, its `beforeChunk` passed. */
  private next(room: number): Chunk | undefined {
    while (this.queue.length > 0 && this.queue[0].jobs.length <= room) {
      const chunk = this.queue.shift()!;
      if (chunk.abandoned()) continue;
      try {
        chunk.request.beforeChunk?.();
        return chunk;
      } catch (err) {
        chunk.fail(err);
      }
    }
    return undefined;
  }

  private dispatch(slot: Slot, chunks: Chunk[]): void {
    let signer: X509Signer;
    try {
      signer = this.opts.signer();
    } catch (err) {
      for (const chunk of chunks) chunk.fail(err);
      return;
    }
    if (slot.generation !== signer.generation) {
      this.post(slot, { type: 'key', generation: signer.generation, caCertificateDer: signer.caCertificateDer, privateKey: signer.privateKey });
      slot.generation = signer.generation;
    }
    const id = ++this.nextId;
    slot.inFlight.set(id, { id, chunks, generation: signer.generation, chainTail: signer.chainTail });
    const crash = this.crashNext;
    this.crashNext = false;
    // Each CSR in a buffer of its own, moved (not copied) to the worker: the CSRs of a request are
    // views into the whole request's buffer, and cloning a view clones all of that buffer.
    const jobs = chunks.flatMap((c) => c.jobs.map((job) => ({ ...job, csr: new Uint8Array(job.csr) })));
    slot.worker.postMessage({ type: 'batch', id, generation: signer.generation, nowMs: chunks[0].request.nowMs(), jobs, ...(crash ? { crash } : {}) } satisfies ToSigningWorker,
      jobs.map((j) => j.csr.buffer));
  }

  private post(slot: Slot, m: ToSigningWorker): void {
    slot.worker.postMessage(m);
  }

  private onMessage(slot: Slot, m: FromSigningWorker): void {
    if (m.type === 'ready') {
      slot.ready = true;
      return;
    }
    const current = slot.inFlight.get(m.id);
    if (!current) return; // a chunk already failed by stop()
    slot.inFlight.delete(m.id);
    const { chunks } = current;
    if (m.type === 'failed') {
      for (const chunk of chunks) chunk.fail(new SvidscopeError('internal', `signing pool: ${m.message}`));
    } else if (this.activeGeneration() !== current.generation) {
      // The CA rotated while these chunks were signed: none of it may go out; sign them again under the new key.
      const again = chunks.filter((chunk) => {
        if (++chunk.resigned <= MAX_RESIGN) return true;
        chunk.fail(new SvidscopeError('unavailable', 'the CA rotated repeatedly while the batch was signed; retry'));
        return false;
      });
      this.queue.unshift(...again);
    } else {
      let at = 0;
      for (const chunk of chunks) {
        const outcomes = m.outcomes.slice(at, (at += chunk.jobs.length));
        chunk.done(outcomes.map((o) => (o.ok ? { ...o, der: asBuffer(o.der) } : o)), current.chainTail);
      }
    }
    this.pump();
  }

  private activeGeneration(): number | undefined {
    try {
      return this.opts.signer().generation;
    } catch {
      return undefined;
    }
  }

  private onExit(slot: Slot, code: number): void {
    if (this.stopping) return;
    const lost = [...slot.inFlight.values()].flatMap((b) => b.chunks);
    slot.inFlight.clear();
    const csrs = lost.reduce((n, c) => n + c.jobs.length, 0);
    this.opts.logger.error({ worker: slot.index, exitCode: code, csrs }, 'signing worker exited; restarting it');
    for (const chunk of lost) {
      chunk.fail(new SvidscopeError('signing-worker-failed', `the signing worker serving this batch exited (code ${code}) while signing ${csrs} CSRs; none of them was issued, retry`));
    }
    this.opts.workerRestarted?.();
    const restart = () => {
      slot.restartTimer = undefined;
      if (this.stopping) return;
      this.replace(slot);
      this.pump();
    };
    // A worker that never came up (a broken install, say) would fail the same way at once: wait a little.
    if (slot.ready) restart();
    else slot.restartTimer = setTimeout(restart, STARTUP_FAILURE_BACKOFF_MS);
    this.pump();
  }

  private replace(slot: Slot): void {
    const fresh = this.spawn(slot.index);
    slot.worker = fresh.worker;
    slot.ready = false;
    slot.generation = undefined;
    this.wire(slot);
  }

  private spawn(index: number): Slot {
    const { entry, eval: isCode } = workerEntry();
    const worker = new Worker(entry, {
      eval: isCode,
      workerData: { testHooks: this.opts.testHooks === true },
      resourceLimits: { maxYoungGenerationSizeMb: SIGNING_WORKER_YOUNG_GENERATION_MB },
    });
    const slot: Slot = { index, worker, ready: false, generation: undefined, inFlight: new Map() };
    this.wire(slot);
    return slot;
  }

  private wire(slot: Slot): void {
    const { worker } = slot;
    // The pool must not keep a stopping server alive; in-flight work keeps its caller's socket open anyway.
    worker.unref();
    worker.on('message', (m: FromSigningWorker) => {
      if (slot.worker === worker) this.onMessage(slot, m);
    });
    worker.on('error', (err) => {
      if (slot.worker === worker) this.opts.logger.error({ err, worker: slot.index }, 'signing worker failed');
    });
    worker.on('exit', (code) => {
      if (slot.worker === worker) this.onExit(slot, code);
    });
  }
}

/**
 * How to start a worker: the compiled module next to this one (.js under dist/), or, run from
 * source (.ts through tsx, as the tests and a checkout before its first build run), a bootstrap
 * that registers tsx in the worker and then imports the TypeScript module. Node 20 does not carry
 * the main thread's loader hooks into a worker, nor run an `--import` of its execArgv there in
 * time for the worker's entry, so the worker registers tsx itself.
 */
function workerEntry(): { entry: URL | string; eval: boolean } {
  const fromSource = import.meta.url.endsWith('.ts');
  if (!fromSource) return { entry: new URL('./signing-worker.js', import.meta.url), eval: false };
  const worker = new URL('./signing-worker.ts', import.meta.url).href;
  // tsx's ESM API (the `import` condition of `tsx/esm/api`; require.resolve gives its CommonJS twin).
  const tsxApi = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href;
  return { entry: `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(worker)}); });`, eval: true };
}
