import { defineConfig } from 'vitest/config';

const shared = {
  testTimeout: 60_000,
  hookTimeout: 120_000,
};

export default defineConfig({
  test: {
    // Envoy end-to-end files each start real processes; two cores do not like many at once.
    maxWorkers: 2,
    reporters: ['default'],
    projects: [
      { test: { ...shared, name: 'core', include: ['test/**/*.test.ts'], exclude: ['test/k8s/**'] } },
      // Only runs (and only starts the API server) when test/k8s files are selected.
      { test: { ...shared, name: 'k8s', include: ['test/k8s/**/*.test.ts'], globalSetup: ['test/k8s/global-setup.ts'] } },
    ],
  },
});
