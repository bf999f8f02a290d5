import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
// The subpath alone: the handler imports this module, and the whole runtime (pino, ajv) would
// slow the start of every handler process.
import { commitFile, TMP_PREFIX, writeJsonAtomically } from '@podmortem/contract/runtime/durable-write';
import { isCrashId } from '@podmortem/contract/crash-id';
import type { DumpStatus } from '@podmortem/contract';

// The spool is the durable hand-off between the handler (run by the kernel, once per crash) and
// the agent (long-lived). One crash = <crash-id>.core.zst (absent when no dump was kept) and
// <crash-id>.meta.json. The handler writes each under a temporary name (.tmp-<crash-id>…), fsyncs,
// renames, and renames the meta last: a .meta.json in the spool means the entry is complete. The
// agent keeps its delivery progress beside them (<crash-id>.agent.json), and deletes all three
// only once the crash is delivered, or moves them to rejected/ with a <crash-id>.reason.json.
//
// This module is the format: the shapes, every file name, and the handler's writers. It stays
// light to import (the handler runs while the kernel holds the crashing process); the agent reads
// and changes entries through agent/spool.ts, which builds no name of its own.

const META_SUFFIX = '.meta.json';
const CORE_SUFFIX = '.core.zst';
const STATE_SUFFIX = '.agent.json';
const REASON_SUFFIX = '.reason.json';
const REJECTED_DIR = 'rejected';
const MODULES_DIR = 'modules';
const STORED_SUFFIX = '.stored';

export type SpoolFileKind = 'meta' | 'core' | 'state';

/** What a file of the spool folder is, told by its name. */
export interface SpoolFileName {
  crashId: string;
  kind: SpoolFileKind;
  /** Not yet renamed into place: a writer is at it, or was killed while at it. */
  temporary: boolean;
  /** A temporary of the agent (random-named): only the running agent's own deliveries write them. */
  agentTemporary: boolean;
}

const KIND_BY_SUFFIX: Record<string, SpoolFileKind> = {
  [META_SUFFIX]: 'meta',
  [CORE_SUFFIX]: 'core',
  [STATE_SUFFIX]: 'state',
};
const escape = (s: string) => s.replaceAll('.', '\\.');
// Temporaries: the handler's .tmp-<id><suffix>, the agent's .tmp-<random>-<id><suffix> (the
// contract's temporaryPath), and <id><suffix>.<random>.tmp left by agents before that.
const FILE_NAME = new RegExp(
  `^(${escape(TMP_PREFIX)}(?:[0-9a-f]+-)?)?([0-9a-f-]{36})(${Object.keys(KIND_BY_SUFFIX)
    .map(escape)
    .join('|')})(\\.[0-9a-f]+\\.tmp)?$`,
);

/** undefined for what is no part of an entry: the handler's log and state, rejected/. */
export function parseSpoolFileName(name: string): SpoolFileName | undefined {
  const m = FILE_NAME.exec(name);
  const crashId = m?.[2];
  const kind = m?.[3] === undefined ? undefined : KIND_BY_SUFFIX[m[3]];
  if (!m || crashId === undefined || kind === undefined || !isCrashId(crashId)) return undefined;
  const agentTemporary = (m[1] !== undefined && m[1] !== TMP_PREFIX) || m[4] !== undefined;
  return { crashId, kind, temporary: m[1] !== undefined || m[4] !== undefined, agentTemporary };
}

/** Every path of one entry. */
export function spoolFiles(spoolDir: string, crashId: string) {
  const rejectedDir = join(spoolDir, REJECTED_DIR);
  return {
    meta: join(spoolDir, crashId + META_SUFFIX),
    core: join(spoolDir, crashId + CORE_SUFFIX),
    state: join(spoolDir, crashId + STATE_SUFFIX),
    /** The handler's temporaries: fixed names, as one handler process writes one crash. */
    tmpMeta: join(spoolDir, TMP_PREFIX + crashId + META_SUFFIX),
    tmpCore: join(spoolDir, TMP_PREFIX + crashId + CORE_SUFFIX),
    rejectedDir,
    rejected: {
      meta: join(rejectedDir, crashId + META_SUFFIX),
      core: join(rejectedDir, crashId + CORE_SUFFIX),
      state: join(rejectedDir, crashId + STATE_SUFFIX),
      reason: join(rejectedDir, crashId + REASON_SUFFIX),
    },
  };
}

