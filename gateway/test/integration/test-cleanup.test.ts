import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { startTestGateway } from '../helpers/gateway';
import { startGatewayProcess, type GatewayProcess } from '../helpers/process';

// A test that fails midway never reaches its own stop(). The helpers stop what it started
// (helpers/cleanup.ts), so no gateway process outlives its test and no server keeps a port and a pool.

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

let leftProcess: GatewayProcess | undefined;
let leftGateway: Awaited<ReturnType<typeof startTestGateway>> | undefined;

// At the top level, this hook runs after the helpers' afterEach: Jest runs the after-hooks of one
// block in the order they were declared, and the helpers declared theirs on import.
afterEach(async () => {
  expect(leftProcess?.child.signalCode).toBe('SIGKILL');
  expect(leftGateway?.server.listening).toBe(false);
  await expect(fetch(`${leftGateway?.url}/healthz`)).rejects.toThrow();
});

it('stops what a test left running: a gateway process and an in-process gateway', async () => {
  leftProcess = await startGatewayProcess({ DATABASE_URL: db.url, SPOOL: 'false' });
  leftGateway = await startTestGateway(db);
  expect((await fetch(`${leftGateway.url}/healthz`)).status).toBe(200);
  expect((await fetch(`${leftProcess.url}/healthz`)).status).toBe(200);
});
