import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { lockCorePattern } from './core-pattern-lock.ts';

// Real crashes for the analyzer's tests: small programs compiled with debug info and killed by
// real signals, so that the kernel writes real cores. kernel.core_pattern is global to the
// machine: it is changed only while the shared lock is held, for as short a time as the crashes
// take, and put back in a finally that runs whatever happened.

const run = promisify(execFile);

export interface Program {
  source: string;
  lang?: 'c' | 'c++';
  /** Added after `-g -O0 -Wall -Werror -pthread`; a later -O wins. */
  flags?: readonly string[];
  /** Libraries to link, after the source. */
  link?: readonly string[];
}

/** Compiles each program into `dir`; returns the executables by name. */
export async function buildPrograms(
  dir: string,
  programs: Record<string, Program>,
): Promise<Record<string, string>> {
  const exes: Record<string, string> = {};
  for (const [name, program] of Object.entries(programs)) {
    const cxx = program.lang === 'c++';
    const source = join(dir, `${name}.${cxx ? 'cpp' : 'c'}`);
    await writeFile(source, program.source);
    const exe = join(dir, name);
    await run(cxx ? 'g++' : 'gcc', [
      '-g',
      '-O0',
      '-Wall',
      '-Werror',
      '-pthread',
      ...(program.flags ?? []),
      '-o',
      exe,
      source,
      ...(program.link ?? []),
    ]);
    exes[name] = exe;
  }
  return exes;
}

export interface Crash {
  exe: string;
  pid: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  /** Where the kernel wrote the core (it is there once the process has been reaped). */
  core: string;
}

/** A program that did not crash is stopped after this long, so the lock is never held for ever. */
const CRASH_TIMEOUT_MS = 20_000;

async function crashOne(dir: string, exe: string, args: readonly string[]): Promise<Crash> {
  // `ulimit -c` for the crashing process only; exec keeps the pid the core is named by.
  const child = spawn('bash', ['-c', 'ulimit -c unlimited; exec "$0" "$@"', exe, ...args], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: CRASH_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const [, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  const pid = child.pid ?? 0;
  return { exe, pid, signal, stdout, core: join(dir, `core.${pid}`) };
}

const CORE_PATTERN = '/proc/sys/kernel/core_pattern';

/** Runs each executable (with its arguments) under core_pattern `<dir>/core.%p`, one at a time. */
export async function crashAll(
  dir: string,
  runs: Record<string, { exe: string; args?: readonly string[] }>,
): Promise<Record<string, Crash>> {
  const unlock = await lockCorePattern();
  try {
    const saved = (await readFile(CORE_PATTERN, 'utf8')).trimEnd();
    try {
      await writeFile(CORE_PATTERN, join(dir, 'core.%p'));
      const crashes: Record<string, Crash> = {};
      for (const [name, r] of Object.entries(runs)) crashes[name] = await crashOne(dir, r.exe, r.args ?? []);
      return crashes;
    } finally {
      await writeFile(CORE_PATTERN, saved);
    }
  } finally {
    await unlock();
  }
}

/** The GNU build id of an ELF file, as readelf prints it. */
export async function buildIdOf(path: string): Promise<string | undefined> {
  const { stdout } = await run('readelf', ['-n', path]);
  return /Build ID: ([0-9a-f]+)/.exec(stdout)?.[1];
}

/** The 1-based number of the line of `source` that contains `marker`. */
export function lineOf(source: string, marker: string): number {
  const index = source.split('\n').findIndex((line) => line.includes(marker));
  if (index < 0) throw new Error(`no line contains ${JSON.stringify(marker)}`);
  return index + 1;
}
