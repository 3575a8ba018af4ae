// The one place that decides whether the tests can start a Citus cluster, and with which PostgreSQL:
// jest.config.js (the citus project), citus-cluster.ts and .ci/run ask it. `node
// gateway/test/helpers/find-citus.js` prints the PostgreSQL bin directory, or exits 1 when there is none.
const fs = require('node:fs');
const path = require('node:path');

const POSTGRES_ROOT = '/usr/lib/postgresql';

/** The jest global (a project's `globals`) that puts a project's test databases on a Citus cluster. */
const ON_CITUS_GLOBAL = 'MG_TEST_ON_CITUS';

/**
 * initdb and pg_ctl of the newest PostgreSQL under POSTGRES_ROOT that has citus.so installed
 * (../shared/citus/install puts it there), else undefined.
 */
function findCitus() {
  if (!fs.existsSync(POSTGRES_ROOT)) return undefined;
  const versions = fs.readdirSync(POSTGRES_ROOT).sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const dir = path.join(POSTGRES_ROOT, version);
    const initdb = path.join(dir, 'bin', 'initdb');
    if (fs.existsSync(path.join(dir, 'lib', 'citus.so')) && fs.existsSync(initdb)) {
      return { initdb, pgCtl: path.join(dir, 'bin', 'pg_ctl') };
    }
  }
  return undefined;
}

module.exports = { findCitus, ON_CITUS_GLOBAL, POSTGRES_ROOT };

if (require.main === module) {
  const found = findCitus();
  if (found === undefined) process.exit(1);
  process.stdout.write(`${path.dirname(found.initdb)}\n`);
}
