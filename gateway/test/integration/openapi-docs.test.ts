import { compileErrors, validate } from '@readme/openapi-parser';
import Ajv2020 from 'ajv/dist/2020';
import type { Express } from 'express';
import { ERROR_CODES } from '../../src/contract/errors';
import { DEMO_DEVICES } from '../../src/db/demo-data';
import { toOpenApiSchema } from '../../src/http/openapi';
import { metricSchema, newDeviceSchema, newUserSchema } from '../../src/contract/schemas';
import { checkMetric } from '../../src/ingest/schema';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { request, startTestGateway } from '../helpers/gateway';

// GET /openapi.json and GET /docs of a real gateway.

let db: TestDatabase;
let gateway: Awaited<ReturnType<typeof startTestGateway>>;
let document: any;

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

interface RouterLayer {
  route?: { path: string | string[]; methods: Record<string, boolean> };
  handle?: { stack?: RouterLayer[] };
}

/** Every "METHOD /path" the Express app routes, with :param written as OpenAPI's {param}. */
function appRoutes(app: Express): Set<string> {
  const routes = new Set<string>();
  const walk = (stack: readonly RouterLayer[]): void => {
    for (const layer of stack) {
      if (layer.route !== undefined) {
        const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
        for (const method of Object.keys(layer.route.methods)) {
          // Express ignores a trailing slash (strict routing is off): /docs/ is /docs.
          for (const path of paths) {
            routes.add(`${method.toUpperCase()} ${path.replace(/:(\w+)/g, '{$1}').replace(/(.)\/$/, '$1')}`);
          }
        }
      } else if (layer.handle?.stack !== undefined) {
        walk(layer.handle.stack);
      }
    }
  };
  walk((app as unknown as { router: { stack: RouterLayer[] } }).router.stack);
  return routes;
}

function documentedRoutes(doc: any): Set<string> {
  const routes = new Set<string>();
  for (const [path, item] of Object.entries<Record<string, unknown>>(doc.paths)) {
    for (const method of Object.keys(item))
      if (HTTP_METHODS.includes(method)) routes.add(`${method.toUpperCase()} ${path}`);
  }
  return routes;
}

