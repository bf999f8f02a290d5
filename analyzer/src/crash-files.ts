import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createZstdDecompress } from 'node:zlib';
import { dumpRelPath, moduleKey, type CrashEvent } from '@podmortem/contract';
import { isStoreError, type Store } from '@podmortem/contract/store';
import { messageOf } from '@podmortem/contract/runtime';
import { AnalyzerError } from './errors.ts';

// The files one crash is unwound from, in a temporary folder of its own: the core decompressed
// (eu-stack needs a seekable file, the store keeps it zstd-compressed), the executable by its
// build id under its own name (eu-stack names the main module after it), and the other captured
// modules laid out by build id, as elfutils looks modules up in a --debuginfo-path folder. Every
// byte written counts against one per-crash budget: a core of a large process is many times its
// compressed size, and the analyzer's disk is shared by every crash it takes.

export interface CrashFilesParams {
  store: Store;
  /** Where the per-crash folder is made. */
  workDir: string;
  /** Bytes the folder may take. */
  maxBytes: number;
  signal?: AbortSignal;
}

/** Why a crash has no files to unwind from; `skipped` for a policy limit, `failed` for bad input. */
export interface NoFiles {
  ok: false;
  status: 'failed' | 'skipped';
  reason: 'dump-missing' | 'dump-corrupt' | 'executable-missing' | 'temp-limit';
  message: string;
}

export interface CrashFiles {
  ok: true;
  dir: string;
  core: string;
  executable: string;
  debuginfoDirs: string[];
  /** The core ended early (a truncated dump whose compressed stream is cut too). */
  coreCut: boolean;
  bytes: number;
}

class OverBudget extends Error {}

/** Counts the bytes through it against a budget shared by every file of the crash. */
function metered(budget: { left: number }): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback) {
      budget.left -= chunk.length;
      if (budget.left < 0) done(new OverBudget());
      else done(null, chunk);
    },
  });
}

/** An object of the store, or undefined when there is none under the key. */
async function opened(store: Store, key: string): Promise<Readable | undefined> {
  try {
    return (await store.get(key)).body;
  } catch (err) {
    if (isStoreError(err, 'PM_ERR_STORE_NOT_FOUND')) return undefined;
    throw new AnalyzerError('PM_ERR_STORE_UNAVAILABLE', `${key}: ${messageOf(err)}`, err);
  }
}

async function copy(
  body: Readable,
  stages: Transform[],
  path: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  await pipeline([body, ...stages, createWriteStream(path, { flags: 'wx', mode: 0o600 })], {
    ...(signal ? { signal } : {}),
  });
}

/** Per-crash folders are `podmortem-analyzer-<pid>-<random>`: the pid says whose they are. */
const FOLDER_PREFIX = 'podmortem-analyzer-';
const FOLDER_RE = /^podmortem-analyzer-(\d+)-/;

const buildIdPath = (root: string, buildId: string, suffix = ''): string =>
  join(root, '.build-id', buildId.slice(0, 2), buildId.slice(2) + suffix);

/**
 * Lays out the files of `event`'s crash in a new temporary folder. The caller removes
 * `files.dir` (removeCrashFiles) whatever happens next; on a NoFiles result nothing is left.
 * Throws a retriable AnalyzerError when the store cannot be read now.
 */
export async function crashFiles(event: CrashEvent, params: CrashFilesParams): Promise<CrashFiles | NoFiles> {
  const dir = await mkdtemp(join(params.workDir, `${FOLDER_PREFIX}${process.pid}-`));
  try {
    const result = await fill(dir, event, params);
    if (!result.ok) await removeCrashFiles(dir);
    return result;
  } catch (err) {
    await removeCrashFiles(dir);
    throw err;
  }
}

