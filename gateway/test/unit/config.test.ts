import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CONFIG_VARIABLE_NAMES, ConfigError, configTable, loadConfig } from '../../src/config';
import { PROJECT_ROOT } from '../../src/paths';

const OPERATIONS = path.join(PROJECT_ROOT, 'docs/operations.md');
const REGENERATE = 'UPDATE_CONFIG_TABLE=1 npx jest gateway/test/unit/config.test.ts';

/** The lines of the table in docs/operations.md that starts with configTable()'s header line. */
function tableLines(lines: readonly string[]): { start: number; end: number } {
  const start = lines.indexOf(configTable().split('\n')[0] as string);
  let end = start;
  while (start >= 0 && lines[end]?.startsWith('|')) end++;
  return { start, end };
}

describe('the configuration table in docs/operations.md', () => {
  it(`is the one made from the declarations in gateway/src/config.ts (to rewrite it: ${REGENERATE})`, () => {
    const lines = readFileSync(OPERATIONS, 'utf8').split('\n');
    const { start, end } = tableLines(lines);
    expect(start).toBeGreaterThanOrEqual(0);
    if (process.env.UPDATE_CONFIG_TABLE === '1') {
      lines.splice(start, end - start, configTable());
      writeFileSync(OPERATIONS, lines.join('\n'));
    }
    const documented = readFileSync(OPERATIONS, 'utf8').split('\n').slice(start, end).join('\n');
    expect(documented).toBe(configTable());
  });

  it('names each variable once', () => {
    expect(new Set(CONFIG_VARIABLE_NAMES).size).toBe(CONFIG_VARIABLE_NAMES.length);
    expect(configTable()).not.toMatch(/=>/); // a default made by a function is shown as text
  });
});

describe('loadConfig', () => {
  it('lists every bad variable in one ConfigError, and no password', () => {
    const env = { PORT: 'http', SPOOL: 'maybe', LOG_LEVEL: 'loud', DATABASE_URL: 'mysql://u:secret@h/db' };
    const error = (() => {
      try {
        loadConfig(env);
      } catch (thrown) {
        return thrown as ConfigError;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect(error?.problems).toEqual([
      'DATABASE_URL must be a postgres:// or postgresql:// URL',
      'PORT must be an integer from 0 to 65535, got "http"',
      'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "loud"',
      'SPOOL must be true or false, got "maybe"',
    ]);
    expect(error?.message).not.toContain('secret');
  });

  it('takes an empty variable as unset, and defaults that depend on other variables', () => {
    expect(loadConfig({ PORT: '', DATABASE_URL: '' })).toMatchObject({ port: 8080, databaseUrl: undefined });
    expect(loadConfig({}).seedDemoData).toBe(true);
    expect(loadConfig({ DATABASE_URL: 'postgres://u@db/metrics' }).seedDemoData).toBe(false);
    expect(loadConfig({ DATA_DIR: '/var/lib/gateway' }).spoolDir).toBe(path.join('/var/lib/gateway', 'spool'));
    expect(loadConfig({ DATA_DIR: '/a', SPOOL_DIR: '/b' }).spoolDir).toBe('/b');
  });

  it('reads PARTITION_INTERVAL and RETENTION as hours or days, RETENTION=off as 0, and refuses the rest', () => {
    const hour = 3_600_000;
    expect(loadConfig({})).toMatchObject({ partitionIntervalMs: 24 * hour, partitionPremake: 2, retentionMs: 0 });
    expect(loadConfig({ PARTITION_INTERVAL: '6h', RETENTION: '30d' })).toMatchObject({
      partitionIntervalMs: 6 * hour,
      retentionMs: 30 * 24 * hour,
    });
    expect(loadConfig({ PARTITION_INTERVAL: '7d', RETENTION: 'off' })).toMatchObject({
      partitionIntervalMs: 7 * 24 * hour,
      retentionMs: 0,
    });
    expect(() => loadConfig({ PARTITION_INTERVAL: '90m', RETENTION: '0d' })).toThrow(
      /PARTITION_INTERVAL must be a duration in hours or days .*got "90m"\n.*RETENTION must be off or a duration/,
    );
  });
});
