// readProcFileSync: a /proc file (size 0 to stat) read whole, a file longer than one read read whole,
// and a missing file reported with its errno, as attestation expects (ENOENT/ESRCH mean "exited").
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readProcFileSync } from '../../src/identity-plane/agent/peercred/proc-file.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svidscope-proc-file-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('readProcFileSync', () => {
  it('reads a /proc file whole, as readFileSync does', () => {
    const text = readProcFileSync(`/proc/${process.pid}/status`);
    expect(text).toMatch(/^Name:/);
    expect(text).toMatch(/\nUid:/);
    // Only the counters may move between two reads; the shape and the ids do not.
    const lines = (t: string) => t.split('\n').filter((l) => /^(Name|Uid|Gid|Groups):/.test(l));
    expect(lines(text)).toEqual(lines(fs.readFileSync(`/proc/${process.pid}/status`, 'latin1')));
  });

  it('reads a file longer than one read to its end, byte for byte', () => {
    const file = path.join(dir, 'long');
    const content = Array.from({ length: 6000 }, (_, i) => `line ${i}`).join('\n');
    fs.writeFileSync(file, content);
    expect(content.length).toBeGreaterThan(3 * 16 * 1024);
    expect(readProcFileSync(file)).toBe(content);
  });

  it('throws the fs error of a file that is gone', () => {
    expect(() => readProcFileSync(path.join(dir, 'missing'))).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });
});
