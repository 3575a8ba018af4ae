/** Settings both projects share. */
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
      ...shared,
      displayName: 'integration',
      testMatch: INTEGRATION_TESTS.map((entry) => (entry.endsWith('/') ? `${entry}**/*.test.ts` : entry)),
      testPathIgnorePatterns: ['/node_modules/', '<rootDir>/dist/'],
      // Only when an integration test runs: dist/ rebuilt if older than the sources, one PostgreSQL
      // server and one migrated template per run (each test file clones a database); after the
      // summary, the database used and the tests that skipped themselves (run-notes.ts).
      globalSetup: '<rootDir>/gateway/test/helpers/global-setup.ts',
      globalTeardown: '<rootDir>/gateway/test/helpers/global-teardown.ts',
    },
  ],
};