async function fill(dir: string, event: CrashEvent, params: CrashFilesParams): Promise<CrashFiles | NoFiles> {
  const { store, signal } = params;
  const budget = { left: params.maxBytes };
  const noFiles = (status: NoFiles['status'], reason: NoFiles['reason'], message: string): NoFiles => ({
    ok: false,
    status,
    reason,
    message,
  });
  const overBudget = () =>
    noFiles('skipped', 'temp-limit', `the crash needs more than ${params.maxBytes} bytes of temporary disk`);

  const modules = event.analysis?.modules ?? [];
  const executable = event.process.executable;
  const exeBuildId = modules.find((m) => m.path === executable && m.build_id !== undefined)?.build_id;
  if (executable === undefined || exeBuildId === undefined)
    return noFiles('failed', 'executable-missing', 'the crash event names no executable with a build id');

  const dumpKey = dumpRelPath(event);
  const dump = await opened(store, dumpKey);
  if (!dump) return noFiles('failed', 'dump-missing', `${dumpKey}: not in the store`);
  const core = join(dir, 'core');
  let coreCut = false;
  try {
    const decompress = event.dump.compression === 'none' ? [] : [createZstdDecompress()];
    await copy(dump, [...decompress, metered(budget)], core, signal);
  } catch (err) {
    if (err instanceof OverBudget) return overBudget();
    signal?.throwIfAborted();
    // The size limit may have cut the compressed stream itself: what came out before is the core.
    if (event.dump.status !== 'truncated')
      return noFiles('failed', 'dump-corrupt', `${dumpKey}: ${messageOf(err)}`);
    coreCut = true;
  }

  const exeBody = await opened(store, moduleKey(exeBuildId));
  if (!exeBody)
    return noFiles('failed', 'executable-missing', `${moduleKey(exeBuildId)}: executable not in the store`);
  await mkdir(join(dir, 'bin'));
  const exePath = join(dir, 'bin', basename(executable) || 'executable');
  try {
    await copy(exeBody, [metered(budget)], exePath, signal);
  } catch (err) {
    if (err instanceof OverBudget) return overBudget();
    throw storeReadError(moduleKey(exeBuildId), err, signal);
  }

  const modulesDir = join(dir, 'modules');
  const others = new Set(
    modules.flatMap((m) => (m.build_id && m.build_id !== exeBuildId ? [m.build_id] : [])),
  );
  for (const buildId of others) {
    for (const [kind, suffix] of [
      ['executable', ''],
      ['debuginfo', '.debug'],
    ] as const) {
      const key = moduleKey(buildId, kind);
      const body = await opened(store, key);
      // A module not captured is unwound without: its frames lose their names, not the crash.
      if (!body) continue;
      const path = buildIdPath(modulesDir, buildId, suffix);
      await mkdir(join(path, '..'), { recursive: true });
      try {
        await copy(body, [metered(budget)], path, signal);
      } catch (err) {
        if (err instanceof OverBudget) return overBudget();
        throw storeReadError(key, err, signal);
      }
    }
  }
  return {
    ok: true,
    dir,
    core,
    executable: exePath,
    debuginfoDirs: others.size > 0 ? [modulesDir] : [],
    coreCut,
    bytes: params.maxBytes - budget.left,
  };
}

function storeReadError(key: string, err: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return signal.reason;
  return new AnalyzerError('PM_ERR_STORE_UNAVAILABLE', `${key}: ${messageOf(err)}`, err);
}

export async function removeCrashFiles(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, as another user's.
    return err instanceof Error && 'code' in err && err.code === 'EPERM';
  }
}

/**
 * Removes the per-crash folders a killed analyzer left in `workDir` (a SIGKILL runs no finally):
 * those of this pid, made before this process made any (a restarted container is pid 1 again),
 * and those of a pid that no longer runs. Another live instance's folders are left alone.
 * Returns how many were removed.
 */
export async function removeStaleCrashFiles(workDir: string): Promise<number> {
  let removed = 0;
  for (const name of await readdir(workDir)) {
    const pid = Number(FOLDER_RE.exec(name)?.[1] ?? Number.NaN);
    if (!Number.isInteger(pid) || (pid !== process.pid && alive(pid))) continue;
    await removeCrashFiles(join(workDir, name));
    removed++;
  }
  return removed;
}