/**
 * The node's build-id cache of modules (executables, libraries) captured at crash time, under the
 * spool: <spool>/modules/<build-id> holds the bytes of a module the agent has not stored yet;
 * <build-id>.stored is the empty marker the agent leaves once it has (the bytes are then removed),
 * so later crashes of the same binary copy nothing; .tmp-<build-id> is the copy a handler is
 * writing, created exclusively so that concurrent crashes of one binary copy it once. The handler
 * never removes a module file: only the agent does, once the module is in the store.
 */
export function moduleCacheDir(spoolDir: string): string {
  return join(spoolDir, MODULES_DIR);
}

export function moduleCacheFiles(spoolDir: string, buildId: string) {
  const dir = moduleCacheDir(spoolDir);
  return {
    bytes: join(dir, buildId),
    stored: join(dir, buildId + STORED_SUFFIX),
    claim: join(dir, TMP_PREFIX + buildId),
  };
}

/** Whether a name of the module cache folder counts against its cap (bytes not stored yet). */
export function isPendingModuleFile(name: string): boolean {
  return !name.endsWith(STORED_SUFFIX);
}

/** Why a mapped module was not copied into the node's cache. */
export const MODULE_SKIP_REASONS = [
  'budget',
  'too-large',
  'unreadable',
  'no-build-id',
  'cache-full',
  'cache-error',
] as const;
export type ModuleSkipReason = (typeof MODULE_SKIP_REASONS)[number];

/** One mapped ELF module of the crashed process, as the handler saw it in /proc/<pid>. */
export interface SpoolModule {
  /** As the process saw it (its mount namespace), without the kernel's ' (deleted)'. */
  path: string;
  /** The file had been unlinked before the crash. */
  deleted?: true;
  /** Its mappings: lower-case hex with 0x, lowest address first. */
  ranges: { start: string; end: string }[];
  buildId?: string;
  sizeBytes?: number;
  /**
   * copied: into the node cache by this handler; cached: in the cache already, stored by the agent
   * already, or being copied by a concurrent handler; skipped: see `skipped` and `reason`.
   */
  capture: 'copied' | 'cached' | 'skipped';
  skipped?: ModuleSkipReason;
  reason?: string;
}

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
  /** /proc/<pid>/exe without the kernel's ' (deleted)'; see exeDeleted. */
  exe?: string;
  /** The executable had been unlinked before the crash. */
  exeDeleted?: true;
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
  /**
   * Base64 of the core's first bytes through its note segments, when the dump is not stored whole
   * (skipped, truncated, failed): what the agent reads the crash's notes from without a core file.
   */
  coreHead?: string;
  /**
   * Every mapped ELF module, read from /proc/<pid> after the core (absent in metas of handlers
   * before module capture, or when /proc could not be read: see modulesError).
   */
  modules?: SpoolModule[];
  modulesError?: string;
  /** Milliseconds from the handler's start to its meta being written. */
  handlerMs: number;
  collectorVersion: string;
}

/** Where the handler streams the core before publishing it with publishSpoolCore. */
export function spoolCoreTemporary(spoolDir: string, crashId: string): string {
  return spoolFiles(spoolDir, crashId).tmpCore;
}

/** Moves the streamed core into place (durably); the temporary is gone whatever happens. */
export function publishSpoolCore(spoolDir: string, crashId: string): Promise<void> {
  const files = spoolFiles(spoolDir, crashId);
  return commitFile(files.tmpCore, files.core);
}

/** Writes the meta, completing the entry: atomically, under a name the agent passes over. */
export function writeSpoolMeta(spoolDir: string, meta: SpoolMeta): Promise<void> {
  const files = spoolFiles(spoolDir, meta.crashId);
  return writeJsonAtomically(files.meta, meta, { tmp: files.tmpMeta });
}

/**
 * The handler's last resort, synchronous because the process exits right after: drops the core
 * (the meta says no dump was kept) and writes the meta without fsyncs. Throws if it cannot.
 */
export function writeSpoolMetaNow(spoolDir: string, meta: SpoolMeta): void {
  const files = spoolFiles(spoolDir, meta.crashId);
  rmSync(files.tmpCore, { force: true });
  writeFileSync(files.tmpMeta, JSON.stringify(meta), { mode: 0o600 });
  renameSync(files.tmpMeta, files.meta);
}
