import { constants, createWriteStream, type Dirent, type Stats } from 'node:fs';
import { lstat, open, readdir, realpath, stat, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { makeDirDurably, writeFileAtomically, writeStreamAtomically } from '../runtime/durable-write.ts';
import { keySegments } from '../storage-layout.ts';
import {
  checkedSegments,
  dumpBytes,
  isNamespaceFolder,
  isStoreError,
  StoreError,
  type ByteRange,
  type ObjectRead,
  type Store,
  type StoredObject,
} from './store.ts';

// The store on a folder (the NFS volume the collectors share): a key is a path under the root.
// Objects are published by durable-write (temporary name, fsync, rename, fsync of the folder),
// so a reader sees a whole file or none. No symlink below the root is ever followed: a key's
// path, resolved with realpath, must be exactly the root's real path joined with the key's
// segments, so a link planted anywhere (to another pod of the same namespace, to another
// namespace, out of the root) is refused rather than read, and a key always names the file of its
// own namespace's subtree. Only regular files are read, opened with O_NOFOLLOW and O_NONBLOCK and
// checked with fstat before the first read, so a FIFO is refused at once instead of holding a
// thread of the file pool. Temporary and foreign names are not keys (they are not safe segments),
// so they are never listed.

/** Dumps hold secrets: readable by the owner's group (the query API), by no one else. */
const FILE_MODE = 0o640;
const DIR_MODE = 0o750;
/** Dumps are large: 1 MiB reads rather than the default 64 KiB mean fewer reads and chunks. */
const READ_CHUNK = 1 << 20;

function codeOf(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err ? String(err.code) : undefined;
}

function factsOf(key: string, st: Stats): StoredObject {
  return {
    key,
    size: st.size,
    mtime: st.mtime,
    etag: `${st.size.toString(16)}-${st.mtime.getTime().toString(16)}`,
  };
}

async function lstatOrGone(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if (codeOf(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Runs a write; a volume out of space or quota becomes the store's own error. */
async function orFull<T>(key: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    const code = codeOf(err);
    if (code === 'ENOSPC' || code === 'EDQUOT')
      throw new StoreError('PM_ERR_STORE_FULL', key, (err as Error).message, err);
    throw err;
  }
}

export class FsStore implements Store {
  readonly location: string;
  private realRoot: string | undefined;
  /** The root was made (or found) by a write: later writes need no mkdir of it. */
  private rootMade = false;

  constructor(params: { root: string }) {
    this.location = params.root;
  }

  async put(key: string, body: AsyncIterable<Uint8Array>): Promise<StoredObject> {
    const path = await orFull(key, async () => {
      const target = await this.writablePath(key);
      await writeStreamAtomically(
        target,
        (tmp) => pipeline(body, createWriteStream(tmp, { flags: 'wx', mode: FILE_MODE })),
        { mode: FILE_MODE },
      );
      return target;
    });
    return factsOf(key, await stat(path));
  }

  async putBytes(key: string, data: Uint8Array): Promise<StoredObject> {
    const path = await orFull(key, async () => {
      const target = await this.writablePath(key);
      await writeFileAtomically(target, data, { mode: FILE_MODE });
      return target;
    });
    return factsOf(key, await stat(path));
  }

  async get(key: string, range?: ByteRange): Promise<ObjectRead> {
    const real = await this.resolve(key);
    let handle: FileHandle;
    try {
      // O_NOFOLLOW: a file swapped for a symlink after the realpath check is refused, not
      // followed; O_NONBLOCK: a FIFO is refused below rather than waited on here.
      handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      if (codeOf(err) === 'ENOENT') throw new StoreError('PM_ERR_STORE_NOT_FOUND', key, 'not found', err);
      if (codeOf(err) === 'ELOOP')
        throw new StoreError('PM_ERR_STORE_NOT_A_FILE', key, 'became a symlink', err);
      throw err;
    }
    let st: Stats;
    try {
      st = await handle.stat();
      if (!st.isFile()) throw new StoreError('PM_ERR_STORE_NOT_A_FILE', key, 'not a regular file');
    } catch (err) {
      await handle.close();
      throw err;
    }
    const body = handle.createReadStream({
      highWaterMark: READ_CHUNK,
      start: range?.start ?? 0,
      ...(range?.end === undefined ? {} : { end: range.end }),
    });
    return { ...factsOf(key, st), body };
  }

  async stat(key: string): Promise<StoredObject> {
    const real = await this.resolve(key);
    let st: Stats;
    try {
      st = await stat(real);
    } catch (err) {
      if (codeOf(err) === 'ENOENT') throw new StoreError('PM_ERR_STORE_NOT_FOUND', key, 'not found', err);
      throw err;
    }
    if (!st.isFile()) throw new StoreError('PM_ERR_STORE_NOT_A_FILE', key, 'not a regular file');
    return factsOf(key, st);
  }

  async list(folder: string): Promise<StoredObject[]> {
    let dir: string;
    try {
      dir = await this.resolve(folder);
    } catch (err) {
      if (isStoreError(err, 'PM_ERR_STORE_NOT_FOUND')) return [];
      throw err;
    }
    if (!(await stat(dir)).isDirectory())
      throw new StoreError('PM_ERR_STORE_NOT_A_FILE', folder, 'not a folder');
    const found: StoredObject[] = [];
    await this.walk(folder, dir, found);
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async namespaces(): Promise<string[]> {
    let entries: Dirent[];
    try {
      entries = await readdir(await this.rootReal(), { withFileTypes: true });
    } catch (err) {
      // No root yet: nothing was ever written.
      if (codeOf(err) === 'ENOENT') return [];
      throw err;
    }
    // Dirent types are the entries' own (not followed): a symlink to a folder is no folder here,
    // as list() would refuse to walk through it anyway.
    return entries
      .filter((e) => e.isDirectory() && isNamespaceFolder(e.name))
      .map((e) => e.name)
      .sort();
  }

  async delete(key: string): Promise<void> {
    const segments = checkedSegments(key);
    const name = segments.pop() ?? '';
    const dir = segments.length === 0 ? await this.rootReal() : await this.folderOrGone(segments.join('/'));
    if (dir === undefined) return;
    try {
      // The parent is resolved and confined; the name itself is removed, never followed.
      await unlink(join(dir, name));
    } catch (err) {
      const code = codeOf(err);
      if (code === 'ENOENT') return;
      if (code === 'EISDIR' || code === 'EPERM')
        throw new StoreError('PM_ERR_STORE_NOT_A_FILE', key, 'not a regular file', err);
      throw err;
    }
  }

  async usage(namespace: string): Promise<number> {
    return dumpBytes(await this.list(namespace));
  }

  async freeBytes(): Promise<number> {
    const fs = await statfs(this.location);
    return fs.bavail * fs.bsize;
  }

  async ready(): Promise<boolean> {
    try {
      return (await stat(await this.rootReal())).isDirectory();
    } catch {
      return false;
    }
  }

  private async rootReal(): Promise<string> {
    this.realRoot ??= await realpath(this.location);
    return this.realRoot;
  }

  /** The real absolute path of a key or folder, checked to be reached through no symlink. */
  private async resolve(key: string): Promise<string> {
    const segments = checkedSegments(key);
    const root = await this.rootReal();
    let real: string;
    try {
      real = await realpath(join(root, ...segments));
    } catch (err) {
      const code = codeOf(err);
      if (code === 'ENOENT' || code === 'ENOTDIR')
        throw new StoreError('PM_ERR_STORE_NOT_FOUND', key, 'not found', err);
      if (code === 'ELOOP') throw new StoreError('PM_ERR_STORE_NOT_A_FILE', key, 'symlink loop', err);
      throw err;
    }
    // Anything else means a symlink on the way: refused wherever it leads, even inside the root.
    if (real !== join(root, ...segments))
      throw new StoreError('PM_ERR_STORE_NOT_A_FILE', key, 'passes through a symlink');
    return real;
  }

  private async folderOrGone(folder: string): Promise<string | undefined> {
    try {
      return await this.resolve(folder);
    } catch (err) {
      if (isStoreError(err, 'PM_ERR_STORE_NOT_FOUND')) return undefined;
      throw err;
    }
  }

  /**
   * Where a new object goes: its folders made (durably) one at a time below the root, each one
   * that exists checked to be a real folder before anything is made inside it, so a write through
   * a planted link is refused before it creates a folder where the link leads.
   */
  private async writablePath(key: string): Promise<string> {
    const segments = checkedSegments(key);
    const name = segments.pop() ?? '';
    if (!this.rootMade) {
      await makeDirDurably(this.location, DIR_MODE);
      this.rootMade = true;
    }
    let dir = await this.rootReal();
    for (const segment of segments) {
      const next = join(dir, segment);
      let st = await lstatOrGone(next);
      if (st === undefined) {
        await makeDirDurably(next, DIR_MODE);
        // Checked after the mkdir too: a link put there meanwhile is found, not written through.
        st = await lstatOrGone(next);
      }
      if (!st?.isDirectory())
        throw new StoreError('PM_ERR_STORE_NOT_A_FILE', key, 'passes through a symlink or a file');
      dir = next;
    }
    return join(dir, name);
  }

  /** Regular files below `dir`, through real folders only; symlinks are not listed. */
  private async walk(folder: string, dir: string, found: StoredObject[]): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      // Removed meanwhile (retention): nothing there any more.
      if (codeOf(err) === 'ENOENT' || codeOf(err) === 'ENOTDIR') return;
      throw err;
    }
    for (const e of entries) {
      const key = `${folder}/${e.name}`;
      if ('refused' in keySegments(key)) continue;
      if (e.isDirectory()) await this.walk(key, join(dir, e.name), found);
      else if (e.isFile()) {
        const st = await lstat(join(dir, e.name)).catch(() => undefined);
        if (st?.isFile()) found.push(factsOf(key, st));
      }
    }
  }
}
