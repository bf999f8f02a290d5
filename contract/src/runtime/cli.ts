import { readFileSync } from 'node:fs';
import { isAbsolute, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

// What every service says on its command line: it takes no argument but --help (-h) and
// --version, and its version is the repository's, read from the root package.json when asked.
// Light on purpose (node: modules only): the collector's handler, which must start fast, uses it.

const ROOT_PACKAGE = new URL('../../../package.json', import.meta.url);
const ROOT_DIR = fileURLToPath(new URL('.', ROOT_PACKAGE));

/** The `version` of the repository's package.json. */
export function podmortemVersion(): string {
  const { version } = JSON.parse(readFileSync(ROOT_PACKAGE, 'utf8')) as { version?: unknown };
  if (typeof version !== 'string' || version === '')
    throw new Error(`${fileURLToPath(ROOT_PACKAGE)} has no version`);
  return version;
}

/** The entry as a user runs it from the repository's folder (`indexer/src/main.ts`); absolute if outside. */
export function entryPath(script: string | undefined): string {
  if (script === undefined || script === '') return '<main>';
  const path = relative(ROOT_DIR, script);
  return path.startsWith('..') || isAbsolute(path) ? script : path;
}

export type CommandLine = { action: 'run' | 'help' | 'version' } | { action: 'unknown'; argument: string };

/** The service's arguments: the first one that is not --help, -h or --version is an error. */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  const unknown = argv.find((a) => a !== '--help' && a !== '-h' && a !== '--version');
  if (unknown !== undefined) return { action: 'unknown', argument: unknown };
  if (argv.includes('--help') || argv.includes('-h')) return { action: 'help' };
  if (argv.includes('--version')) return { action: 'version' };
  return { action: 'run' };
}

/** `text` in lines of at most `width` characters (a longer word stays whole), each after `indent`. */
export function wrapText(text: string, width: number, indent = ''): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line !== '' && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(indent + line);
  return lines;
}

/** `value` as a shell word: as it is when it needs no quotes, else in single quotes. */
export function shellWord(value: string): string {
  return /^[A-Za-z0-9_.,:/@%+=-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}
