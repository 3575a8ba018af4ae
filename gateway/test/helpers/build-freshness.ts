import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { PROJECT_ROOT } from '../../src/paths';

// Integration tests run the built dist/ (gateway processes, CLIs). `npm test` builds first; `npx jest`
// does not, and a test against an older build passes or fails for the wrong code.

const BUILD_CONFIG = path.join(PROJECT_ROOT, 'tsconfig.build.json');

function mtimeMs(file: string): number | undefined {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

/** The first source of the build whose output in dist/ is missing or older than it; undefined when none is. */
export function staleSource(): string | undefined {
  const parsed = ts.getParsedCommandLineOfConfigFile(
    BUILD_CONFIG,
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
        throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
      },
    },
  );
  if (parsed === undefined) throw new Error(`cannot read ${BUILD_CONFIG}`);
  for (const source of parsed.fileNames) {
    if (source.endsWith('.d.ts')) continue;
    const sourceTime = mtimeMs(source) ?? 0;
    const outputs = ts.getOutputFileNames(parsed, source, false).filter((file) => file.endsWith('.js'));
    if (outputs.some((output) => (mtimeMs(output) ?? -1) < sourceTime)) return path.relative(PROJECT_ROOT, source);
  }
  return undefined;
}

/** Builds dist/ (as `npm run build` does) when a source is newer than its output. */
export function ensureFreshBuild(log: (line: string) => void): void {
  const stale = staleSource();
  if (stale === undefined) return;
  log(`dist/ is older than ${stale}: building it (npm run build) before the tests`);
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', BUILD_CONFIG], {
    cwd: PROJECT_ROOT,
    stdio: 'inherit',
  });
  const still = staleSource();
  if (still !== undefined) throw new Error(`dist/ is still older than ${still} after the build`);
}
