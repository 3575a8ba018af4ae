import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Gateway } from '../../src/gateway';
import { PROJECT_ROOT } from '../../src/paths';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { startTestGateway } from '../helpers/gateway';

// Every shell example of the README and docs/*.md, run in document order against a gateway on a fresh
// database with the demo data seeded, as a fresh `npm start` has it. A command passes when it exits 0
// (or as NOT_ZERO_EXIT says) and, where the doc shows the answer in a comment (`# 201 {...}`,
// `## {"status":"ready"}`, `# 200 while ...`), the answer matches: the status, and the JSON with `...`
// standing for anything. A curl without a shown status must get a 2xx. Commands that cannot run here are
// listed in NOT_RUN with the reason; nothing is skipped silently.

const DOCS = ['README.md', 'docs/api.md', 'docs/guarantees.md', 'docs/operations.md'];

/** Commands (by how they start) that are not run, and why. */
const NOT_RUN: Record<string, string> = {
  'npm install': 'installs the dependencies this suite already runs on',
  'npm start':
    'builds and starts a gateway on the embedded PostgreSQL at port 8080; this test starts one the same way (startGateway, SEED_DEMO_DATA=true) on a test database and a free port',
  'DATABASE_URL=postgres://user:password@db.example': 'names a placeholder server',
  'docker compose': 'no Docker engine runs here; docker-files.test.ts checks the files statically',
  'npm test': 'the whole suite, which includes this test',
  'npm run bench': 'a benchmark takes minutes of both cores and is never run inside the suite',
};

/** Commands whose shown output is an illustration (values of another run), with why; their status is still checked. */
const OUTPUT_NOT_COMPARED: Record<string, string> = {
  'METRICS_GATEWAY_KEY=mgk_... npm run upload':
    'progress, timings and paths differ on every run (SHOWN_FIGURES: the counts)',
  "curl 'http://127.0.0.1:8080/v1/users/1/metrics?limit=2&from=2026-11-29T00:00:00Z'":
    'the rows shown are an example; a fresh database holds what the examples before stored',
  "curl 'http://127.0.0.1:8080/v1/users/1/summary": 'the figures depend on the rows the examples before stored',
  "curl -s http://127.0.0.1:8080/metrics | grep '^metrics_gateway_'":
    'the counter values depend on the examples before',
  'curl -s http://127.0.0.1:8080/v1/stats': 'rates, times and totals differ on every run',
};

/** Figures that an output of OUTPUT_NOT_COMPARED shows, which the run must print as well. */
const SHOWN_FIGURES: Record<string, string[]> = {
  'METRICS_GATEWAY_KEY=mgk_... npm run upload': [
    '1,000,000 rows in 20 requests',
    'accepted  999,980',
    'rejected       20  (validation_failed 16, invalid_json 2, unknown_reference 2)',
  ],
};

/** Commands that exit with another status by design. */
const NOT_ZERO_EXIT: Record<string, { code: number; why: string }> = {
  'METRICS_GATEWAY_KEY=mgk_... npm run upload': {
    code: 1,
    why: 'the file has bad lines (--bad-every) and the upload exits 1 when any line is refused (docs/api.md)',
  },
};

const DOC_URL = /http:\/\/(?:127\.0\.0\.1|localhost):8080/g;
/** A command that sends a key goes to a gateway that requires one, so the key is really checked. */
const SENDS_KEY = /Authorization: Bearer|mgk_\.\.\./;

interface Example {
  readonly doc: string;
  readonly line: number;
  readonly command: string;
  /** The status shown in a comment, and the answer as a pattern when the comment shows JSON. */
  readonly status?: number;
  readonly answer?: string;
  /** The comment lines under it, as written. */
  readonly shown?: string;
}

interface Block {
  readonly doc: string;
  readonly line: number;
  readonly examples: readonly Example[];
}

/** Where a command ends, and its trailing comment, by a scan that knows quotes and backslashes. */
function scanShell(text: string): { complete: boolean; comment?: string } {
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote === "'") {
      if (c === "'") quote = undefined;
    } else if (c === '\\') {
      if (i === text.length - 1) return { complete: false };
      i++;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
    } else if (c === "'" || c === '"') {
      quote = c;
    } else if (c === '#' && (i === 0 || /\s/.test(text[i - 1] as string))) {
      const end = text.indexOf('\n', i);
      if (end === -1) return { complete: true, comment: text.slice(i + 1).trim() };
      i = end;
    }
  }
  return { complete: quote === undefined };
}

