import { configDefaults, defineConfig } from 'vitest/config';

// Suites that stop or freeze the shared Ceph gateway: they run alone, after every other file, so no
// suite that needs S3 runs while the gateway is down.
const OUTAGES = ['test/integration/tier-faults.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // two cores: more parallel files only fight over them
    maxWorkers: 2,
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: { name: 'filestore', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...OUTAGES] },
      },
      {
        extends: true,
        test: { name: 'outages', include: OUTAGES, fileParallelism: false, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
