import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.ts';
import { until } from './poll.ts';

// A real debuginfod server (elfutils, the Debian package) over a folder of debug files, for the
// tests of separate debug info: it indexes the folder (-F) into its own database and serves each
// file by its build id on the protocol's paths, as a distribution's server does.

const run = promisify(execFile);

export interface Debuginfod {
  url: string;
  /** What the server printed: its requests among them. */
  log(): string;
  stop(): Promise<void>;
}

/** Starts debuginfod over `filesDir` and waits until it serves each of `buildIds`' debug file. */
export async function startDebuginfod(
  workDir: string,
  filesDir: string,
  buildIds: readonly string[],
): Promise<Debuginfod> {
  const port = await freePort();
  await mkdir(workDir, { recursive: true });
  const child = spawn(
    'debuginfod',
    ['-F', filesDir, '-p', String(port), '-d', join(workDir, 'debuginfod.sqlite'), '-t', '1', '-v'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-200_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = once(child, 'exit');
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exited;
  };
  const url = `http://127.0.0.1:${port}`;
  try {
    for (const id of buildIds) {
      await until(
        `debuginfod on port ${port} to serve the debug file of ${id}; its log: ${output.slice(-2000)}`,
        async () => {
          if (child.exitCode !== null) throw new Error(`debuginfod exited ${child.exitCode}: ${output}`);
          const res = await fetch(`${url}/buildid/${id}/debuginfo`).catch(() => undefined);
          await res?.arrayBuffer();
          return res?.status === 200;
        },
        30_000,
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, log: () => output, stop };
}

export interface SplitProgram {
  /** The stripped executable: no symbol table, no DWARF. */
  exe: string;
  /** Its debug file (objcopy --only-keep-debug), in `debugDir`. */
  debug: string;
}

/**
 * Splits the debug info of `exe` off into `debugDir` and strips the executable, as distributions
 * build packages: the function names and source lines are then only in the debug file.
 */
export async function splitDebugInfo(exe: string, debugDir: string): Promise<SplitProgram> {
  await mkdir(debugDir, { recursive: true });
  const debug = join(debugDir, `${exe.split('/').at(-1) ?? 'program'}.debug`);
  await run('objcopy', ['--only-keep-debug', exe, debug]);
  await run('strip', ['--strip-all', exe]);
  return { exe, debug };
}

/** The section names of an ELF file, as readelf lists them. */
export async function sectionsOf(path: string): Promise<string[]> {
  const { stdout } = await run('readelf', ['-S', '-W', path]);
  return [...stdout.matchAll(/\]\s+(\S+)/g)].flatMap((m) => (m[1] ? [m[1]] : []));
}
