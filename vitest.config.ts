import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration tests start real processes and servers; two cores do not gain from many forks.
    maxWorkers: 2,
    // Several `svidscope up` stacks run at once in the suite: no racing for the default ports.
    env: { SVIDSCOPE_UP_EPHEMERAL_PORTS: '1' },
  },
});
