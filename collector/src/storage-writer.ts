import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { constants, copyFile, mkdir, open, readFile, rename, rm, stat, statfs } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createZstdCompress } from 'node:zlib';
import { dirname, join } from 'node:path';
import type { CrashEvent } from '@podmortem/contract';
import { crashDirSegments, dumpRelPath, eventRelPath, validateCrashEvent } from '@podmortem/contract';
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

export interface SpooledCore {
  path: string;
  /** What the spool file holds; the stored dump is always zstd, as its name says. */
  compression: 'zstd' | 'none';
}

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

  /**
   * Stores the crash: its core (when one was kept) and then its event, completed with where and
   * how the core is stored. Returns that event — the one already stored, if this crash was.
   */
  async store(draft: CrashEvent, core: SpooledCore | undefined): Promise<CrashEvent> {
    let dir: string, eventPath: string, dumpRel: string;
    try {
      dir = join(this.params.root, ...crashDirSegments(draft));
      eventPath = join(this.params.root, eventRelPath(draft));
      dumpRel = dumpRelPath(draft);
    } catch (err) {
      throw new AgentError('PM_ERR_EVENT_INVALID', (err as Error).message, { cause: err });
    }
    const dumpPath = join(this.params.root, dumpRel);
    try {
      const prior = await this.alreadyStored(draft, eventPath, core ? dumpPath : undefined);
      if (prior) return prior;
      await this.checkFreeSpace(core ? (await stat(core.path)).size : 0);
      await this.makeDir(dir);
      let event = draft;
      if (core) {
        await this.writeAtomically(dir, dumpPath, (tmp) =>
          core.compression === 'zstd'
            ? copyFile(core.path, tmp, constants.COPYFILE_EXCL)
            : pipeline(
                createReadStream(core.path),
                createZstdCompress(),
                createWriteStream(tmp, { flags: 'wx', mode: FILE_MODE }),
              ),
        );
        const storedBytes = (await stat(dumpPath)).size;
        event = {
          ...draft,
          dump: { ...draft.dump, path: dumpRel, stored_bytes: storedBytes, compression: 'zstd' },
        };
      }
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
      return event;
    } catch (err) {
      if (err instanceof AgentError) throw err;
      if (isFull(err))
        throw new AgentError('PM_ERR_STORAGE_FULL', `${this.params.root}: ${(err as Error).message}`, {
          cause: err,
        });
      throw new AgentError('PM_ERR_STORAGE', `crash ${draft.crash.id}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  private async alreadyStored(
    draft: CrashEvent,
    eventPath: string,
    dumpPath: string | undefined,
  ): Promise<CrashEvent | undefined> {
    let stored: unknown;
    try {
      stored = JSON.parse(await readFile(eventPath, 'utf8'));
    } catch {
      // Absent, or unreadable: written again.
      return undefined;
    }
    const checked = validateCrashEvent(stored);
    if (!checked.ok) return undefined;
    const prior = checked.value;
    if (prior.crash.id !== draft.crash.id || prior.dump.sha256 !== draft.dump.sha256) return undefined;
    if (!dumpPath) return prior;
    try {
      return (await stat(dumpPath)).size === prior.dump.stored_bytes ? prior : undefined;
    } catch {
      return undefined;
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
