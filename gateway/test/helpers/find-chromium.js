// The one place that decides which Chromium the status page's browser test drives. .ci/run asks the
// same question before it installs one: `node gateway/test/helpers/find-chromium.js` prints the path,
// or exits 1 when there is none.
const fs = require('node:fs');
const path = require('node:path');

const NAMES = ['chromium', 'chromium-browser'];

function isExecutableFile(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * CHROMIUM_PATH when it is set (only that: a wrong path is reported, not replaced by another browser),
 * else the first of NAMES on the PATH; undefined when there is none.
 */
function findChromium(env = process.env) {
  if (env.CHROMIUM_PATH) return isExecutableFile(env.CHROMIUM_PATH) ? env.CHROMIUM_PATH : undefined;
  for (const dir of (env.PATH || '').split(path.delimiter)) {
    if (dir === '') continue;
    for (const name of NAMES) {
      const candidate = path.join(dir, name);
      if (isExecutableFile(candidate)) return candidate;
    }
  }
  return undefined;
}

module.exports = { findChromium };

if (require.main === module) {
  const found = findChromium();
  if (found === undefined) process.exit(1);
  process.stdout.write(`${found}\n`);
}
