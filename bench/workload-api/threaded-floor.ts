/**
 * `npm run bench -- workload-api threads`: would serving the Workload API on more than one thread
 * bring 1,000 simultaneous callers under 100 ms on this machine? Measured without the agent, on
 * the h2 floor (Node's HTTP/2 answering every stream with a framed answer), served:
 * - on the accepting thread (0 workers), as the agent does, or
 * - by 1 or 2 worker threads: the main thread accepts, duplicates the connection's descriptor
 *   (dup(2) through koffi, as the agent's SO_PEERCRED read) and hands it round-robin to a
 *   worker, which wraps it in a net.Socket and serves HTTP/2 on it (Node cannot move a socket
 *   object between threads, but a descriptor is the process's);
 * each with no other work per stream, and with a fixed amount of CPU per stream (busy-waited) that
 * stands for what the agent adds (attestation, lookup, metrics: ≈ 0.1 ms per stream).
 * The callers are the frame client, in its own process, on the same two cores.
 */
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { execa } from 'execa';
import { socketFd } from '../../src/common/peercred.js';
import { percentile } from '../fleet/measure.js';
import type { BenchContext, BenchFigures } from '../run.js';

/** The HTTP/2 floor in a thread: answers every stream with `framed`, after `burnUs` of busy CPU. */
const SERVE = `
const http2 = require('node:http2');
function serve(framed, burnUs) {
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('error', () => undefined);
    const until = performance.now() + burnUs / 1000;
    while (performance.now() < until);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    stream.write(framed);
  });
  return server;
}`;
const WORKER = `${SERVE}
const net = require('node:net');
const { parentPort, workerData } = require('node:worker_threads');
const server = serve(Buffer.from(workerData.framed), workerData.burnUs);
parentPort.on('message', (fd) => server.emit('connection', new net.Socket({ fd, readable: true, writable: true })));`;

interface ThreadedFloor {
  close(): Promise<void>;
}

async function startThreadedFloor(socketPath: string, framed: Buffer, workers: number, burnUs: number): Promise<ThreadedFloor> {
  const threads = Array.from({ length: workers }, () => new Worker(WORKER, { eval: true, workerData: { framed, burnUs } }));
  // The same function as the workers', for the accepting thread itself (0 workers).
  const local = workers === 0 ? (new Function('require', `${SERVE}; return serve;`)(createRequire(import.meta.url)) as (f: Buffer, b: number) => net.Server)(framed, burnUs) : undefined;
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  const dup = koffi.load('libc.so.6').func('int dup(int)') as (fd: number) => number;
  let next = 0;
  // Paused on connect: nothing is read on this thread from a connection handed to a worker.
  const listener = net.createServer({ pauseOnConnect: workers > 0 }, (socket) => {
    if (local) return void local.emit('connection', socket);
    const fd = dup(socketFd(socket));
    threads[next++ % workers].postMessage(fd);
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(socketPath, resolve));
  return {
    close: async () => {
      await Promise.all(threads.map((t) => t.terminate()));
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    },
  };
}

export async function measureThreadedFloor(ctx: BenchContext, clientArgs: string[], workDir: string, framed: Buffer, repeat: number): Promise<BenchFigures> {
  const figures: BenchFigures = {};
  for (const burnUs of [0, 100]) {
    for (const workers of [0, 1, 2]) {
      const socketPath = path.join(workDir, `threads-${workers}-${burnUs}.sock`);
      const floor = await startThreadedFloor(socketPath, framed, workers, burnUs);
      try {
        for (const channels of [10, 1000]) {
          const p99s: number[] = [];
          for (let run = 0; run < repeat; run++) {
            const out = await execa(process.execPath, [...clientArgs, 'streams', socketPath, '1000', String(channels)]);
            const { latencies, errors } = JSON.parse(String(out.stdout)) as { latencies: number[]; errors: number };
            if (errors > 0) throw new Error(`${errors} streams failed`);
            p99s.push(percentile(latencies, 99));
          }
          const best = Math.min(...p99s);
          ctx.log(`1000 streams over ${channels} channels, ${workers} worker threads, ${burnUs} µs of work per stream: p99 ${p99s.map((p) => p.toFixed(1)).join(' / ')} ms (best ${best.toFixed(1)})`);
          figures[`threads${workers}Burn${burnUs}us1000x${channels}chP99Ms`] = +best.toFixed(1);
        }
      } finally {
        await floor.close();
      }
    }
  }
  return figures;
}
