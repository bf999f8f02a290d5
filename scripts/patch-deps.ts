// Applies the patches in patches/ to the installed npm packages. The root package's postinstall
// runs it, so `npm ci` and `npm install` leave every installed copy patched.
//
// A patch is a unified diff named <package>+<version>.patch (a scope's slash written as '+'), with
// paths relative to the package's folder (a/…, b/…). It applies only to that exact version and
// only line for line, with no offset and no fuzz: another version, or a file whose lines differ
// from what the patch expects, fails the install with a message naming the package, the file and
// the line, so an upgrade cannot silently drop a patch. A file already patched is left as it is,
// so a second run (a second `npm ci`) changes nothing.
//
//   node scripts/patch-deps.ts [--root DIR]    DIR: the install's root (default: this repository)
import {
  existsSync,
  globSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export class PatchError extends Error {
  override name = 'PatchError';
}

interface HunkLine {
  op: ' ' | '-' | '+';
  text: string;
}

interface Hunk {
  /** 1-based line of the hunk's first line in the unpatched file, and in the patched file. */
  oldStart: number;
  newStart: number;
  lines: HunkLine[];
}

export interface FilePatch {
  /** The file, relative to the package's folder. */
  path: string;
  hunks: Hunk[];
}

/** Parses a unified diff. Text before the first `--- ` line is the patch's description. */
export function parsePatch(text: string, name: string): FilePatch[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const files: FilePatch[] = [];
  let file: FilePatch | undefined;
  let hunk: Hunk | undefined;
  let oldLeft = 0;
  let newLeft = 0;
  for (const [i, line] of lines.entries()) {
    const where = `${name}:${i + 1}`;
    if (hunk && (oldLeft > 0 || newLeft > 0)) {
      const op = line[0];
      if (op !== ' ' && op !== '-' && op !== '+')
        throw new PatchError(
          `${where}: a hunk line must start with ' ', '-' or '+', not ${JSON.stringify(line)}`,
        );
      if (op !== '+') oldLeft--;
      if (op !== '-') newLeft--;
      if (oldLeft < 0 || newLeft < 0)
        throw new PatchError(`${where}: the hunk is longer than its @@ header says`);
      hunk.lines.push({ op, text: line.slice(1) });
      continue;
    }
    if (line.startsWith('--- ')) {
      const next = lines[i + 1] ?? '';
      const path = /^\+\+\+ b\/(\S+)$/.exec(next)?.[1];
      if (!path)
        throw new PatchError(`${where}: expected '+++ b/<file>' after '---', found ${JSON.stringify(next)}`);
      file = { path, hunks: [] };
      files.push(file);
      hunk = undefined;
      continue;
    }
    if (line.startsWith('+++ ') && file && !hunk) continue;
    const header = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(line);
    if (header) {
      if (!file) throw new PatchError(`${where}: a hunk before any '---'/'+++' file header`);
      hunk = { oldStart: Number(header[1]), newStart: Number(header[3]), lines: [] };
      oldLeft = Number(header[2] ?? 1);
      newLeft = Number(header[4] ?? 1);
      file.hunks.push(hunk);
      continue;
    }
    if (file)
      throw new PatchError(`${where}: unexpected line ${JSON.stringify(line)} after the first file header`);
  }
  if (oldLeft > 0 || newLeft > 0)
    throw new PatchError(`${name}: the last hunk is shorter than its @@ header says`);
  if (files.length === 0 || files.some((f) => f.hunks.length === 0))
    throw new PatchError(`${name}: no file with a hunk; is it a unified diff?`);
  return files;
}

/** The same patch the other way round (the tests unpatch an installed file with it). */
export function reversePatch(patch: FilePatch): FilePatch {
  const swap = { ' ': ' ', '-': '+', '+': '-' } as const;
  return {
    path: patch.path,
    hunks: patch.hunks.map((h) => ({
      oldStart: h.newStart,
      newStart: h.oldStart,
      lines: h.lines.map((l) => ({ op: swap[l.op], text: l.text })),
    })),
  };
}

function side(hunk: Hunk, which: 'old' | 'new'): string[] {
  const dropped = which === 'old' ? '+' : '-';
  return hunk.lines.filter((l) => l.op !== dropped).map((l) => l.text);
}

/** The first line where `expected` differs from `lines` at 1-based `start`, or undefined. */
function mismatch(lines: string[], start: number, expected: string[]): number | undefined {
  for (const [k, want] of expected.entries()) if (lines[start - 1 + k] !== want) return start + k;
  return undefined;
}

/**
 * Applies `patch` to a file's text. 'already' when the file is the patched text already; a
 * PatchError (naming `label` and the first line that is neither) when it is neither the text the
 * patch was made from nor its result.
 */
export function patchSource(
  source: string,
  patch: FilePatch,
  label: string,
): { state: 'patched' | 'already'; text: string } {
  const lines = source.split('\n');
  const unpatched = patch.hunks.map((h) => mismatch(lines, h.oldStart, side(h, 'old')));
  if (unpatched.every((m) => m === undefined)) {
    const out: string[] = [];
    let next = 1;
    for (const h of patch.hunks) {
      out.push(...lines.slice(next - 1, h.oldStart - 1), ...side(h, 'new'));
      next = h.oldStart + side(h, 'old').length;
    }
    out.push(...lines.slice(next - 1));
    return { state: 'patched', text: out.join('\n') };
  }
  if (patch.hunks.every((h) => mismatch(lines, h.newStart, side(h, 'new')) === undefined))
    return { state: 'already', text: source };
  const i = unpatched.findIndex((m) => m !== undefined);
  const line = unpatched[i] ?? 0;
  const hunk = patch.hunks[i];
  const want = hunk ? side(hunk, 'old')[line - hunk.oldStart] : undefined;
  throw new PatchError(
    `${label}: line ${line} is ${JSON.stringify(lines[line - 1] ?? '<end of file>')}, the patch expects ` +
      `${JSON.stringify(want)}; the file is neither the source the patch was made from nor its patched form`,
  );
}

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new PatchError(`${file}: cannot read it as JSON: ${(err as Error).message}`);
  }
}

