import { mkdir, open, readdir, readFile, rm, stat, statfs, type FileHandle } from 'node:fs/promises';
// The subpath alone: the whole runtime would slow the start of every handler process.
import { commitFile } from '@podmortem/contract/runtime/durable-write';
import { isElf64Le, readElfBuildId } from '../elf-build-id.ts';
import {
  isPendingModuleFile,
  moduleCacheDir,
  moduleCacheFiles,
  type ModuleSkipReason,
  type SpoolModule,
} from '../spool-entry.ts';
import { mappedFiles, parseProcMaps, type MappedFileRanges } from './proc-maps.ts';

// The modules of the crashed process (executable, shared libraries) as they were mapped at the
// crash, so that a later stage can unwind the core with the very binaries it ran — even when the
// file was deleted, or exists only in the container's mount namespace. Each is read through
// /proc/<pid>/map_files/<start>-<end>, which opens the mapped file itself (root only), and copied
// once per GNU build id into the node's cache under the spool (spool-entry.ts: moduleCacheFiles),
// for the agent to store.
//
// Run after the core is drained: the kernel keeps the crashing process, and with it /proc/<pid>
// and its mappings, until the handler closes its end of the pipe (core_pipe_limit > 0), and the
// handler keeps stdin open until it exits. So the core's reading is never delayed by this.

/** The event holds at most this many modules (contract: analysis.modules maxItems). */
const MAX_MODULES = 4096;
const COPY_CHUNK = 1024 * 1024;

export interface ModuleCaptureParams {
  pid: number;
  spoolDir: string;
  /** Total bytes of cached modules not stored yet by the agent (see HandlerConfig). */
  cacheMaxBytes: number;
  moduleMaxBytes: number;
  /** The spool's free-space floor (HandlerConfig.minFreeBytes): no copy goes below it. */
  minFreeBytes: number;
  /** Bytes this crash may copy. */
  copyBytes: number;
  /** performance.now() past which nothing more is copied. */
  deadline: number;
  /** A claim (.tmp-<build-id>) older than this was left by a handler that died: taken over. */
  staleClaimMs: number;
  procRoot?: string;
  now?: () => number;
}

export interface ModuleCaptureSummary {
  modules: number;
  copied: number;
  cached: number;
  skipped: Partial<Record<ModuleSkipReason, number>>;
  copiedBytes: number;
  copiedBuildIds: string[];
  ms: number;
}

/** maps pads addresses with zeros; the event writes them as the core notes do. */
const hex = (digits: string) => '0x' + BigInt('0x' + digits).toString(16);
const errText = (err: unknown) => (err as Error).message;

class Budget {
  readonly #p: ModuleCaptureParams;
  readonly #now: () => number;
  copied = 0;
  #cacheBytes: number | undefined;

  constructor(p: ModuleCaptureParams) {
    this.#p = p;
    this.#now = p.now ?? (() => performance.now());
  }

  get expired(): boolean {
    return this.#now() >= this.#p.deadline;
  }

