import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, rename, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { createZstdDecompress } from 'node:zlib';
import { isCrashId } from '@podmortem/contract/crash-id';
import type { DumpStatus } from '@podmortem/contract';

// The spool is the durable hand-off between the handler (run by the kernel, once per crash) and
// the agent (long-lived). One crash = <crash-id>.core.zst (absent when no dump was kept) and
// <crash-id>.meta.json. The handler writes each under a temporary name, fsyncs, renames, and
// renames the meta last: a .meta.json in the spool means the entry is complete. The agent deletes
// both only after storage, OTLP and Kafka acknowledged the crash.

export const SPOOL_META_SUFFIX = '.meta.json';
export const SPOOL_CORE_SUFFIX = '.core.zst';
export const SPOOL_TMP_PREFIX = '.tmp-';

/** Facts the kernel passed on the handler's command line (core_pattern specifiers). */
export interface KernelFacts {
  /** %P: pid in the initial (host) pid namespace */
  pid: number;
  /** %p: pid in the process's own pid namespace */
  nsPid: number;
  /** %I: tid in the initial pid namespace */
  tid: number;
  /** %i: tid in the process's own namespace */
  nsTid: number;
  /** %s */
  signal: number;
  /** %t: seconds since the epoch */
  time: number;
  /** %c: the RLIMIT_CORE soft limit; -1 when unlimited (RLIM_INFINITY) */
  coreLimit: number;
  /** %e: comm */
  comm: string;
  /** %E: executable path ('!' already turned back into '/') */
  exePath: string;
  /** %h */
  hostname: string;
  /** %u, %g */
  uid: number;
  gid: number;
}

/** What the handler read of /proc/<pid> while the crashing process still existed. */
export interface ProcFacts {
  /** Raw /proc/<pid>/cgroup, for the agent's pod resolution. */
  cgroup: string;
  cmdline: string[];
  comm: string;
  exe?: string;
  /** NSpid line of /proc/<pid>/status: the pid in each nested namespace, outermost first. */
  nsPids: number[];
  ppid?: number;
}

export interface SpoolDump {
  status: Extract<DumpStatus, 'stored' | 'skipped' | 'truncated' | 'failed'>;
  reason?: string;
  /** Bytes the kernel wrote (read from stdin, even past the limit). */
  sizeBytes: number;
  /** Compressed bytes in the spool file; 0 when none was kept. */
  storedBytes: number;
  /** sha256 of the raw bytes that were kept (all of them unless truncated). */
  sha256?: string;
  compression: 'zstd' | 'none';
  limitBytes: number;
}

export interface SpoolMeta {
  version: 1;
  crashId: string;
  /** ISO time the handler started: when the kernel reported the crash, to the millisecond. */
  timestamp: string;
  node: string;
  kernel: KernelFacts;
  proc?: ProcFacts;
  /** Why proc is missing (the process was gone, no permission…). */
  procError?: string;
  /**
   * Why some kernel facts are missing: the core_pattern arguments that were absent or malformed
   * (their fields then hold 0 or ''). Absent when all were good.
   */
  argsError?: string;
  /** The handler's arguments as the kernel gave them, kept only when argsError is set. */
  rawArgs?: string[];
  dump: SpoolDump;
  /** Milliseconds from the handler's start to its meta being written. */
  handlerMs: number;
  collectorVersion: string;
}

export function spoolPaths(spoolDir: string, crashId: string) {
  return {
    meta: join(spoolDir, crashId + SPOOL_META_SUFFIX),
    core: join(spoolDir, crashId + SPOOL_CORE_SUFFIX),
    tmpMeta: join(spoolDir, SPOOL_TMP_PREFIX + crashId + SPOOL_META_SUFFIX),
    tmpCore: join(spoolDir, SPOOL_TMP_PREFIX + crashId + SPOOL_CORE_SUFFIX),
  };
}

/** Writes the meta file atomically, under a temporary name the spool watcher passes over. */
export async function writeSpoolMeta(spoolDir: string, meta: SpoolMeta): Promise<void> {
  const paths = spoolPaths(spoolDir, meta.crashId);
  await writeJsonAtomically(spoolDir, paths.meta, meta, paths.tmpMeta);
}

/**
 * Writes `value` as JSON to `path` in `dir` so that a reader, or a restart after a kill, finds
 * the old file or the new one, never half of one: temporary name, fsync, rename, fsync of the
 * folder. The temporary name is random unless given, so two writers of the same path never share one.
 */
export async function writeJsonAtomically(
  dir: string,
  path: string,
  value: unknown,
  tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`,
): Promise<void> {
  try {
    const file = await open(tmp, 'w', 0o600);
    try {
      await file.writeFile(JSON.stringify(value));
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  } catch (err) {
    // A full disk must not also leave a partial file behind for every attempt.
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dir);
}

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function readSpoolMeta(spoolDir: string, crashId: string): Promise<SpoolMeta> {
  return JSON.parse(await readFile(spoolPaths(spoolDir, crashId).meta, 'utf8')) as SpoolMeta;
}

/** Complete entries in the spool, oldest crash first (crash ids sort by time). */
export async function listSpool(spoolDir: string): Promise<string[]> {
  const names = await readdir(spoolDir);
  return names
    .filter((n) => n.endsWith(SPOOL_META_SUFFIX) && !n.startsWith(SPOOL_TMP_PREFIX))
    .map((n) => n.slice(0, -SPOOL_META_SUFFIX.length))
    .filter(isCrashId)
    .sort();
}

/**
 * Removes a delivered entry, the meta first: a crash mid-way leaves at worst a core without a meta,
 * which no reader takes for an entry (the agent's sweep removes such orphans).
 */
export async function removeSpoolEntry(spoolDir: string, crashId: string): Promise<void> {
  const paths = spoolPaths(spoolDir, crashId);
  await rm(paths.meta, { force: true });
  await rm(paths.core, { force: true });
}

/**
 * The raw core of an entry as a stream (decompressed when the handler compressed it: the file is
 * named .core.zst either way, meta.dump.compression says what it holds). Destroying the returned
 * stream closes the file. Only for entries whose dump.storedBytes > 0.
 */
export function openSpoolCore(spoolDir: string, meta: SpoolMeta): Readable {
  const file = createReadStream(spoolPaths(spoolDir, meta.crashId).core);
  if (meta.dump.compression === 'none') return file;
  // The callback only silences the pipeline: its errors reach the reader through the returned stream.
  return pipeline(file, createZstdDecompress(), () => undefined);
}