/** `# 201 {...}`: the status and, when JSON follows, a pattern for it (`...` matches anything). */
function readAnswer(comment: string): Pick<Example, 'status' | 'answer'> {
  const match = /^(?:(\d{3})\b\s*)?(.*)$/s.exec(comment) as RegExpExecArray;
  const status = match[1] === undefined ? undefined : Number(match[1]);
  const rest = (match[2] as string).trim();
  return { status, answer: /^[{[]/.test(rest) ? rest : undefined };
}

function extractBlocks(doc: string): Block[] {
  const lines = readFileSync(path.join(PROJECT_ROOT, doc), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(?:sh|bash|shell)\s*$/.test(lines[i] as string)) continue;
    const start = i + 1;
    const body: string[] = [];
    for (i = start; !(lines[i] as string).startsWith('```'); i++) body.push(lines[i] as string);
    blocks.push({ doc, line: start, examples: extractExamples(doc, start + 1, body) });
  }
  return blocks;
}

function extractExamples(doc: string, firstLine: number, body: string[]): Example[] {
  const examples: Example[] = [];
  for (let i = 0; i < body.length; i++) {
    const first = body[i] as string;
    if (first.trim() === '' || first.trimStart().startsWith('#')) continue;
    const line = firstLine + i;
    let command = first;
    let scan = scanShell(command);
    while (!scan.complete && i + 1 < body.length) {
      command += `\n${body[++i] as string}`;
      scan = scanShell(command);
    }
    // Comment lines right under a command show what it prints.
    const shown: string[] = [];
    while (i + 1 < body.length && /^\s*#/.test(body[i + 1] as string))
      shown.push((body[++i] as string).replace(/^\s*#+\s?/, ''));
    const comment = shown.length > 0 ? shown.map((text) => text.trim()).join('') : scan.comment;
    const stripped = scan.comment === undefined ? command : command.slice(0, command.lastIndexOf('#')).trimEnd();
    examples.push({
      doc,
      line,
      command: stripped,
      ...(comment === undefined ? {} : readAnswer(comment)),
      ...(shown.length > 0 ? { shown: shown.join('\n') } : {}),
    });
  }
  return examples;
}

function listed<T>(table: Record<string, T>, command: string): T | undefined {
  const key = Object.keys(table).find((prefix) => command.startsWith(prefix));
  return key === undefined ? undefined : table[key];
}

const { scripts } = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
};

/** `npm run NAME --` as the built entry point that the script starts after its build (the suite builds first). */
function npmRunAsNode(command: string): string {
  return command.replace(/npm run(?: --silent)? ([\w-]+)(?: --)?/g, (whole, name: string) => {
    const entry = /^npm run build && node (\S+)$/.exec(scripts[name] ?? '');
    if (!entry) throw new Error(`${whole}: the script ${JSON.stringify(scripts[name])} does not start a built file`);
    return `node ${path.join(PROJECT_ROOT, entry[1] as string)}`;
  });
}

/** The answer pattern as a regular expression over compact JSON; `...` stands for anything. */
function answerPattern(answer: string): RegExp {
  const compact = answer.replace(/([,:{[])\s+/g, '$1').replace(/\s+([}\]])/g, '$1');
  const parts = compact.split('...').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${parts.join('[\\s\\S]*')}$`);
}

/** The body a curl printed, without the status line and headers that `-i` adds. */
function bodyOf(stdout: string): string {
  return (stdout.startsWith('HTTP/') ? stdout.slice(stdout.indexOf('\r\n\r\n') + 4) : stdout).trim();
}

const BLOCKS = DOCS.flatMap(extractBlocks);
const EXAMPLES = BLOCKS.flatMap((block) => block.examples);

interface Outcome {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly statuses: number[];
}

/** Runs a block's commands in one shell (a variable set by one is seen by the next), each between markers. */
async function runBlock(commands: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Promise<Outcome[]> {
  // curl prints every status to stderr, after the marker, whatever the example asks it to print.
  const prelude = `curl() { command curl -sS -w '%{stderr}\\n@@status %{http_code}\\n' "$@"; }\n`;
  const script =
    prelude +
    commands
      .map(
        (command, n) =>
          `printf '\\n@@begin ${n}\\n'; printf '\\n@@begin ${n}\\n' >&2\n${command}\n` +
          `printf '\\n@@end ${n} %d\\n' $?; printf '\\n@@end ${n}\\n' >&2\n`,
      )
      .join('');
  const { stdout, stderr } = await promisify(execFile)('bash', ['-c', script], {
    cwd,
    env,
    maxBuffer: 64 * 1024 * 1024,
    timeout: 240_000,
  });
  return commands.map((_, n) => {
    const section = (text: string, end: RegExp): string => {
      const begin = text.indexOf(`\n@@begin ${n}\n`) + `\n@@begin ${n}\n`.length;
      return text.slice(begin, begin + text.slice(begin).search(end));
    };
    const out = section(stdout, new RegExp(`\\n@@end ${n} \\d+\\n`));
    const err = section(stderr, new RegExp(`\\n@@end ${n}\\n`));
    const code = Number(new RegExp(`\\n@@end ${n} (\\d+)\\n`).exec(stdout)?.[1] ?? -1);
    const statuses = [...err.matchAll(/@@status (\d+)/g)].map((m) => Number(m[1]));
    return { code, stdout: out, stderr: err.replace(/\n?@@status \d+\n?/g, ''), statuses };
  });
}

/** What is wrong with an example's outcome; empty when nothing is. */
function problems(example: Example, outcome: Outcome): string[] {
  const found: string[] = [];
  const exit = listed(NOT_ZERO_EXIT, example.command)?.code ?? 0;
  if (outcome.code !== exit) found.push(`exited ${outcome.code}, not ${exit}`);
  const isCurl = /(^|[\s|($])curl\s/.test(example.command);
  if (isCurl) {
    const status = outcome.statuses.at(-1);
    if (example.status !== undefined ? status !== example.status : !(status !== undefined && status < 300))
      found.push(`answered ${status}, the doc shows ${example.status ?? 'a 2xx'}`);
  }
  if (example.answer !== undefined && listed(OUTPUT_NOT_COMPARED, example.command) === undefined) {
    const printed = bodyOf(outcome.stdout);
    if (!answerPattern(example.answer).test(printed)) found.push(`printed ${printed.slice(0, 2000)}`);
  }
  for (const figure of listed(SHOWN_FIGURES, example.command) ?? []) {
    if (!example.shown?.includes(figure)) found.push(`the doc no longer shows ${JSON.stringify(figure)}`);
    if (!`${outcome.stdout}${outcome.stderr}`.includes(figure)) found.push(`did not print ${JSON.stringify(figure)}`);
  }
  return found;
}

describe('the shell examples of the README and docs/', () => {
  let db: TestDatabase;
  let open: Gateway;
  let keyed: Gateway;
  let cwd: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    db = await createTestDatabase();
    // As a fresh `npm start`: demo users and devices seeded, no key required; and one that requires keys.
    open = await startTestGateway(db, { SEED_DEMO_DATA: 'true' });
    keyed = await startTestGateway(db, { SEED_DEMO_DATA: 'true', AUTH_REQUIRED: 'true' });
    cwd = await mkdtemp(path.join(os.tmpdir(), 'mg-docs-'));
    // INIT_CWD: npm runs a script from the project's root and names the caller's folder there.
    env = { ...process.env, DATABASE_URL: db.url, INIT_CWD: cwd };
    // The key that `mgk_...` stands for, made the way docs/operations.md shows.
    const [created] = await runBlock(
      [npmRunAsNode('npm run --silent keys -- create --name docs-examples --scope ingest | tail -n 1')],
      cwd,
      env,
    );
    env.DOCS_EXAMPLE_KEY = (created as Outcome).stdout.trim();
  }, 60_000);

  afterAll(async () => {
    await open?.stop();
    await keyed?.stop();
    await db?.drop();
    if (cwd) await rm(cwd, { recursive: true, force: true });
  });

  it('finds the examples, and every listed exception names one of them', () => {
    expect(EXAMPLES.length).toBeGreaterThan(20);
    const commands = EXAMPLES.map((example) => example.command);
    for (const table of [NOT_RUN, OUTPUT_NOT_COMPARED, SHOWN_FIGURES, NOT_ZERO_EXIT])
      for (const prefix of Object.keys(table)) expect(commands.filter((c) => c.startsWith(prefix))).not.toEqual([]);
    expect(
      EXAMPLES.filter((example) => example.answer !== undefined || example.status !== undefined).length,
    ).toBeGreaterThan(8);
  });

  it.each(BLOCKS.filter((block) => block.examples.length > 0).map((block) => [`${block.doc}:${block.line}`, block]))(
    '%s',
    async (_, block) => {
      const run = block.examples.filter((example) => listed(NOT_RUN, example.command) === undefined);
      const commands = run.map((example) =>
        npmRunAsNode(example.command)
          .replace('mgk_...', '"$DOCS_EXAMPLE_KEY"')
          .replace(DOC_URL, SENDS_KEY.test(example.command) ? keyed.url : open.url),
      );
      const outcomes = await runBlock(commands, cwd, env);
      const failures = run.flatMap((example, n) => {
        const outcome = outcomes[n] as Outcome;
        return problems(example, outcome).map(
          (problem) =>
            `${example.doc}:${example.line} ${example.command}\n  ${problem}\n  stderr: ${outcome.stderr.slice(0, 1000)}`,
        );
      });
      expect(failures).toEqual([]);
    },
    300_000,
  );
});