  /** Bytes pending in the cache, read once per crash and kept up to date by this handler's copies. */
  async cacheBytes(): Promise<number> {
    if (this.#cacheBytes === undefined) {
      let total = 0;
      for (const name of await readdir(moduleCacheDir(this.#p.spoolDir))) {
        if (!isPendingModuleFile(name)) continue;
        try {
          total += (await stat(`${moduleCacheDir(this.#p.spoolDir)}/${name}`)).size;
        } catch {
          // Stored and removed by the agent meanwhile.
        }
      }
      this.#cacheBytes = total;
    }
    return this.#cacheBytes;
  }

  add(bytes: number): void {
    this.copied += bytes;
    if (this.#cacheBytes !== undefined) this.#cacheBytes += bytes;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function readerOf(file: FileHandle) {
  return async (offset: number, length: number) => {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await file.read(buf, 0, length, offset);
    return buf.subarray(0, bytesRead);
  };
}

type Outcome = Pick<SpoolModule, 'capture' | 'skipped' | 'reason'>;
const skip = (skipped: ModuleSkipReason, reason: string): Outcome => ({
  capture: 'skipped',
  skipped,
  reason,
});

/**
 * Every mapped ELF module of the process, each copied into the node's cache when its build id is
 * new there and the budgets allow. Throws only when /proc/<pid>/maps cannot be read.
 */
export async function captureModules(
  p: ModuleCaptureParams,
): Promise<{ modules: SpoolModule[]; summary: ModuleCaptureSummary }> {
  const started = performance.now();
  const procDir = `${p.procRoot ?? '/proc'}/${p.pid}`;
  const files = mappedFiles(parseProcMaps(await readFile(`${procDir}/maps`, 'utf8')));
  const budget = new Budget(p);
  let cacheReady: Promise<string | undefined> | undefined;
  const modules: SpoolModule[] = [];
  const summary: ModuleCaptureSummary = {
    modules: 0,
    copied: 0,
    cached: 0,
    skipped: {},
    copiedBytes: 0,
    copiedBuildIds: [],
    ms: 0,
  };
  for (const f of files) {
    if (modules.length >= MAX_MODULES) break;
    const module = await captureOne(f);
    if (!module) continue;
    modules.push(module);
    if (module.capture === 'copied') {
      summary.copied++;
      if (module.buildId !== undefined) summary.copiedBuildIds.push(module.buildId);
    } else if (module.capture === 'cached') summary.cached++;
    else if (module.skipped) summary.skipped[module.skipped] = (summary.skipped[module.skipped] ?? 0) + 1;
  }
  summary.modules = modules.length;
  summary.copiedBytes = budget.copied;
  summary.ms = Math.round((performance.now() - started) * 10) / 10;
  return { modules, summary };

  /** undefined for a mapped file that is no ELF module (locale archives, fonts, data). */
  async function captureOne(f: MappedFileRanges): Promise<SpoolModule | undefined> {
    const base: SpoolModule = {
      path: f.path,
      ranges: f.mappings.map((m) => ({ start: hex(m.start), end: hex(m.end) })),
      capture: 'skipped',
    };
    if (f.deleted) base.deleted = true;
    const first = f.mappings[0];
    if (!first) return undefined;
    if (budget.expired) return { ...base, ...skip('budget', 'the module time budget was spent') };
    let file: FileHandle;
    try {
      file = await open(`${procDir}/map_files/${first.start}-${first.end}`, 'r');
    } catch (err) {
      return { ...base, ...skip('unreadable', errText(err)) };
    }
    try {
      const read = readerOf(file);
      let buildId: string | undefined;
      let size: number;
      try {
        if (!isElf64Le(await read(0, 64))) return undefined;
        size = (await file.stat()).size;
        buildId = await readElfBuildId(read);
      } catch (err) {
        return { ...base, ...skip('unreadable', errText(err)) };
      }
      const module: SpoolModule = { ...base, sizeBytes: size };
      if (buildId === undefined) return { ...module, ...skip('no-build-id', 'no GNU build id note') };
      module.buildId = buildId;
      return { ...module, ...(await copy(file, buildId, size)) };
    } finally {
      await file.close();
    }
  }

  /** Copies the whole file; what stopped it, or undefined when all of it was copied. */
  async function copyInto(file: FileHandle, out: FileHandle, size: number): Promise<Outcome | undefined> {
    const buf = Buffer.alloc(Math.min(COPY_CHUNK, size));
    let at = 0;
    while (at < size) {
      if (budget.expired)
        return skip('budget', `the module time budget was spent after ${at} of ${size} bytes`);
      const { bytesRead } = await file.read(buf, 0, Math.min(buf.length, size - at), at);
      if (bytesRead === 0) return skip('unreadable', `the file ended at ${at} of ${size} bytes`);
      try {
        await out.write(buf.subarray(0, bytesRead));
      } catch (err) {
        return skip('cache-error', errText(err));
      }
      at += bytesRead;
    }
    return undefined;
  }

  async function copy(file: FileHandle, buildId: string, size: number): Promise<Outcome> {
    const paths = moduleCacheFiles(p.spoolDir, buildId);
    if ((await exists(paths.stored)) || (await exists(paths.bytes))) return { capture: 'cached' };
    if (size > p.moduleMaxBytes)
      return skip('too-large', `${size} bytes, more than moduleMaxBytes ${p.moduleMaxBytes}`);
    if (budget.expired) return skip('budget', 'the module time budget was spent');
    if (budget.copied + size > p.copyBytes)
      return skip('budget', `${size} bytes would pass this crash's moduleCopyBytes ${p.copyBytes}`);
    cacheReady ??= mkdir(moduleCacheDir(p.spoolDir), { recursive: true, mode: 0o700 }).then(
      () => undefined,
      (err: unknown) => errText(err),
    );
    const cacheProblem = await cacheReady;
    if (cacheProblem !== undefined) return skip('cache-error', cacheProblem);
    let pending: number;
    try {
      pending = await budget.cacheBytes();
    } catch (err) {
      return skip('cache-error', errText(err));
    }
    let free: number;
    try {
      const fs = await statfs(moduleCacheDir(p.spoolDir));
      free = fs.bavail * fs.bsize;
    } catch (err) {
      return skip('cache-error', errText(err));
    }
    // The spool's floor is the crashes': a module never takes the room of a core.
    if (free - size < p.minFreeBytes)
      return skip(
        'cache-full',
        `the spool has ${free} bytes free; ${size} more would pass its floor minFreeBytes ${p.minFreeBytes}`,
      );
    if (pending + size > p.cacheMaxBytes)
      return skip(
        'cache-full',
        `the cache holds ${pending} bytes not stored yet; ${size} more would pass moduleCacheMaxBytes ${p.cacheMaxBytes}`,
      );
    let out: FileHandle;
    try {
      out = await open(paths.claim, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return skip('cache-error', errText(err));
      const claimed = await stat(paths.claim).catch(() => undefined);
      // Another handler is copying the same build id right now: it is as good as cached.
      if (claimed && Date.now() - claimed.mtimeMs < p.staleClaimMs) return { capture: 'cached' };
      await rm(paths.claim, { force: true });
      try {
        out = await open(paths.claim, 'wx', 0o600);
      } catch (again) {
        return (again as NodeJS.ErrnoException).code === 'EEXIST'
          ? { capture: 'cached' }
          : skip('cache-error', errText(again));
      }
    }
    // A handler that finished between the look above and this claim renamed its claim to the
    // bytes, which freed the claim's name: the module is cached, and copying it again would store
    // a second copy (seen in a storm of crashes of one binary).
    if ((await exists(paths.stored)) || (await exists(paths.bytes))) {
      await out.close();
      await rm(paths.claim, { force: true });
      return { capture: 'cached' };
    }
    let outcome: Outcome | undefined;
    try {
      outcome = await copyInto(file, out, size);
    } catch (err) {
      outcome = skip('unreadable', errText(err));
    } finally {
      await out.close();
    }
    if (outcome) {
      await rm(paths.claim, { force: true });
      return outcome;
    }
    try {
      await commitFile(paths.claim, paths.bytes);
    } catch (err) {
      return skip('cache-error', errText(err));
    }
    budget.add(size);
    return { capture: 'copied' };
  }
}
