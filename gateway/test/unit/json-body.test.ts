import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import express, { type RequestHandler } from 'express';
import { assertJson } from '../../src/http/body-source';
import { smallBodyDeadline } from '../../src/http/body-deadline';
import { errorHandler } from '../../src/http/error-handler';
import { isPlainCase, jsonBody } from '../../src/http/json-body';

// The lean JSON reader (json-body.ts) against express.json() as the gateway used it before: the same
// raw requests to both must get byte-identical answers (status, headers that matter, body).

const LIMIT = 64;
const DEADLINE_MS = 400;

/** What express.json() did on the JSON routes before the lean reader. */
const expressJson = (maxBytes: number): RequestHandler => {
  const parse = express.json({ limit: maxBytes, strict: false });
  return (req, res, next) => {
    assertJson(req);
    parse(req, res, next);
  };
};

function appWith(parse: RequestHandler): express.Express {
  const app = express();
  app.post('/echo', smallBodyDeadline(DEADLINE_MS), parse, (req, res) => {
    res.status(201).json({ body: req.body as unknown, type: typeof req.body });
  });
  app.use(errorHandler);
  return app;
}

let lean: Server;
let reference: Server;

async function listen(app: express.Express): Promise<Server> {
  // errorHandler logs 5xx through req.log; these apps have no logger.
  app.request.log = { error: () => undefined, warn: () => undefined } as never;
  const server = createServer(app).listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

beforeAll(async () => {
  lean = await listen(appWith(jsonBody(LIMIT)));
  reference = await listen(appWith(expressJson(LIMIT)));
});

afterAll(async () => {
  for (const server of [lean, reference]) {
    server.closeAllConnections();
    server.close();
  }
});

/** Sends `parts` (with `gapMs` between them) and reads until the server closes or goes quiet. */
async function exchange(server: Server, parts: readonly Buffer[], gapMs = 0): Promise<string> {
  const { port } = server.address() as AddressInfo;
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined);
  for (const [index, part] of parts.entries()) {
    if (index > 0 && gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
    if (!socket.destroyed) socket.write(part);
  }
  await new Promise<void>((resolve) => {
    let quiet = setTimeout(done, DEADLINE_MS * 3);
    function done(): void {
      socket.destroy();
      resolve();
    }
    socket.on('data', () => {
      clearTimeout(quiet);
      quiet = setTimeout(done, 150);
    });
    socket.on('close', () => {
      clearTimeout(quiet);
      resolve();
    });
  });
  // The Date header is the one thing that may differ between the two.
  return Buffer.concat(chunks)
    .toString('latin1')
    .replace(/\r\nDate: [^\r]*/g, '');
}

function post(body: Buffer | string, headers: Record<string, string | undefined> = {}): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const all: Record<string, string | undefined> = {
    'Content-Type': 'application/json',
    'Content-Length': String(bytes.length),
    Connection: 'close',
    ...headers,
  };
  const lines = Object.entries(all)
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .map(([name, value]) => `${name}: ${value}\r\n`);
  return Buffer.concat([Buffer.from(`POST /echo HTTP/1.1\r\nHost: x\r\n${lines.join('')}\r\n`, 'latin1'), bytes]);
}

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