/** Every folder where `pkg` is installed for the root or one of its workspaces. */
function installedCopies(root: string, pkg: string): string[] {
  const workspaces = readJson(join(root, 'package.json')).workspaces ?? [];
  if (!Array.isArray(workspaces) || !workspaces.every((w) => typeof w === 'string'))
    throw new PatchError(`${join(root, 'package.json')}: "workspaces" must be a list of folder patterns`);
  const folders = [root, ...workspaces.flatMap((w) => globSync(w, { cwd: root }).map((f) => join(root, f)))];
  return folders
    .map((f) => join(f, 'node_modules', pkg))
    .filter((dir) => existsSync(join(dir, 'package.json')));
}

/** Applies every patch in `<root>/patches`; returns one line of what it did per file. */
export function patchDependencies(root: string): string[] {
  const patchesDir = join(root, 'patches');
  if (!existsSync(patchesDir)) return [];
  const done: string[] = [];
  for (const patchName of readdirSync(patchesDir).sort()) {
    if (!patchName.endsWith('.patch')) continue;
    const match = /^(.+)\+([^+]+)\.patch$/.exec(patchName);
    if (!match?.[1] || !match[2])
      throw new PatchError(`patches/${patchName}: the name must be <package>+<version>.patch`);
    const pkg = match[1].replaceAll('+', '/');
    const version = match[2];
    const filePatches = parsePatch(readFileSync(join(patchesDir, patchName), 'utf8'), `patches/${patchName}`);
    const copies = installedCopies(root, pkg);
    if (copies.length === 0)
      throw new PatchError(
        `patches/${patchName}: ${pkg} is not installed (no node_modules/${pkg}); ` +
          `remove the patch if the package is no longer a dependency`,
      );
    for (const dir of copies) {
      const where = relative(root, dir);
      const installed = readJson(join(dir, 'package.json')).version;
      if (installed !== version)
        throw new PatchError(
          `patches/${patchName} is for ${pkg} ${version}, but ${where} is ${pkg} ${String(installed)}: ` +
            `check whether ${String(installed)} still needs the change, then remake the patch for it ` +
            `(and rename it) or remove it`,
        );
      for (const filePatch of filePatches) {
        const file = join(dir, filePatch.path);
        const label = `${pkg}@${version} ${join(where, filePatch.path)} (patches/${patchName})`;
        if (!existsSync(file)) throw new PatchError(`${label}: the file does not exist`);
        const { state, text } = patchSource(readFileSync(file, 'utf8'), filePatch, label);
        if (state === 'patched') {
          // A new file renamed over the old one: an interrupted run leaves either, never half.
          const temp = `${file}.patch-deps-${process.pid}`;
          writeFileSync(temp, text, { mode: statSync(file).mode });
          renameSync(temp, file);
        }
        done.push(`${join(where, filePatch.path)}: ${state === 'patched' ? 'patched' : 'already patched'}`);
      }
    }
  }
  return done;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { root: { type: 'string' } } });
  const root = values.root ?? fileURLToPath(new URL('..', import.meta.url));
  try {
    for (const line of patchDependencies(root)) console.log(`patch-deps: ${line}`);
  } catch (err) {
    if (!(err instanceof PatchError)) throw err;
    console.error(`patch-deps: ${err.message}`);
    process.exit(1);
  }
}
