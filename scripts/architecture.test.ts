import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import ts from 'typescript';

// The source layout as a graph of imports: no file reaches itself through its imports (type-only
// ones too: a cycle of types is still two modules that cannot be understood apart), and a
// workspace reaches another only through the @podmortem/contract package, never by a relative
// path into its folder.

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const WORKSPACES = ['contract', 'collector', 'indexer', 'query-api', 'grafana', 'analyzer'];
const CONTRACT_PACKAGE = '@podmortem/contract';

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [path] : [];
  });
}

/** Every module specifier of a file: static imports and re-exports (type-only too) and import(). */
function specifiersOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return info.importedFiles.map((f) => f.fileName);
}

/** The files `@podmortem/contract[/subpath]` stands for, from the package's exports. */
function contractExports(): Map<string, string> {
  const pkg = JSON.parse(readFileSync(join(root, 'contract', 'package.json'), 'utf8')) as {
    exports: Record<string, string>;
  };
  return new Map(
    Object.entries(pkg.exports).map(([subpath, target]) => [
      subpath === '.' ? CONTRACT_PACKAGE : `${CONTRACT_PACKAGE}/${subpath.slice(2)}`,
      join(root, 'contract', target),
    ]),
  );
}

const workspaceOf = (file: string): string => relative(root, file).split(sep)[0] ?? '';
const shown = (file: string): string => relative(root, file);

interface Graph {
  edges: Map<string, string[]>;
  crossings: string[];
  unexported: string[];
}

function importGraph(): Graph {
  const files = WORKSPACES.flatMap((w) => sourceFiles(join(root, w, 'src')));
  const known = new Set(files);
  const exported = contractExports();
  const graph: Graph = { edges: new Map(), crossings: [], unexported: [] };
  for (const file of files) {
    const targets: string[] = [];
    for (const specifier of specifiersOf(file)) {
      if (specifier.startsWith('.')) {
        const target = resolve(dirname(file), specifier);
        if (workspaceOf(target) !== workspaceOf(file))
          graph.crossings.push(`${shown(file)} imports ${specifier} (${shown(target)})`);
        if (known.has(target)) targets.push(target);
      } else if (specifier === CONTRACT_PACKAGE || specifier.startsWith(`${CONTRACT_PACKAGE}/`)) {
        const target = exported.get(specifier);
        if (target === undefined) graph.unexported.push(`${shown(file)} imports ${specifier}`);
        else if (known.has(target)) targets.push(target);
      }
    }
    graph.edges.set(file, targets);
  }
  return graph;
}

/** One cycle through each back edge of a depth-first walk, as the files along it. */
function cyclesOf(edges: Map<string, string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const cycles: string[][] = [];
  const visit = (file: string): void => {
    state.set(file, 'open');
    path.push(file);
    for (const next of edges.get(file) ?? []) {
      const s = state.get(next);
      if (s === 'open') cycles.push([...path.slice(path.indexOf(next)), next]);
      else if (s === undefined) visit(next);
    }
    path.pop();
    state.set(file, 'done');
  };
  for (const file of [...edges.keys()].sort()) if (!state.has(file)) visit(file);
  return cycles;
}

const graph = importGraph();

t.test('the parser sees the imports of the source files', async (t) => {
  t.ok(graph.edges.size > 50, `${graph.edges.size} files`);
  const app = graph.edges.get(join(root, 'query-api', 'src', 'app.ts')) ?? [];
  t.ok(app.includes(join(root, 'query-api', 'src', 'crash-get.ts')), 'a relative import');
  t.ok(app.includes(join(root, 'query-api', 'src', 'route-deps.ts')), 'a type-only import');
  const config = graph.edges.get(join(root, 'query-api', 'src', 'config.ts')) ?? [];
  t.ok(config.includes(join(root, 'contract', 'src', 'index.ts')), 'the contract package');
});

t.test('no file imports itself through other files', async (t) => {
  const cycles = cyclesOf(graph.edges).map((c) => c.map(shown).join(' -> '));
  t.same(cycles, [], 'no import cycle (the diff lists each one found, file by file)');
});

t.test('workspaces import each other only through @podmortem/contract', async (t) => {
  t.same(graph.crossings, [], 'no relative import leaves its workspace');
  t.same(graph.unexported, [], 'only subpaths contract/package.json exports');
});
