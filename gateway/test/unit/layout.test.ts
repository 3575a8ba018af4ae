import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/paths';

// The server's layout as a rule: no folder of gateway/src imports a folder that imports it back
// (directly or around a longer loop), the server imports nothing from the tools beside it, and SQL
// is sent only from db/. A file directly in gateway/src (main.ts, config.ts, ...) counts as a folder
// of its own.

const SRC = path.join(PROJECT_ROOT, 'gateway', 'src');

/** Every import, export-from, dynamic import() and require() with a relative specifier. */
const SPECIFIER = /(?:\bfrom\s+|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

/** The folder of gateway/src a file belongs to, or the file's own name for files directly in it. */
function unitOf(file: string): string {
  const [first, ...rest] = path.relative(SRC, file).split(path.sep);
  return rest.length === 0 ? (first as string) : `${first}/`;
}

const sources = sourceFiles(SRC).map((file) => ({ file, text: readFileSync(file, 'utf8') }));

/** Each file's relative imports, resolved to paths (without extension) from the repository root. */
const imports = sources.map(({ file, text }) => ({
  file,
  targets: [...text.matchAll(SPECIFIER)].map((match) => path.resolve(path.dirname(file), match[1] as string)),
}));

/** Folder -> the folders it imports, within gateway/src. */
function folderGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const { file, targets } of imports) {
    const from = unitOf(file);
    const edges = graph.get(from) ?? new Set<string>();
    graph.set(from, edges);
    for (const target of targets) {
      if (path.relative(SRC, target).startsWith('..')) continue;
      const to = unitOf(target.endsWith('.ts') ? target : `${target}.ts`);
      if (to !== from) edges.add(to);
    }
  }
  return graph;
}

/** Every cycle of the graph, each as the path that closes it (a -> b -> a); depth-first. */
function cycles(graph: Map<string, Set<string>>): string[] {
  const found: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of [...(graph.get(node) ?? [])].sort()) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next].join(' -> '));
      else if (state.get(next) === undefined) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...graph.keys()].sort()) if (state.get(node) === undefined) visit(node);
  return found;
}

describe('imports of gateway/src', () => {
  it('sees the folders and their imports (the parser finds them)', () => {
    const graph = folderGraph();
    expect(graph.get('ingest/')).toContain('db/');
    expect(graph.get('gateway.ts')).toContain('http/');
  });

  it('form no cycle between folders', () => {
    expect(cycles(folderGraph())).toEqual([]);
  });

  it('reach nothing outside gateway/src but packages: no seed/, bench/ or tools/', () => {
    const outside = imports.flatMap(({ file, targets }) =>
      targets
        .filter((target) => path.relative(SRC, target).startsWith('..'))
        .map((target) => `${path.relative(PROJECT_ROOT, file)} -> ${path.relative(PROJECT_ROOT, target)}`),
    );
    expect(outside).toEqual([]);
  });

  it('send SQL from db/ only', () => {
    const querying = sources
      .filter(({ file, text }) => unitOf(file) !== 'db/' && /\.query\s*[(<]/.test(text))
      .map(({ file }) => path.relative(SRC, file));
    expect(querying).toEqual([]);
  });
});

describe('the layout in docs/operations.md', () => {
  const doc = readFileSync(path.join(PROJECT_ROOT, 'docs', 'operations.md'), 'utf8');
  const block = /## Layout[\s\S]*?```\n([\s\S]*?)```/.exec(doc)?.[1] ?? '';
  /** The paths the block names: a line's first word; an indented one is below the last unindented folder. */
  const named: string[] = [];
  let parent = '';
  for (const line of block.split('\n')) {
    const entry = /^( *)(\S+\/|\S+\.ts)(?: |$)/.exec(line);
    if (entry === null) continue;
    const [, indent = '', name = ''] = entry;
    if (indent === '') parent = name;
    named.push(indent === '' ? name : `${parent}${name}`);
  }
  const folders = (dir: string): string[] =>
    readdirSync(path.join(PROJECT_ROOT, dir), { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && !/^(\.|node_modules$|dist$)/.test(entry.name))
      .map((entry) => `${dir}${entry.name}/`);

  it('names only paths that exist', () => {
    expect(named.length).toBeGreaterThan(10);
    expect(named.filter((entry) => !existsSync(path.join(PROJECT_ROOT, entry)))).toEqual([]);
  });

  it('names every folder of the repository and of gateway/src', () => {
    const unnamed = [...folders(''), ...folders('gateway/src/')].filter(
      (folder) => !named.some((entry) => entry.startsWith(folder)),
    );
    expect(unnamed).toEqual([]);
  });
});
