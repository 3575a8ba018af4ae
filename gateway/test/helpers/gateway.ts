import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../src/config';
import { startGateway, type Gateway } from '../../src/gateway';
import type { Logger } from '../../src/logger';
import { stopAfterwards } from './cleanup';
import type { TestDatabase } from './database';
import { testLogger } from './logger';

/**
 * A gateway on a loopback port of its own, against a test database, with a spool directory of its own
 * (removed by stop() unless `SPOOL_DIR` was given); stop() it in afterAll. One that a test leaves
 * running (say an assertion failed before its stop()) is stopped after that test (cleanup.ts).
 */
export async function startTestGateway(
  db: TestDatabase,
  env: Record<string, string> = {},
  logger: Logger = testLogger,
): Promise<Gateway & { config: Config }> {
  const spoolDir = env.SPOOL_DIR ?? (await mkdtemp(path.join(os.tmpdir(), 'mg-spool-')));
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: db.url,
    BATCH_MAX_WAIT_MS: '5',
    SPOOL_DIR: spoolDir,
    ...env,
  });
  const removeSpoolDir = async (): Promise<void> => {
    if (env.SPOOL_DIR === undefined) await rm(spoolDir, { recursive: true, force: true });
  };
  const gateway = await startGateway(config, db.url, logger).catch(async (error: unknown) => {
    await removeSpoolDir();
    throw error;
  });
  const stopGateway = gateway.stop;
  let stopping: ReturnType<Gateway['stop']> | undefined;
  const stop = (): ReturnType<Gateway['stop']> =>
    (stopping ??= (async () => {
      forget();
      const result = await stopGateway();
      await removeSpoolDir();
      return result;
    })());
  const forget = stopAfterwards(stop);
  return Object.assign(gateway, { config, stop });
}

export interface JsonResponse<T = unknown> {
  readonly status: number;
  readonly headers: Headers;
  readonly body: T;
}

/** fetch, with the body parsed as JSON (every answer of the gateway is JSON). */
export async function request<T = any>(url: string, init: RequestInit = {}): Promise<JsonResponse<T>> {
  const response = await fetch(url, init);
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // left as text; the assertion will show it
  }
  return { status: response.status, headers: response.headers, body: body as T };
}

export function postJson<T = any>(
  url: string,
  value: unknown,
  headers: Record<string, string> = {},
): Promise<JsonResponse<T>> {
  return request<T>(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof value === 'string' ? value : JSON.stringify(value),
  });
}

export function postNdjson<T = any>(
  url: string,
  body: string | Buffer | Uint8Array,
  headers: Record<string, string> = {},
): Promise<JsonResponse<T>> {
  return request<T>(url, { method: 'POST', headers: { 'content-type': 'application/x-ndjson', ...headers }, body });
}
