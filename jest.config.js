const { existsSync } = require('node:fs');
const path = require('node:path');
const { ON_CITUS_GLOBAL, findCitus } = require('./gateway/test/helpers/find-citus.js');

/** Settings every project shares. */
const shared = {
  testEnvironment: 'node',
  moduleFileExtensions: ['ts', 'js', 'json'],
  // The client package from its sources, as its own tests see it: no build needed for a unit test.
  moduleNameMapper: { '^metrics-gateway-client$': '<rootDir>/client/src/index.ts' },
  transform: {
    // Transpile only, file by file: `npm run typecheck` (tsc --noEmit) does the type checking.
    '^.+\\.ts$': ['ts-jest', { tsconfig: { isolatedModules: true } }],
  },
};

// Test files that need PostgreSQL (or the built dist/); every other test file is a unit test.
const INTEGRATION_TESTS = ['<rootDir>/gateway/test/integration/', '<rootDir>/seed/test/seed-database.test.ts'];

// The suites that run a second time, on a Citus coordinator and two workers (docs/operations.md,
// "Citus"): what a distributed user_metrics changes. Ingest, deduplication, integrity (orphans
// refused, cascades), outages, reads, partitions. The rest (HTTP, auth, docs, tools) does not
// depend on where the rows land.
const CITUS_SUITES = [
  'bulk-upload',
  'bulk-edge-cases',
  'single-metric',
  'round-trip',
  'partitioned-writes',
  'flush-refusals',
  'lost-commit-answer',
  'spool-replay',
  'replay-faults',
  'client-faults',
  'integrity',
  'users-devices',
  'database-outage',
  'crash-recovery',
  'read-side',
  'partition-maintenance',
].map((name) => {
  const file = `gateway/test/integration/${name}.test.ts`;
  // A renamed suite would otherwise drop out of the citus project without a word.
  if (!existsSync(path.join(__dirname, file)))
    throw new Error(`jest.config.js: CITUS_SUITES names ${file}, which is gone`);
  return `<rootDir>/${file}`;
});

// TEST_CITUS=1 puts every integration suite on a Citus cluster instead (about 11.5 min).
const citusEverywhere = process.env.TEST_CITUS === '1';
const citusInstalled = findCitus() !== undefined;
const onCitus = { globals: { [ON_CITUS_GLOBAL]: true } };

/**
 * Both database projects. Only when one of their tests runs: dist/ rebuilt if older than the sources,
 * one PostgreSQL server (integration: one migrated template, each test file clones a database; citus:
 * a coordinator and two workers, each test file makes and migrates a database on every node); after
 * the summary, the servers used and the tests that skipped themselves (run-notes.ts).
 */
const integration = {
  ...shared,
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/dist/'],
  globalSetup: '<rootDir>/gateway/test/helpers/global-setup.ts',
  globalTeardown: '<rootDir>/gateway/test/helpers/global-teardown.ts',
};

/** @type {import('jest').Config} */
module.exports = {
  maxWorkers: 2,
  testTimeout: 30_000,
  projects: [
    {
      ...shared,
      displayName: 'unit',
      testMatch: ['<rootDir>/{gateway,seed,bench,client}/test/**/*.test.ts', '<rootDir>/tools/**/test/**/*.test.ts'],
      testPathIgnorePatterns: ['/node_modules/', '<rootDir>/dist/', ...INTEGRATION_TESTS],
    },
    {
      ...integration,
      displayName: 'integration',
      testMatch: INTEGRATION_TESTS.map((entry) => (entry.endsWith('/') ? `${entry}**/*.test.ts` : entry)),
      ...(citusEverywhere ? onCitus : {}),
    },
    // Without Citus installed the project is left out, and the run's last lines say so (global-setup.ts).
    ...(citusInstalled && !citusEverywhere
      ? [
          {
            ...integration,
            ...onCitus,
            displayName: 'citus',
            testMatch: CITUS_SUITES,
            globalSetup: '<rootDir>/gateway/test/helpers/citus-global-setup.ts',
            globalTeardown: '<rootDir>/gateway/test/helpers/citus-global-teardown.ts',
          },
        ]
      : []),
  ],
};
