import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { PROJECT_ROOT } from '../../src/paths';

// Integration tests run the built dist/ (gateway processes, CLIs) and client/dist/ (the upload tool
// loads the client package from it). `npm test` builds first; `npx jest` does not, and a test against
// an older build passes or fails for the wrong code.

/** The builds of `npm run build`, in its order: the client package first, which the tools import. */
const BUILD_CONFIGS = [
  path.join(PROJECT_ROOT, 'client', 'tsconfig.json'),
  path.join(PROJECT_ROOT, 'tsconfig.build.json'),
];

function mtimeMs(file: string): number | undefined {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

function staleSourceOf(config: string): string | undefined {
  const parsed = ts.getParsedCommandLineOfConfigFile(
    config,
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
        throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
      },
    },
  );
  if (parsed === undefined) throw new Error(`cannot read ${config}`);
  for (const source of parsed.fileNames) {
    if (source.endsWith('.d.ts')) continue;
    const sourceTime = mtimeMs(source) ?? 0;
    const outputs = ts.getOutputFileNames(parsed, source, false).filter((file) => file.endsWith('.js'));
    if (outputs.some((output) => (mtimeMs(output) ?? -1) < sourceTime)) return path.relative(PROJECT_ROOT, source);
  }
  return undefined;
}

/** The first source of the build whose output (dist/, client/dist/) is missing or older than it; undefined when none is. */
export function staleSource(): string | undefined {
  for (const config of BUILD_CONFIGS) {
    const stale = staleSourceOf(config);
    if (stale !== undefined) return stale;
  }
  return undefined;
}

/** Builds dist/ and client/dist/ (as `npm run build` does) when a source is newer than its output. */
export function ensureFreshBuild(log: (line: string) => void): void {
  const stale = staleSource();
  if (stale === undefined) return;
  log(`a build is older than ${stale}: building (npm run build) before the tests`);
  for (const config of BUILD_CONFIGS) {
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', config], {
      cwd: PROJECT_ROOT,
      stdio: 'inherit',
    });
  }
  const still = staleSource();
  if (still !== undefined) throw new Error(`the build is still older than ${still} after building`);
}
