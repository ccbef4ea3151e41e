import { configDefaults, defineConfig } from 'vitest/config';
import { TIER_NAMES, tierGlobs } from './test/tiers.js';

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration tests start real processes and servers; two cores do not gain from many forks.
    maxWorkers: 2,
    // A worker that stops answering is never timed out by vitest (its timers live in that worker):
    // test/support/stall-watchdog.ts ends it, and asks it first for a diagnostic report
    // (SIGUSR2) that shows where its JavaScript stands.
    execArgv: ['--report-on-signal', '--report-signal=SIGUSR2', '--report-directory=.svidscope/stall-reports'],
    // Several `svidscope up` stacks run at once in the suite: no racing for the default ports.
    env: { SVIDSCOPE_UP_EPHEMERAL_PORTS: '1' },
    // One project per tier (test/tiers.ts): `vitest run --project unit` runs one, `vitest run` all,
    // each file exactly once.
    projects: TIER_NAMES.map((name) => {
      const globs = tierGlobs(name);
      return { extends: true, test: { name, include: globs.include, exclude: [...configDefaults.exclude, ...globs.exclude] } };
    }),
  },
});
