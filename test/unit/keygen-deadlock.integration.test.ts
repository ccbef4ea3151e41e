// Regression: on Node 20 a KeyObject straight from generateKeyPairSync, exported as a JWK, could
// hang its thread for good (the export holds the key's lock while allocating; the collection that
// allocation starts destroys the lingering generation job, whose destructor takes the same lock).
// An agent minting 10,000 SVIDs stopped that way. The old way (generateKeyPairSync, then
// export as JWK) hung in 5 of 6 runs of 20,000 keys with a 1 MiB young generation; two such runs
// here would both pass it by about 1 time in 36. svidscope's keys must pass every time.
import { execa } from 'execa';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const KEYS = 20_000;

describe('key generation and export under frequent garbage collection', () => {
  it(`never hangs: twice ${KEYS} keys made, exported as JWK and PKCS#8, and used to sign CSRs`, async () => {
    const script = path.join(import.meta.dirname, 'fixtures', 'keygen-loop.ts');
    const run = () => execa(process.execPath, ['--max-semi-space-size=1', '--import', 'tsx', script, String(KEYS)], { timeout: 120_000, reject: false });
    const results = await Promise.all([run(), run()]);
    for (const r of results) {
      expect(r.timedOut, 'a key operation hung').toBe(false);
      expect(r.stdout).toBe('done');
    }
  }, 150_000);
});
