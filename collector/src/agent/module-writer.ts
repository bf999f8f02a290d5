import { createReadStream } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import type { CrashEvent } from '@podmortem/contract';
import { moduleKey } from '@podmortem/contract';
import { writeFileAtomically } from '@podmortem/contract/runtime';
import { isStoreError, type Store } from '@podmortem/contract/store';
import { AgentError } from './errors.ts';
import { moduleCacheDir, moduleCacheFiles, type SpoolMeta } from '../spool-entry.ts';
import type { Telemetry } from './telemetry.ts';

// Keeps each module the handler captured (spool-entry.ts: the node's build-id cache) once in the
// store, at _buildid/<build-id>/executable: a module already there — from another crash, pod or
// node — is not written again (stat first; put is atomic, so two agents storing the same build id
// at once both leave the same whole file). Once a module is in the store its bytes leave the node
// cache and an empty <build-id>.stored marker stays, so later crashes on this node copy nothing.
// Then marks each module of the event captured (in the store) or why not.

type Modules = NonNullable<NonNullable<CrashEvent['analysis']>['modules']>;

/** Build ids known to be in the store, so a crash loop does not stat them every time. */
const MAX_KNOWN = 10_000;

export interface ModuleWriterParams {
  store: Store;
  /** The store's free-space floor (as the storage writer's): no module goes below it. */
  minFreeBytes: number;
  spoolDir: string;
  telemetry: Pick<Telemetry, 'modulesStored' | 'modulesSkipped'>;
}

export class ModuleWriter {
  private readonly p: ModuleWriterParams;
  private readonly known = new Set<string>();

  constructor(params: ModuleWriterParams) {
    this.p = params;
  }

  /** Stores the crash's captured modules; returns the draft with each module's `captured` set. */
  async storeModules(meta: SpoolMeta, draft: CrashEvent): Promise<CrashEvent> {
    const modules = draft.analysis?.modules;
    if (!meta.modules || !modules) return draft;
    const inStore = new Set<string>();
    const noRoom = new Set<string>();
    // The crash's own dump comes after the modules and matters more: its room is kept.
    const reserve = this.p.minFreeBytes + meta.dump.storedBytes;
    for (const id of new Set(meta.modules.flatMap((m) => (m.buildId ? [m.buildId] : [])))) {
      const outcome = await this.store(id, reserve);
      if (outcome === 'stored') inStore.add(id);
      else if (outcome === 'no-room') noRoom.add(id);
    }
    for (const m of meta.modules)
      if (m.capture === 'skipped' && m.skipped) this.p.telemetry.modulesSkipped.inc({ reason: m.skipped });
    const marked: Modules = modules.map((m) => {
      if (m.build_id === undefined) return m;
      if (inStore.has(m.build_id)) {
        // Stored from another crash's capture: whatever kept this handler from copying is moot.
        const stored: Modules[number] = { ...m, captured: true };
        delete stored.skipped;
        delete stored.skip_reason;
        return stored;
      }
      if (noRoom.has(m.build_id)) {
        this.p.telemetry.modulesSkipped.inc({ reason: 'store-full' });
        return {
          ...m,
          captured: false,
          skipped: 'store-full' as const,
          skip_reason: `no room in ${this.p.store.location} beside the dump (kept in the node cache for a later crash)`,
        };
      }
      return m.skipped
        ? { ...m, captured: false }
        : {
            ...m,
            captured: false,
            skipped: 'not-captured' as const,
            skip_reason: 'not in the node cache when the agent came to store it',
          };
    });
    return { ...draft, analysis: { ...draft.analysis, modules: marked } };
  }

  /** Whether the module is in the store now (put there from the node cache if need be). */
  private async store(buildId: string, reserve: number): Promise<'stored' | 'absent' | 'no-room'> {
    const key = moduleKey(buildId);
    const files = moduleCacheFiles(this.p.spoolDir, buildId);
    try {
      if (this.known.has(buildId)) return 'stored';
      let present = true;
      try {
        await this.p.store.stat(key);
      } catch (err) {
        if (!isStoreError(err, 'PM_ERR_STORE_NOT_FOUND')) throw err;
        present = false;
      }
      if (!present) {
        const cached = await stat(files.bytes).then(
          () => true,
          () => false,
        );
        if (!cached) return 'absent';
        const size = (await stat(files.bytes)).size;
        const free = await this.p.store.freeBytes();
        if (free !== undefined && free - size < reserve) return 'no-room';
        try {
          await this.p.store.put(key, createReadStream(files.bytes));
        } catch (err) {
          if (isStoreError(err, 'PM_ERR_STORE_FULL')) return 'no-room';
          throw err;
        }
        this.p.telemetry.modulesStored.inc();
      }
      await this.markStored(files);
      if (this.known.size >= MAX_KNOWN) this.known.clear();
      this.known.add(buildId);
      return 'stored';
    } catch (err) {
      if (isStoreError(err, 'PM_ERR_STORE_FULL'))
        throw new AgentError('PM_ERR_STORAGE_FULL', `${this.p.store.location}: ${(err as Error).message}`, {
          cause: err,
        });
      throw new AgentError('PM_ERR_STORAGE', `module ${key}: ${(err as Error).message}`, { cause: err });
    }
  }

  private async markStored(files: ReturnType<typeof moduleCacheFiles>): Promise<void> {
    const marked = await stat(files.stored).then(
      () => true,
      () => false,
    );
    if (!marked) await mkdir(moduleCacheDir(this.p.spoolDir), { recursive: true, mode: 0o700 });
    // A lost marker costs one more copy of the module, never a wrong answer: no fsync.
    if (!marked) await writeFileAtomically(files.stored, '', { durability: 'process-crash' });
    await rm(files.bytes, { force: true });
  }
}
