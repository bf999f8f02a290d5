import { constants } from 'node:fs';
import { open, readdir, realpath, stat, type FileHandle } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { DUMP_SUFFIX, EVENT_SUFFIX, isCrashId, isSafeSegment } from '@podmortem/contract';

// Reads the storage root the collector writes (DESIGN §3: <namespace>/<pod-uid>/<container>/
// <crash-id>.core.zst + .json). Every path is checked segment by segment, resolved with
// realpath, and must stay under the root's own real path, so neither `..`, an absolute path nor
// a symlink planted inside the root can make the API read anything else.

export type StorageProblem = 'missing' | 'unsafe';

export class StorageError extends Error {
  readonly problem: StorageProblem;
  readonly relPath: string;
  constructor(problem: StorageProblem, relPath: string, why: string, cause?: unknown) {
    super(`${relPath}: ${why}`, cause === undefined ? undefined : { cause });
    this.name = 'StorageError';
    this.problem = problem;
    this.relPath = relPath;
  }
}

export interface OpenedFile {
  handle: FileHandle;
  size: number;
  mtime: Date;
}

export interface PodFile {
  container: string;
  crashId: string;
  /** Relative paths, present when the file exists. */
  dump?: { relPath: string; size: number };
  event?: { relPath: string; size: number };
}

const MAX_SEGMENTS = 8;

function code(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err ? String(err.code) : undefined;
}

export class StorageReader {
  readonly root: string;
  private realRoot: string | undefined;

  constructor(params: { root: string }) {
    this.root = params.root;
  }

  /** Splits and checks a relative path; throws 'unsafe' for anything that is not plain segments. */
  static segmentsOf(relPath: string): string[] {
    if (relPath.length === 0 || relPath.length > 1024)
      throw new StorageError('unsafe', relPath, 'path length out of bounds');
    const segments = relPath.split('/');
    if (segments.length > MAX_SEGMENTS) throw new StorageError('unsafe', relPath, 'too many segments');
    for (const s of segments) {
      if (!isSafeSegment(s)) throw new StorageError('unsafe', relPath, `unsafe segment ${JSON.stringify(s)}`);
    }
    return segments;
  }

  private async root_(): Promise<string> {
    this.realRoot ??= await realpath(this.root);
    return this.realRoot;
  }

  /** The real absolute path of relPath, checked to lie under the root. */
  async resolve(relPath: string): Promise<string> {
    const segments = StorageReader.segmentsOf(relPath);
    const root = await this.root_();
    let real: string;
    try {
      real = await realpath(join(root, ...segments));
    } catch (err) {
      if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR')
        throw new StorageError('missing', relPath, 'not found', err);
      if (code(err) === 'ELOOP') throw new StorageError('unsafe', relPath, 'symlink loop', err);
      throw err;
    }
    if (!real.startsWith(root + sep))
      throw new StorageError('unsafe', relPath, 'resolves outside the storage root');
    return real;
  }

  /** Opens a regular file under the root for reading. The caller closes the handle. */
  async open(relPath: string): Promise<OpenedFile> {
    const real = await this.resolve(relPath);
    let handle: FileHandle;
    try {
      // O_NOFOLLOW: a file swapped for a symlink after the realpath check is refused, not followed.
      handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if (code(err) === 'ENOENT') throw new StorageError('missing', relPath, 'not found', err);
      if (code(err) === 'ELOOP') throw new StorageError('unsafe', relPath, 'became a symlink', err);
      throw err;
    }
    const st = await handle.stat();
    if (!st.isFile()) {
      await handle.close();
      throw new StorageError('unsafe', relPath, 'not a regular file');
    }
    return { handle, size: st.size, mtime: st.mtime };
  }

  /**
   * The crash files of one pod incarnation (and one container, when given), read from the
   * directory layout itself so that dumps of pods the index no longer knows are found too.
   */
  async listPod(namespace: string, podUid: string, container?: string): Promise<PodFile[]> {
    const podRel = `${namespace}/${podUid}`;
    let containers: string[];
    if (container !== undefined) containers = [container];
    else {
      try {
        const podDir = await this.resolve(podRel);
        containers = (await readdir(podDir, { withFileTypes: true }))
          .filter((d) => d.isDirectory() && isSafeSegment(d.name))
          .map((d) => d.name);
      } catch (err) {
        // Missing, or a symlink leading out of the root: no files of this pod here.
        if (err instanceof StorageError) return [];
        throw err;
      }
    }
    const files: PodFile[] = [];
    for (const c of containers.sort()) {
      const dirRel = `${podRel}/${c}`;
      let names: string[];
      try {
        names = await readdir(await this.resolve(dirRel));
      } catch (err) {
        if (err instanceof StorageError) continue;
        throw err;
      }
      const byId = new Map<string, PodFile>();
      for (const name of names) {
        const suffix = name.endsWith(DUMP_SUFFIX)
          ? DUMP_SUFFIX
          : name.endsWith(EVENT_SUFFIX)
            ? EVENT_SUFFIX
            : '';
        if (suffix === '') continue;
        const crashId = name.slice(0, -suffix.length);
        // Temporary names of files still being written and anything foreign are not crashes.
        if (!isCrashId(crashId)) continue;
        const relPath = `${dirRel}/${name}`;
        let size: number;
        try {
          const st = await stat(await this.resolve(relPath));
          if (!st.isFile()) continue;
          size = st.size;
        } catch (err) {
          if (err instanceof StorageError) continue;
          throw err;
        }
        const entry = byId.get(crashId) ?? { container: c, crashId };
        if (suffix === DUMP_SUFFIX) entry.dump = { relPath, size };
        else entry.event = { relPath, size };
        byId.set(crashId, entry);
      }
      files.push(...[...byId.values()].sort((a, b) => (a.crashId < b.crashId ? -1 : 1)));
    }
    return files;
  }

  /** The storage root is there and readable. */
  async ready(): Promise<boolean> {
    try {
      return (await stat(await this.root_())).isDirectory();
    } catch {
      return false;
    }
  }
}
