/**
 * Reads a small /proc file (`status`, `stat`) synchronously into one reused buffer.
 *
 * /proc files report size 0, so `readFileSync` allocates a 64 KiB buffer for each, and the
 * promise API adds four thread-pool round trips (open, fstat, read, close): with a thousand
 * workloads connecting at once, that was most of the agent's cost of a connection. The kernel
 * generates these files from memory, so a synchronous read costs microseconds and never waits on
 * a disk.
 */
import fs from 'node:fs';

/** Larger than any `status` (≈ 1.5 KiB) or `stat` line; a file that does not fit is read on in steps. */
const CHUNK = 16 * 1024;
// One buffer for the process: reads are synchronous, so no two can ever use it at once.
let scratch: Buffer | undefined;

/** The whole file as latin1 text (the /proc files read here are ASCII). Errors are fs errors. */
export function readProcFileSync(file: string): string {
  scratch ??= Buffer.allocUnsafe(CHUNK);
  const fd = fs.openSync(file, fs.constants.O_RDONLY);
  try {
    let text = '';
    for (;;) {
      const n = fs.readSync(fd, scratch, 0, CHUNK, null);
      if (n === 0) return text;
      text += scratch.toString('latin1', 0, n);
    }
  } finally {
    fs.closeSync(fd);
  }
}