describe('the lean JSON reader answers exactly as express.json()', () => {
  it.each<[string, Buffer]>([
    ['an object', post('{"user_id":1,"talked_time":2.5}')],
    ['a bare number', post('42')],
    ['a string', post('"text"')],
    ['null', post('null')],
    ['bad JSON', post('{"user_id":')],
    ['a trailing comma', post('{"a":1,}')],
    ['only whitespace', post('   ')],
    ['an empty body', post('')],
    ['a byte order mark before the JSON', post(Buffer.concat([BOM, Buffer.from('{"a":1}')]))],
    ['invalid UTF-8 inside a string', post(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]))],
    ['a body at the limit', post(`{"a":"${'x'.repeat(LIMIT - 8)}"}`)],
    ['a body past the limit', post(`{"a":"${'x'.repeat(LIMIT)}"}`)],
    ['a charset of UTF-8', post('{"a":1}', { 'Content-Type': 'application/json; charset=UTF-8' })],
    ['a quoted charset', post('{"a":1}', { 'Content-Type': 'application/json;charset="utf-8"' })],
    ['a charset of latin1', post('{"a":1}', { 'Content-Type': 'application/json; charset=latin1' })],
    ['a charset of utf-16', post('{"a":1}', { 'Content-Type': 'application/json; charset=utf-16' })],
    ['text/plain', post('{"a":1}', { 'Content-Type': 'text/plain' })],
    ['no Content-Type', post('{"a":1}', { 'Content-Type': undefined })],
    ['a malformed Content-Type', post('{"a":1}', { 'Content-Type': 'application/json; charset' })],
    ['application/merge-patch+json', post('{"a":1}', { 'Content-Type': 'application/merge-patch+json' })],
    ['Content-Encoding identity', post('{"a":1}', { 'Content-Encoding': 'Identity' })],
    ['gzip', post(gzipSync('{"a":1}'), { 'Content-Encoding': 'gzip' })],
    ['gzip that is not', post('{"a":1}', { 'Content-Encoding': 'gzip' })],
    ['deflate', post('{"a":1}', { 'Content-Encoding': 'deflate' })],
    ['an unknown encoding', post('{"a":1}', { 'Content-Encoding': 'compress' })],
    ['no body at all', post('', { 'Content-Length': undefined })],
    [
      'a chunked body',
      Buffer.from(
        'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{"a":1}\r\n0\r\n\r\n',
      ),
    ],
  ])('%s', async (_name, request) => {
    const expected = await exchange(reference, [request]);
    expect(expected).toMatch(/^HTTP\/1\.1 \d{3} /);
    expect(await exchange(lean, [request])).toBe(expected);
  });

  it('takes the common request itself, without express.json()', async () => {
    const seen: boolean[] = [];
    const app = express();
    app.post('/echo', (req, res) => {
      seen.push(isPlainCase(req));
      res.end();
    });
    const server = await listen(app);
    try {
      await exchange(server, [post('{"a":1}')]);
      await exchange(server, [post('{"a":1}', { 'Content-Type': 'application/json; charset=utf-8' })]);
      await exchange(server, [post('{"a":1}', { 'Content-Encoding': 'gzip' })]);
      await exchange(server, [post('{"a":1}', { 'Content-Type': 'application/json; charset=latin1' })]);
    } finally {
      server.closeAllConnections();
      server.close();
    }
    expect(seen).toEqual([true, true, false, false]);
  });

  it('two requests on one connection, the first refused as too large', async () => {
    const requests = Buffer.concat([
      post(`{"a":"${'x'.repeat(LIMIT * 4)}"}`, { Connection: undefined }),
      post('{"b":2}'),
    ]);
    const expected = await exchange(reference, [requests]);
    expect(expected.match(/HTTP\/1\.1 /g)).toHaveLength(2);
    expect(await exchange(lean, [requests])).toBe(expected);
  });

  it('a body that arrives in pieces within the deadline is read whole', async () => {
    const request = post('{"a":[1,2,3],"b":"two pieces"}');
    const parts = [request.subarray(0, request.length - 10), request.subarray(request.length - 10)];
    const answer = await exchange(lean, parts, 100);
    expect(answer).toMatch(/^HTTP\/1\.1 201 /);
    expect(answer).toContain('"body":{"a":[1,2,3],"b":"two pieces"}');
    expect(answer).toBe(await exchange(reference, parts, 100));
  });

  it('a body that stops arriving gets the 408 of the body deadline', async () => {
    const request = post('{"a":1,"b":2}');
    const answer = await exchange(lean, [request.subarray(0, request.length - 4)]);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer).toContain('"error":"request_timeout"');
    expect(answer).toBe(await exchange(reference, [request.subarray(0, request.length - 4)]));
  });

  it('parses what JSON.parse parses, past what one TCP packet holds', async () => {
    const server = await listen(appWith(jsonBody(1 << 20)));
    try {
      const value = { rows: Array.from({ length: 5000 }, (_, i) => ({ i, s: `é${i}€` })) };
      const { port } = server.address() as AddressInfo;
      const response = await fetch(`http://127.0.0.1:${port}/echo`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(value),
      });
      expect(response.status).toBe(201);
      expect(await response.json()).toEqual({ body: value, type: 'object' });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
