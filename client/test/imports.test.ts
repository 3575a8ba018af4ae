import { builtinModules } from 'node:module';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

// The client is a package of its own: client/src imports only its own files and Node's built-in
// modules, never the server (gateway/), the tools, or a dependency it does not declare (it has none).

const SRC = path.join(__dirname, '..', 'src');
const SPECIFIER = /(?:\bfrom\s+|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm;

it('client/src imports nothing outside client/src but node: built-ins', () => {
  const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.ts'));
  expect(files.length).toBeGreaterThan(3);
  const outside: string[] = [];
  for (const file of files) {
    const text = readFileSync(path.join(SRC, file), 'utf8');
    for (const [, specifier = ''] of text.matchAll(SPECIFIER)) {
      if (specifier.startsWith('.')) {
        const target = path.resolve(path.dirname(path.join(SRC, file)), specifier);
        if (path.relative(SRC, target).startsWith('..')) outside.push(`${file}: ${specifier}`);
      } else if (!specifier.startsWith('node:') || !builtinModules.includes(specifier.slice(5))) {
        outside.push(`${file}: ${specifier}`);
      }
    }
  }
  expect(outside).toEqual([]);
});
