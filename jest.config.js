/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  testMatch: ['<rootDir>/{gateway,seed,bench}/test/**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/dist/'],
  moduleFileExtensions: ['ts', 'js', 'json'],
  transform: {
    // Transpile only, file by file: `npm run typecheck` (tsc --noEmit) does the type checking.
    '^.+\\.ts$': ['ts-jest', { tsconfig: { isolatedModules: true } }],
  },
  // One PostgreSQL server and one migrated template per run; each test file clones a database.
  globalSetup: '<rootDir>/gateway/test/helpers/global-setup.ts',
  globalTeardown: '<rootDir>/gateway/test/helpers/global-teardown.ts',
  testTimeout: 30_000,
  maxWorkers: 2,
};
