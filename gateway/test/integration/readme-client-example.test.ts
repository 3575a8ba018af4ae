import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { PROJECT_ROOT } from '../../src/paths';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { startTestGateway } from '../helpers/gateway';

// The README's TypeScript example of the client library, run as written (types stripped, as an ES
// module with top-level await) against a gateway with the demo data, as `npm start` has it: only the
// gateway's address is changed. docs-examples.test.ts runs the shell examples; this one runs the code.

const PACKAGE_NAME = 'metrics-gateway-client';
const README_URL = 'http://127.0.0.1:8080';

function readmeTypeScriptBlocks(): string[] {
  const readme = readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
  return [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((match) => match[1] as string);
}

let db: TestDatabase;
let scratch: string;

beforeAll(async () => {
  db = await createTestDatabase();
  scratch = await mkdtemp(path.join(os.tmpdir(), 'mg-readme-client-'));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
  await db?.drop();
});

it('the README has one client example, and it stores its event and exits', async () => {
  const blocks = readmeTypeScriptBlocks();
  expect(blocks).toHaveLength(1);
  const source = blocks[0] as string;
  expect(source).toContain(README_URL);
  expect(source).toContain(`from '${PACKAGE_NAME}'`);

  const gateway = await startTestGateway(db, { SEED_DEMO_DATA: 'true' });
  try {
    const before = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM user_metrics');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    const program = outputText
      .replace(`'${PACKAGE_NAME}'`, `'${path.join(PROJECT_ROOT, 'client', 'dist', 'index.js')}'`)
      .replace(README_URL, gateway.url);
    const file = path.join(scratch, 'example.mjs');
    await writeFile(file, program);
    const { stderr } = await promisify(execFile)(process.execPath, [file], { timeout: 20_000 });
    // The example warns on stderr for every refused event.
    expect(stderr).toBe('');
    const after = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM user_metrics');
    expect(Number(after.rows[0]?.n) - Number(before.rows[0]?.n)).toBe(1);
  } finally {
    await gateway.stop();
  }
});
