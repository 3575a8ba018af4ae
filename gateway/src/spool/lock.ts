import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { tryLock } from 'fs-native-extensions';

export const SPOOL_LOCK_FILE = 'spool.lock';

/** Node closes a FileHandle that is garbage-collected, which would drop its lock: held ones stay here. */
const heldLockFiles = new Set<FileHandle>();

/**
 * Makes this process the only user of a spool directory: another live gateway replaying or writing
 * the same files would store rows twice.
 *
 * The lock is the kernel's: an exclusive lock on the open file `spool.lock` (fs-native-extensions;
 * on Linux an open file description lock, fcntl F_OFD_SETLK). It belongs to the open file, not to a
 * PID, so two containers that are both PID 1 on one volume exclude each other, and it goes when the
 * holder dies however it dies, so nothing is ever stale and a reused PID means nothing. It also
 * holds across NFS clients (the lock manager) and for a second lock taken inside the same process.
 * The file's text (pid, host, start) only helps the refusal message; it is never trusted.
 *
 * Not chosen: a PID file (the defects above); proper-lockfile (a directory whose mtime the holder
 * refreshes: a holder stalled past `stale` is taken over while it still runs); a Unix socket bound in
 * the directory (a dead holder's socket must be unlinked before binding, and two starters that both
 * found it dead can unlink each other's fresh socket and both hold it; sockets on a shared file
 * system do not reach across hosts); a PostgreSQL advisory lock (it lives in a session, so a dropped
 * connection releases it silently while this process goes on writing the spool).
 *
 * The file is never deleted: a starter that opened the old file and one that created a new one
 * would then both get a lock.
 */
export async function lockSpoolDir(dir: string): Promise<() => Promise<void>> {
  const file = path.join(dir, SPOOL_LOCK_FILE);
  // No O_TRUNC: the holder's text stays readable for the refusal message.
  const handle = await open(file, constants.O_RDWR | constants.O_CREAT, 0o644);
  let locked = false;
  try {
    locked = tryLock(handle.fd);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EAGAIN') {
      await handle.close();
      throw new Error(`could not lock ${file}: ${(error as Error).message}`, { cause: error });
    }
  }
  if (!locked) {
    const holder = await describeHolder(handle).finally(() => handle.close());
    throw new Error(
      `the spool directory ${dir} is in use by ${holder}; give each gateway its own SPOOL_DIR ` +
        '(a second gateway on the same spool would replay and store its rows twice)',
    );
  }
  try {
    const holder = JSON.stringify({ pid: process.pid, host: os.hostname(), since: new Date().toISOString() });
    await handle.truncate(0);
    await handle.write(`${holder}\n`, 0);
  } catch (error) {
    await handle.close();
    throw error;
  }
  heldLockFiles.add(handle);
  let released: Promise<void> | undefined;
  // Closing the file releases the lock; the text goes first so that it never names a gone holder.
  const release = async (): Promise<void> => {
    await handle.truncate(0).catch(() => undefined);
    await handle.close();
    heldLockFiles.delete(handle);
  };
  return () => (released ??= release());
}

async function describeHolder(lockFile: FileHandle): Promise<string> {
  try {
    const { pid, host, since } = JSON.parse(await lockFile.readFile('utf8')) as Record<string, unknown>;
    return `process ${String(pid)} on host ${String(host)} (since ${String(since)})`;
  } catch {
    return 'process unknown (a gateway that has not written its name yet)';
  }
}
