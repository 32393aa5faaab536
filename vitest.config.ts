import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // two cores: more parallel files only fight over them
    maxWorkers: 2,
    reporters: ['default'],
  },
});
