// The part of fs-native-extensions (no types of its own) that spool/lock.ts uses.
declare module 'fs-native-extensions' {
  /** An exclusive lock on the whole file unless `shared`; false when another open file holds one. */
  export function tryLock(fd: number, options?: { shared?: boolean }): boolean;
}
