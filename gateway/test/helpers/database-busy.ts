import { DatabaseError } from 'pg';

/** 55006 (object_in_use): CREATE DATABASE ... TEMPLATE or DROP DATABASE found another session on it. */
export function isDatabaseBusy(error: unknown): boolean {
  return error instanceof DatabaseError && error.code === '55006';
}
