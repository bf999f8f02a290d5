import { randomBytes } from 'node:crypto';
import { constants, copyFile, mkdir, open, readFile, rename, rm, stat, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { CrashEvent } from '@podmortem/contract';
import { crashDirSegments, dumpRelPath, eventRelPath } from '@podmortem/contract';
import { fsyncDir } from './spool-entry.ts';
import { AgentError } from './errors.ts';

// Keeps a crash on the storage root (the NFS volume): <ns>/<pod-uid>/<container>/<id>.core.zst,
// then <id>.json. Each is written under a temporary dot-name in its final folder, fsynced and
// renamed, so a reader sees a whole file or none; the event goes last, so a stored event means
// its dump is complete. Storing again is harmless: an event already there for the same crash and
// the same core is left alone.

export interface StorageWriterParams {
  root: string;
  /** Free bytes to leave on the volume; below them (counting the new dump) nothing is written. */
  minFreeBytes: number;
}

export type StoreOutcome = 'stored' | 'already-stored';

const FILE_MODE = 0o640;
const DIR_MODE = 0o750;

function isFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

export class StorageWriter {
  private readonly params: StorageWriterParams;

  constructor(params: StorageWriterParams) {
    this.params = params;
  }

  get root(): string {
    return this.params.root;
  }

  /** Stores the event and, when the dump was kept, the core at `coreFile` (the spool's .core.zst). */
  async store(event: CrashEvent, coreFile: string | undefined): Promise<StoreOutcome> {
    const id = event.crash.id;
    let dir: string, eventPath: string, dumpPath: string;
    try {
      dir = join(this.params.root, ...crashDirSegments(event));
      eventPath = join(this.params.root, eventRelPath(event));
      dumpPath = join(this.params.root, dumpRelPath(event));
    } catch (err) {
      throw new AgentError('PM_ERR_EVENT_INVALID', (err as Error).message, { cause: err });
    }
    try {
      if (await this.alreadyStored(event, eventPath, coreFile ? dumpPath : undefined))
        return 'already-stored';
      const coreBytes = coreFile ? (await stat(coreFile)).size : 0;
      await this.checkFreeSpace(coreBytes);
      await this.makeDir(dir);
      if (coreFile)
        await this.writeAtomically(dir, dumpPath, (tmp) => copyFile(coreFile, tmp, constants.COPYFILE_EXCL));
      const json = Buffer.from(JSON.stringify(event) + '\n');
      await this.writeAtomically(dir, eventPath, async (tmp) => {
        const file = await open(tmp, 'wx', FILE_MODE);
        try {
          await file.writeFile(json);
        } finally {
          await file.close();
        }
      });
      await fsyncDir(dir);
      return 'stored';
    } catch (err) {
      if (err instanceof AgentError) throw err;
      if (isFull(err))
        throw new AgentError('PM_ERR_STORAGE_FULL', `${this.params.root}: ${(err as Error).message}`, {
          cause: err,
        });
      throw new AgentError('PM_ERR_STORAGE', `crash ${id}: ${(err as Error).message}`, { cause: err });
    }
  }

  private async alreadyStored(
    event: CrashEvent,
    eventPath: string,
    dumpPath: string | undefined,
  ): Promise<boolean> {
    let stored: unknown;
    try {
      stored = JSON.parse(await readFile(eventPath, 'utf8'));
    } catch {
      // Absent, or not ours to trust (cut short by a full disk on a filesystem without rename
      // atomicity): write it again.
      return false;
    }
    const prior = stored as Partial<CrashEvent>;
    if (prior.crash?.id !== event.crash.id || prior.dump?.sha256 !== event.dump.sha256) return false;
    if (!dumpPath) return true;
    try {
      return (await stat(dumpPath)).size === event.dump.stored_bytes;
    } catch {
      return false;
    }
  }

  private async checkFreeSpace(needed: number): Promise<void> {
    if (this.params.minFreeBytes === 0) return;
    const fs = await statfs(this.params.root);
    const free = fs.bavail * fs.bsize;
    if (free - needed < this.params.minFreeBytes) {
      throw new AgentError(
        'PM_ERR_STORAGE_FULL',
        `${this.params.root} has ${free} bytes free, ${needed} needed and ${this.params.minFreeBytes} kept free`,
      );
    }
  }

  private async makeDir(dir: string): Promise<void> {
    const first = await mkdir(dir, { recursive: true, mode: DIR_MODE });
    if (first === undefined) return;
    // New folders are durable only once their parents are synced too.
    for (let d = dir; d.length >= first.length; d = dirname(d)) await fsyncDir(dirname(d));
  }

  private async writeAtomically(
    dir: string,
    finalPath: string,
    write: (tmp: string) => Promise<void>,
  ): Promise<void> {
    const tmp = join(dir, `.tmp-${randomBytes(6).toString('hex')}-${finalPath.slice(dir.length + 1)}`);
    try {
      await write(tmp);
      const file = await open(tmp, 'r+');
      try {
        await file.chmod(FILE_MODE);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(tmp, finalPath);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
}
