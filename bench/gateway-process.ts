// The gateway under test as a child process: this build, on the bench's database, with everything it
// writes (log, DATA_DIR and so its spool) in the run's work folder, never in the project's .data.

import path from 'node:path';
import { PROJECT_ROOT } from '../gateway/src/paths';
import { startService, type Service } from './child-processes';
import type { RunContext } from './runs';

export const GATEWAY_SCRIPT = path.join(PROJECT_ROOT, 'dist', 'gateway', 'src', 'main.js');

// "metrics-gateway  http://127.0.0.1:PORT" on stdout, or "url" in its JSON log line.
export const GATEWAY_URL = /(?:"url":"|metrics-gateway\s+)(http:\/\/[^"\s]+)/;

/** How long a server of the bench may take to start, and to stop (the gateway flushes its buffer on SIGTERM
 * within SHUTDOWN_TIMEOUT_MS, 30 s by default). */
export const START_TIMEOUT_MS = 30_000;
export const STOP_TIMEOUT_MS = 60_000;

export interface GatewayStart {
  readonly databaseUrl: string;
  readonly logLevel: string;
  /** The run's work folder: the log is `<label>.gateway.log` there, DATA_DIR is `<label>/`. */
  readonly workDir: string;
  /** Distinct for each gateway of a run (gateways that run at once must not share a spool). */
  readonly label: string;
  /** Its name in messages; `gateway` by default. */
  readonly name?: string;
  /** Settings of its own (PARTITION_INTERVAL, AUTH_REQUIRED, ...); what the bench sets wins. */
  readonly env?: NodeJS.ProcessEnv;
}

/** The environment of the gateway: ours (BATCH_MAX_ROWS, ... pass through), `start.env`, then the bench's own. */
export function gatewayEnvironment(start: GatewayStart, inherited: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return {
    ...inherited,
    ...start.env,
    DATABASE_URL: start.databaseUrl,
    DATA_DIR: path.join(start.workDir, start.label),
    // Its default, but one set in our environment would have every gateway of the run share it.
    SPOOL_DIR: path.join(start.workDir, start.label, 'spool'),
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: start.logLevel,
    MIGRATE_ON_START: 'false',
    SEED_DEMO_DATA: 'false',
  };
}

export function startGateway(start: GatewayStart): Promise<Service> {
  return startService({
    name: start.name ?? 'gateway',
    script: GATEWAY_SCRIPT,
    env: gatewayEnvironment(start),
    logFile: path.join(start.workDir, `${start.label}.gateway.log`),
    urlPattern: GATEWAY_URL,
    startTimeoutMs: START_TIMEOUT_MS,
    stopTimeoutMs: STOP_TIMEOUT_MS,
  });
}

/** The gateway of one run of the rounds, on the run's database; `label` names its log and DATA_DIR. */
export function startGatewayProcess(
  context: RunContext,
  label: string,
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<Service> {
  return startGateway({
    databaseUrl: context.db.url,
    logLevel: context.options.gatewayLogLevel,
    workDir: context.workDir,
    label,
    env: extraEnv,
  });
}