beforeAll(async () => {
  db = await createTestDatabase();
  gateway = await startTestGateway(db);
  const response = await request(`${gateway.url}/openapi.json`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  document = response.body;
});

afterAll(async () => {
  await gateway?.stop();
  await db?.drop();
});

describe('GET /openapi.json', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    expect(document.openapi).toBe('3.1.0');
    // The parser dereferences in place; give it a copy.
    const result = await validate(structuredClone(document));
    if (!result.valid) throw new Error(compileErrors(result));
    expect(result.warnings).toEqual([]);
  });

  it('holds component schemas that are valid JSON Schema 2020-12', () => {
    const ajv = new Ajv2020({ strict: false });
    for (const [name, schema] of Object.entries<object>(document.components.schemas)) {
      if (!ajv.validateSchema(schema)) throw new Error(`${name}: ${ajv.errorsText(ajv.errors)}`);
    }
  });

  it('documents every route the app has, and no other', () => {
    const app = gateway.server.listeners('request')[0] as Express;
    // The page's own script and the files of swagger-ui-dist are parts of GET /docs.
    const routes = [...appRoutes(app)].filter((route) => !route.startsWith('GET /docs/')).sort();
    expect(routes).toContain('GET /docs');
    expect(routes.length).toBeGreaterThanOrEqual(13);
    expect([...documentedRoutes(document)].sort()).toEqual(routes);
  });

  it('takes the request bodies from the schemas that requests are validated with', () => {
    expect(document.components.schemas.Metric).toEqual(toOpenApiSchema(metricSchema));
    expect(document.components.schemas.NewUser).toEqual(toOpenApiSchema(newUserSchema));
    expect(document.components.schemas.NewDevice).toEqual(toOpenApiSchema(newDeviceSchema));
    expect(Object.keys(document.components.schemas.Metric.properties)).toEqual(Object.keys(metricSchema.properties));
    // What OpenAPI does not know is translated, not lost.
    const metric = document.components.schemas.Metric;
    expect(metric).not.toHaveProperty('$id');
    expect(metric.properties.time_recorded.format).toBe('date-time');
    expect(metric.properties.device_id['x-storable-text']).toBe(true);
    expect(metric.properties.device_id.description).toMatch(/NUL/);

    const example = document.paths['/v1/metrics'].post.requestBody.content['application/json'].example;
    expect(checkMetric(example, Date.now())).toMatchObject({ ok: true });
    // "Try it out" on a fresh `npm start` names a device that the demo data has.
    expect(DEMO_DEVICES.map((device) => device.id)).toContain(example.device_id);
    const bulk = document.paths['/v1/metrics/bulk'].post.requestBody;
    expect(bulk.content['application/x-ndjson'].schema.type).toBe('string');
    const lines = (/```\n([^`]+)```/.exec(bulk.description)?.[1] ?? '').trim().split('\n');
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(checkMetric(JSON.parse(line), Date.now())).toMatchObject({ ok: true });
  });

  it('lists the query parameters of the read side from their schemas', () => {
    const parameters = document.paths['/v1/users/{id}/metrics'].get.parameters;
    expect(parameters.map((p: any) => `${p.in} ${p.name}`)).toEqual([
      'path id',
      'query from',
      'query to',
      'query limit',
      'query cursor',
    ]);
    expect(parameters.find((p: any) => p.name === 'limit').schema).toMatchObject({ maximum: 1000, default: 100 });
  });

  it('describes every error code, its status, the error body and Retry-After', () => {
    const responses = document.components.responses;
    for (const [code, { status }] of Object.entries(ERROR_CODES)) {
      const response = responses[`Error${status}`];
      expect(response.description).toContain(`\`${code}\``);
      expect(response.content['application/json'].schema.properties.error.enum).toContain(code);
    }
    expect(Object.keys(responses.Error429.headers)).toEqual(['Retry-After']);
    expect(Object.keys(responses.Error503.headers)).toEqual(['Retry-After']);
    expect(document.components.schemas.Error.required).toEqual(['error', 'message', 'details']);

    const single = document.paths['/v1/metrics'].post.responses;
    expect(Object.keys(single).sort()).toEqual(
      ['201', '202', '400', '401', '403', '413', '415', '422', '429', '503', 'default'].sort(),
    );
    const bulk = document.paths['/v1/metrics/bulk'].post.responses;
    expect(bulk['200'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/BulkResult' });
    expect(document.components.schemas.BulkResult.properties.errors.maxItems).toBe(1000);
  });

  it('declares the bearer API key, optional for now', () => {
    expect(document.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(document.security).toEqual([{}, { bearerAuth: [] }]);
    expect(document.paths['/healthz'].get.security).toEqual([]);
  });
});

describe('GET /docs', () => {
  it('redirects /docs to /docs/, which is the page', async () => {
    const redirect = await fetch(`${gateway.url}/docs?x=1`, { redirect: 'manual' });
    expect(redirect.status).toBe(301);
    expect(new URL(redirect.headers.get('location') as string, `${gateway.url}/docs?x=1`).href).toBe(
      `${gateway.url}/docs/?x=1`,
    );

    const page = await fetch(`${gateway.url}/docs`);
    expect(page.status).toBe(200);
    expect(page.url).toBe(`${gateway.url}/docs/`);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await page.text();
    expect(html).toContain('swagger-ui-bundle.js');
    expect(html).not.toMatch(/https?:\/\//); // nothing from the network
  });

  it.each([
    ['swagger-ui-bundle.js', /javascript/, 100_000],
    ['swagger-ui.css', /^text\/css/, 10_000],
    ['swagger-initializer.js', /javascript/, 100],
    ['favicon-32x32.png', /^image\/png/, 100],
  ])('serves %s from the package', async (file, type, minBytes) => {
    const response = await fetch(`${gateway.url}/docs/${file}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(type);
    expect((await response.arrayBuffer()).byteLength).toBeGreaterThan(minBytes);
  });

  it('points the page at this document, not the package demo', async () => {
    const script = await (await fetch(`${gateway.url}/docs/swagger-initializer.js`)).text();
    expect(script).toContain("url: '../openapi.json'");
    expect(script).not.toContain('petstore');
    const index = await (await fetch(`${gateway.url}/docs/index.html`)).text();
    expect(index).toContain('swagger-initializer.js');
  });
});
