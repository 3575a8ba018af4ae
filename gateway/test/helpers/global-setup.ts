import { existsSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'pg';
import { databaseUrl, openDevServer, withClient, type DevServer } from '../../src/db/dev-postgres';
import { migrate } from '../../src/db/migrate';
import { startCitusCluster } from './citus-cluster';
import { createDatabase, dropDatabase, randomId, runEnvironment, templateName } from './database';
import { ON_CITUS_GLOBAL, findCitus } from './find-citus';
import { ensureFreshBuild } from './build-freshness';
import { testLogger } from './logger';
import { addRunNote, openRunNotes } from './run-notes';

// Runs once per jest run for each project that has tests to run (integration, citus), in the parent
// process, before the workers start; the workers inherit the environment variables set here.

/** What jest passes of a project's configuration. */
export interface ProjectOfRun {
  readonly globals?: Record<string, unknown>;
}

/** Whether the project's test databases are on a Citus cluster (jest.config.js sets the global). */
export function projectOnCitus(project: ProjectOfRun): boolean {
  return project.globals?.[ON_CITUS_GLOBAL] === true;
}

/** What global-teardown.ts needs. Jest runs both hooks in one process, so globalThis carries it across. */
export interface TestRunState {
  readonly serverUrl: string;
  readonly runId: string;
  stopServer(): Promise<void>;
}

const stateKey = (citus: boolean) => `__metricsGatewayTestRun${citus ? 'Citus' : ''}`;
type GlobalWithState = typeof globalThis & Record<string, TestRunState | undefined>;

export function takeTestRunState(citus: boolean): TestRunState | undefined {
  const global = globalThis as GlobalWithState;
  const state = global[stateKey(citus)];
  delete global[stateKey(citus)];
  return state;
}

export default async function globalSetup(_globalConfig: unknown, project: ProjectOfRun): Promise<void> {
  ensureFreshBuild((line) => process.stderr.write(`\n${line}\n`));
  const citus = projectOnCitus(project);
  // Plain: TEST_DATABASE_URL, else DATABASE_URL, else a postgres:16 container when Docker answers, else
  // embedded. Citus: a coordinator and two workers started here (docs/operations.md, "Citus").
  const server = citus
    ? await startCitusServer()
    : await openDevServer({
        env: process.env,
        variables: ['TEST_DATABASE_URL', 'DATABASE_URL'],
        logger: testLogger,
        alternative: async () => ((await dockerAnswers()) ? startContainer() : undefined),
      });
  const runId = randomId();
  openRunNotes(runId);
  if (!citus && findCitus() === undefined) {
    addRunNote('SKIPPED: the citus project (suites run again on a Citus cluster): Citus is not installed');
  }
  try {
    // On Citus every test file makes and migrates a database of its own (database.ts).
    if (!citus) await createTemplate(server.url, templateName(runId));
    const version = await withClient(server.url, (client) =>
      client.query<{ v: string }>("SELECT current_setting('server_version') AS v"),
    );
    addRunNote(`test database: PostgreSQL ${version.rows[0]?.v} from ${server.source}`);
  } catch (error) {
    await withClient(server.url, (client) => dropDatabase(client, templateName(runId))).catch(() => undefined);
    await server.stop();
    throw error;
  }
  const variables = runEnvironment(citus);
  process.env[variables.serverUrl] = server.url;
  process.env[variables.runId] = runId;
  (globalThis as GlobalWithState)[stateKey(citus)] = { serverUrl: server.url, runId, stopServer: () => server.stop() };
  testLogger.info({ source: server.source, runId }, 'test database server ready');
}

async function startCitusServer(): Promise<DevServer> {
  const cluster = await startCitusCluster();
  process.env[runEnvironment(true).citusWorkers] = JSON.stringify(cluster.workerServerUrls);
  return { url: cluster.serverUrl, source: 'a Citus coordinator and 2 workers', stop: cluster.stop };
}

async function startContainer(): Promise<DevServer> {
  // Loaded only when needed: testcontainers is large and most runs here have no Docker.
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const container = await new PostgreSqlContainer('postgres:16').start();
  return {
    url: container.getConnectionUri(),
    source: 'testcontainers postgres:16',
    stop: async () => {
      await container.stop();
    },
  };
}

async function createTemplate(serverUrl: string, name: string): Promise<void> {
  await withClient(serverUrl, (client) => createDatabase(client, name, 'template0'));
  const pool = new Pool({ connectionString: databaseUrl(serverUrl, name), max: 1 });
  try {
    await migrate(pool, testLogger);
  } finally {
    await pool.end();
  }
}

/**
 * Whether a Docker engine answers /_ping within a second. Checked before loading testcontainers,
 * which would otherwise take its time to find out that there is none.
 */
async function dockerAnswers(): Promise<boolean> {
  const dockerHost = process.env.DOCKER_HOST;
  if (dockerHost && !dockerHost.startsWith('unix://')) {
    // Any HTTP answer counts, even a TLS port's complaint about plain HTTP: something is listening.
    const { hostname, port } = new URL(dockerHost.replace(/^tcp:/, 'http:'));
    return answersHttp({ host: hostname, port: Number(port) || 2375 });
  }
  const sockets = dockerHost
    ? [dockerHost.slice('unix://'.length)]
    : [
        '/var/run/docker.sock',
        path.join(os.homedir(), '.docker', 'run', 'docker.sock'),
        ...(process.env.XDG_RUNTIME_DIR ? [path.join(process.env.XDG_RUNTIME_DIR, 'docker.sock')] : []),
      ];
  for (const socketPath of sockets) {
    if (existsSync(socketPath) && (await answersHttp({ socketPath }))) return true;
  }
  return false;
}

function answersHttp(target: http.RequestOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get({ ...target, path: '/_ping', timeout: 1000 }, (response) => {
      response.resume();
      resolve(true);
    });
    request.once('timeout', () => {
      resolve(false);
      request.destroy();
    });
    request.once('error', () => resolve(false));
  });
}
