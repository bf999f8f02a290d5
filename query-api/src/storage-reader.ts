import { podCrashFileOf, podFolder } from '@podmortem/contract';
import {
  isStoreError,
  readBytes,
  type ByteRange,
  type ObjectRead,
  type Store,
  type StoredObject,
  type StoreError,
} from '@podmortem/contract/store';
import { PodmortemError, registryOptions } from '@podmortem/contract/runtime';
import { API_ERRORS } from './errors.ts';

// The collector's store as the routes read it: files by their layout key (storage-layout.ts),
// the crash files of one pod, and readiness. The store refuses keys that are not plain safe
// segments and anything that is not a plain object of its own (a folder, a symlink leading out
// of the root); those refusals are 'unsafe' here, an absent object is 'missing'.

export type StorageProblem = 'missing' | 'unsafe';

export class StorageError extends PodmortemError {
  readonly problem: StorageProblem;
  readonly relPath: string;
  constructor(problem: StorageProblem, relPath: string, why: string, cause?: unknown) {
    const code = problem === 'missing' ? 'PM_ERR_STORAGE_MISSING' : 'PM_ERR_STORAGE_UNSAFE';
    super(code, `${relPath}: ${why}`, registryOptions(API_ERRORS[code], cause));
    this.name = 'StorageError';
    this.problem = problem;
    this.relPath = relPath;
  }
}

export interface PodFile {
  container: string;
  crashId: string;
  /** Relative paths, present when the file exists. */
  dump?: { relPath: string; size: number };
  event?: { relPath: string; size: number };
}

/** The store will not read this key: not of the layout, or not a plain object of the store. */
function isRefusal(err: unknown): err is StoreError {
  return isStoreError(err, 'PM_ERR_STORE_NOT_A_FILE') || isStoreError(err, 'PM_ERR_STORE_BAD_KEY');
}

/** The store's refusals as this reader's problems; anything else (the backend failing) as it is. */
function asStorageError(err: unknown, relPath: string): unknown {
  if (isStoreError(err, 'PM_ERR_STORE_NOT_FOUND'))
    return new StorageError('missing', relPath, 'not found', err);
  if (isRefusal(err)) return new StorageError('unsafe', relPath, err.message, err);
  return err;
}

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

async function refused<T>(relPath: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw asStorageError(err, relPath);
  }
}

export class StorageReader {
  private readonly store: Store;

  constructor(params: { store: Store }) {
    this.store = params.store;
  }

  stat(relPath: string): Promise<StoredObject> {
    return refused(relPath, () => this.store.stat(relPath));
  }

  /** The file's bytes (the range only, when given) with its facts as opened. */
  read(relPath: string, range?: ByteRange): Promise<ObjectRead> {
    return refused(relPath, () => this.store.get(relPath, range));
  }

  /** The whole file, or undefined when it is larger than maxBytes. */
  readSmall(relPath: string, maxBytes: number): Promise<Buffer | undefined> {
    return refused(relPath, () => readBytes(this.store, relPath, maxBytes));
  }

  /**
   * The crash files of one pod incarnation (and one container, when given), read from the
   * layout itself so that dumps of pods the index no longer knows are found too.
   */
  async listPod(namespace: string, podUid: string, container?: string): Promise<PodFile[]> {
    let objects: StoredObject[];
    try {
      objects = await this.store.list(podFolder(namespace, podUid, container));
    } catch (err) {
      // Not a folder of this store (a symlink leading out of the root): no files of this pod here.
      if (isRefusal(err)) return [];
      throw err;
    }
    const byCrash = new Map<string, PodFile>();
    for (const o of objects) {
      const file = podCrashFileOf(o.key);
      if (!file) continue;
      const id = `${file.container}/${file.crashId}`;
      const entry = byCrash.get(id) ?? { container: file.container, crashId: file.crashId };
      entry[file.kind] = { relPath: o.key, size: o.size };
      byCrash.set(id, entry);
    }
    return [...byCrash.values()].sort(
      (a, b) => compare(a.container, b.container) || compare(a.crashId, b.crashId),
    );
  }

  /** The store is there and readable. */
  ready(): Promise<boolean> {
    return this.store.ready();
  }
}
