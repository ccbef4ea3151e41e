// Prints the closing "N passed, N failed, N skipped" line from vitest's JSON report, and fails
// when no test ran at all (a run that tests nothing must not look green).
//
// Usage: test-summary.mjs [--rerun RERUN_REPORT] [--stalled STALLED_LIST] REPORT
// - A rerun report (the files whose worker the stall watchdog ended, run again on their own)
//   replaces those files' results in REPORT; the line then says how many files were rerun.
// - A file named in STALLED_LIST (the watchdog's list from the last run) counts as failed: vitest
//   reports an ended worker's unfinished tests as pending, in a file marked passed.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ options: { rerun: { type: 'string' }, stalled: { type: 'string' } }, allowPositionals: true });
const [mainPath] = positionals;
const rerunPath = values.rerun;
const stillStalled = new Set(
  values.stalled && existsSync(values.stalled) ? readFileSync(values.stalled, 'utf8').split('\n').filter(Boolean).map((f) => path.resolve(f)) : [],
);
const byFile = new Map();
for (const file of JSON.parse(readFileSync(mainPath, 'utf8')).testResults) byFile.set(file.name, file);
let rerunFiles = 0;
if (rerunPath) {
  for (const file of JSON.parse(readFileSync(rerunPath, 'utf8')).testResults) {
    byFile.set(file.name, file);
    rerunFiles++;
  }
}

let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of byFile.values()) {
  if (stillStalled.has(file.name)) {
    console.error(`${file.name}: stalled, and its worker was ended by the stall watchdog`);
    failed++;
    continue;
  }
  for (const test of file.assertionResults) {
    if (test.status === 'passed') passed++;
    else if (test.status === 'failed') failed++;
    else skipped++; // pending, skipped, todo
  }
  // A file that failed without a failing test (it did not load, or its worker died) counts once.
  if (file.status === 'failed' && !file.assertionResults.some((t) => t.status === 'failed')) {
    console.error(`${file.name}: ${file.message || 'failed outside its tests'}`);
    failed++;
  }
}
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped${rerunFiles ? ` (${rerunFiles} stalled file(s) run again on their own)` : ''}`);
if (passed + failed === 0) {
  console.error('no test ran');
  process.exit(1);
}
process.exit(failed > 0 ? 1 : 0);
