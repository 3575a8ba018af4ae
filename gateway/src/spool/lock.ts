import { open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';

const LOCK_FILE = 'spool.lock';

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Creates `file` with `content` unless it exists; false when it does. */
async function createExclusively(file: string, content: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(file, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    await handle.writeFile(content);
  } finally {
    await handle.close();
  }
  return true;
}

/**
 * Makes this process the only user of a spool directory: another live gateway replaying or writing
 * the same files would store rows twice. A lock left by a dead process is taken over.
 */
export async function lockSpoolDir(dir: string): Promise<() => Promise<void>> {
  const file = path.join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    if (await createExclusively(file, String(process.pid))) return () => unlink(file).catch(() => undefined);
    const owner = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (Number.isSafeInteger(owner) && owner > 0 && owner !== process.pid && processAlive(owner)) {
      throw new Error(`the spool directory ${dir} is in use by process ${owner}; give each gateway its own SPOOL_DIR`);
    }
    await unlink(file).catch(() => undefined);
  }
  throw new Error(`could not lock the spool directory ${dir}`);
}
