import { createReadStream } from 'node:fs';
import { readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { createZstdDecompress } from 'node:zlib';
import { validateCrashEvent, type CrashEvent } from '@podmortem/contract';
import { fsyncDir, makeDirDurably, messageOf, writeJsonAtomically } from '@podmortem/contract/runtime';
import { AgentError } from './errors.ts';
import { parseSpoolFileName, spoolFiles, type SpoolMeta } from '../spool-entry.ts';
import type { SpoolUsage } from './telemetry.ts';

// The agent's side of the spool: the folder (which entries are complete, which files are the
// remains of a killed writer) and one entry (its meta, the agent's delivery progress, its core,
// and its end: removed once delivered, or moved aside with the reason). The names themselves come
// from spool-entry.ts, shared with the handler.

export interface DeliveryState {
  event?: CrashEvent;
  stored?: boolean;
  /** The sinks that acknowledged the crash, by sink name. */
  announced: Record<string, true>;
}

/** Sinks whose acknowledgement agents before the sink seam kept as a field of their own. */
const LEGACY_SINK_FIELDS = ['otlp', 'kafka'];

/** Where a spooled core is and what it holds, as storage takes it. */
export interface SpooledCoreFile {
  path: string;
  compression: SpoolMeta['dump']['compression'];
}

export interface RejectReason {
  code: string;
  message: string;
}

const isMissing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

export class SpoolEntry {
  readonly crashId: string;
  private readonly dir: string;
  private readonly files: ReturnType<typeof spoolFiles>;

  constructor(spoolDir: string, crashId: string) {
    this.dir = spoolDir;
    this.crashId = crashId;
    this.files = spoolFiles(spoolDir, crashId);
  }

  /**
   * The meta, checked for the shape the agent relies on (the handler wrote it, but a spool is a
   * disk); undefined once the entry is gone. A malformed one throws PM_ERR_SPOOL_ENTRY_INVALID.
   */
  async readMeta(): Promise<SpoolMeta | undefined> {
    let text: string;
    try {
      text = await readFile(this.files.meta, 'utf8');
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
    return parseSpoolMeta(text, this.crashId);
  }

  /** What delivery did so far; nothing when it has not started or its record is unusable. */
  async readState(): Promise<DeliveryState> {
    let text: string;
    try {
      text = await readFile(this.files.state, 'utf8');
    } catch {
      return { announced: {} };
    }
    try {
      const saved = JSON.parse(text) as Partial<DeliveryState> & Record<string, unknown>;
      if (saved.event && !validateCrashEvent(saved.event).ok) return { announced: {} };
      const announced: Record<string, true> = { ...saved.announced };
      for (const name of LEGACY_SINK_FIELDS) if (saved[name] === true) announced[name] = true;
      const state: DeliveryState = { announced };
      if (saved.event) state.event = saved.event;
      if (saved.stored === true) state.stored = true;
      return state;
    } catch {
      // Cut short by a crash of the agent: start over (every step is idempotent).
      return { announced: {} };
    }
  }

  saveState(state: DeliveryState): Promise<void> {
    return writeJsonAtomically(this.files.state, state);
  }

  /**
   * The raw core as a stream (decompressed when the handler compressed it: the file is named
   * .core.zst either way, meta.dump.compression says what it holds). Destroying the returned
   * stream closes the file. Only for entries whose dump.storedBytes > 0.
   */
  openCore(meta: SpoolMeta): Readable {
    const file = createReadStream(this.files.core);
    if (meta.dump.compression === 'none') return file;
    // The callback only silences the pipeline: its errors reach the reader through the returned stream.
    return pipeline(file, createZstdDecompress(), () => undefined);
  }

  /** The spooled core for storage; undefined when it is not on disk. */
  async coreFile(meta: SpoolMeta): Promise<SpooledCoreFile | undefined> {
    try {
      await stat(this.files.core);
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
    return { path: this.files.core, compression: meta.dump.compression };
  }

  /** Moves the entry to rejected/ beside a file saying why: set aside, never deleted unseen. */
  async reject(reason: RejectReason): Promise<void> {
    const { rejected } = this.files;
    await makeDirDurably(this.files.rejectedDir);
    await writeJsonAtomically(rejected.reason, { ...reason, at: new Date().toISOString() });
    // The meta first: without it the rest is no entry, whatever happens next.
    for (const [from, to] of [
      [this.files.meta, rejected.meta],
      [this.files.state, rejected.state],
      [this.files.core, rejected.core],
    ] as const) {
      try {
        await rename(from, to);
      } catch (err) {
        if (!isMissing(err)) throw err;
      }
    }
    await fsyncDir(this.dir);
  }

  /**
   * Removes a delivered entry, the meta first and the agent state last: a kill mid-way leaves a
   * state without its meta, which marks the rest as delivered, and the next sweep removes it all.
   */
  async remove(): Promise<void> {
    await rm(this.files.meta, { force: true });
    await rm(this.files.core, { force: true });
    await rm(this.files.state, { force: true });
  }
}

export interface OrphanSweep {
  /** Files of a writer (handler or agent) this much younger may still be being written. */
  olderThanMs: number;
  /** Entries being delivered right now: their files are left alone. */
  busy: (crashId: string) => boolean;
}

export class Spool {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  entry(crashId: string): SpoolEntry {
    return new SpoolEntry(this.dir, crashId);
  }

  async create(): Promise<void> {
    await makeDirDurably(this.dir);
  }

  /** Complete entries, oldest crash first (crash ids sort by time). */
  async list(): Promise<string[]> {
    return [...completeEntries(await readdir(this.dir))].sort();
  }

  /** The crash whose entry a file of this name completes (for file events), if any. */
  completedBy(name: string): string | undefined {
    const file = parseSpoolFileName(name);
    return file?.kind === 'meta' && !file.temporary ? file.crashId : undefined;
  }

  /** Entries and bytes of crash files (not the handler's log or state, not rejected/). */
  async usage(): Promise<SpoolUsage> {
    let entries = 0;
    let bytes = 0;
    for (const name of await readdir(this.dir)) {
      const file = parseSpoolFileName(name);
      if (!file) continue;
      if (file.kind === 'meta' && !file.temporary) entries++;
      try {
        bytes += (await stat(join(this.dir, name))).size;
      } catch {
        // Delivered meanwhile.
      }
    }
    return { entries, bytes };
  }

  /**
   * Removes files of no complete entry; returns their names. Files of an entry whose agent state
   * outlived its meta are removed at once: the entry was delivered (the agent writes its state
   * before anything else, and removes it last). Anything else may still be being written by a
   * handler, until it is old.
   */
  async removeOrphans(sweep: OrphanSweep): Promise<string[]> {
    const names = await readdir(this.dir);
    const complete = completeEntries(names);
    const delivered = deliveredEntries(names, complete);
    const now = Date.now();
    const removed: string[] = [];
    for (const name of names) {
      const file = parseSpoolFileName(name);
      if (!file || complete.has(file.crashId) || sweep.busy(file.crashId)) continue;
      const path = join(this.dir, name);
      try {
        if (!delivered.has(file.crashId) && now - (await stat(path)).mtimeMs < sweep.olderThanMs) continue;
        await rm(path, { force: true });
        removed.push(name);
      } catch {
        // Gone meanwhile.
      }
    }
    return removed;
  }

  /**
   * Removes the agent's temporary files, left by an agent killed while writing them: called at
   * start, before this agent's first delivery writes any. Returns their names.
   */
  async removeAgentTemporaries(): Promise<string[]> {
    const removed: string[] = [];
    for (const name of await readdir(this.dir)) {
      if (!parseSpoolFileName(name)?.agentTemporary) continue;
      await rm(join(this.dir, name), { force: true });
      removed.push(name);
    }
    return removed;
  }
}

/** Entries with an agent state but no meta: delivered, their removal cut short. */
function deliveredEntries(names: string[], complete: Set<string>): Set<string> {
  const ids = new Set<string>();
  for (const name of names) {
    const file = parseSpoolFileName(name);
    if (file?.kind === 'state' && !file.temporary && !complete.has(file.crashId)) ids.add(file.crashId);
  }
  return ids;
}

function completeEntries(names: string[]): Set<string> {
  const ids = new Set<string>();
  for (const name of names) {
    const file = parseSpoolFileName(name);
    if (file?.kind === 'meta' && !file.temporary) ids.add(file.crashId);
  }
  return ids;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function parseSpoolMeta(text: string, crashId: string): SpoolMeta {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new AgentError('PM_ERR_SPOOL_ENTRY_INVALID', `meta of ${crashId} is not JSON: ${messageOf(err)}`);
  }
  const m = value as Record<keyof SpoolMeta, unknown> | null;
  const problems: string[] = [];
  if (typeof m !== 'object' || m === null || Array.isArray(m)) problems.push('not an object');
  else {
    if (m.version !== 1) problems.push(`version ${JSON.stringify(m.version)} is not 1`);
    if (m.crashId !== crashId)
      problems.push(`crashId ${JSON.stringify(m.crashId)} is not the file's ${crashId}`);
    if (typeof m.timestamp !== 'string' || Number.isNaN(Date.parse(m.timestamp)))
      problems.push('timestamp is not a date');
    if (typeof m.kernel !== 'object' || m.kernel === null) problems.push('kernel facts missing');
    const d = m.dump as Record<keyof SpoolMeta['dump'], unknown> | null;
    if (typeof d !== 'object' || d === null) problems.push('dump missing');
    else {
      if (typeof d.status !== 'string' || !['stored', 'skipped', 'truncated', 'failed'].includes(d.status))
        problems.push(`dump.status ${JSON.stringify(d.status)}`);
      if (typeof d.storedBytes !== 'number' || d.storedBytes < 0)
        problems.push('dump.storedBytes is not a size');
      if (typeof d.sizeBytes !== 'number' || d.sizeBytes < 0) problems.push('dump.sizeBytes is not a size');
    }
    if (m.coreHead !== undefined && (typeof m.coreHead !== 'string' || !BASE64.test(m.coreHead)))
      problems.push('coreHead is not base64');
    if (m.proc !== undefined) {
      const proc = m.proc as Record<string, unknown> | null;
      if (
        typeof proc !== 'object' ||
        proc === null ||
        typeof proc.cgroup !== 'string' ||
        !Array.isArray(proc.cmdline)
      )
        problems.push('proc is malformed');
    }
  }
  if (problems.length > 0) {
    throw new AgentError('PM_ERR_SPOOL_ENTRY_INVALID', `meta of ${crashId}: ${problems.join('; ')}`);
  }
  return value as SpoolMeta;
}
