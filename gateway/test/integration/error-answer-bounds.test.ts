import { gzipSync } from 'node:zlib';
import { MAX_LISTED_ERRORS_BYTES } from '../../src/contract/schemas';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { postNdjson, startTestGateway } from '../helpers/gateway';

// An error answer is bounded however hostile the body: a gzip upload of lines made of thousands of
// distinct unknown keys must not produce megabytes of details. What is left out is counted.

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;

beforeAll(async () => {
  db = await createTestDatabase();
  gateway = await startTestGateway(db);
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

/** A line of about 60 KiB made of short distinct unknown keys: ajv reports each of them. */
function hostileLine(n: number): string {
  const keys: string[] = [];
  for (let i = 0, length = 0; length < 60_000; i++) {
    keys.push(`"k${n}_${i}":1`);
    length += (keys[i] as string).length + 1;
  }
  return `{${keys.join(',')}}`;
}

it('bounds the errors of a bulk answer in count and bytes, and says how many were left out', async () => {
  const lines = 200;
  const body = gzipSync(Buffer.from(Array.from({ length: lines }, (_, i) => hostileLine(i)).join('\n')));
  const response = await postNdjson<{ accepted: number; rejected: number; errors: unknown[]; errors_omitted?: number }>(
    `${gateway.url}/v1/metrics/bulk`,
    body,
    { 'content-encoding': 'gzip' },
  );
  expect(response.status).toBe(200);
  expect(response.body.rejected).toBe(lines);
  expect(response.body.errors.length + (response.body.errors_omitted ?? 0)).toBe(lines);
  expect(JSON.stringify(response.body).length).toBeLessThan(MAX_LISTED_ERRORS_BYTES + 64 * 1024);
});
