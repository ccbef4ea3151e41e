#!/usr/bin/env node
import { runCli } from './main.js';

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`error: internal error: ${err instanceof Error ? err.message : String(err)} [internal]\n`);
    process.exitCode = 5;
  },
);
