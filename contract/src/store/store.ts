import type { Readable } from 'node:stream';
import { isDnsLabel } from '../kubernetes-names.ts';
import { isDumpKey, keySegments } from '../storage-layout.ts';

// Where crash dumps and events are kept, by key: the '/'-separated relative paths of
// storage-layout.ts, which alone knows what the keys look like. The collector writes through
// this interface and the query API reads through it, so a second backend is one new
// implementation rather than changes to both services.

/** What a store knows of one object. */
export interface StoredObject {
  key: string;
  size: number;
  mtime: Date;
  /** Opaque; changes whenever the object's content may have. */
  etag: string;
}

/** Bytes start..end, both inclusive; to the end of the object when `end` is absent. */
export interface ByteRange {
  start: number;
  end?: number;
}

/** An object being read: its facts as opened (not as listed earlier) and its bytes. */
export interface ObjectRead extends StoredObject {
  /** The requested range only. The reader consumes or destroys it. */
  body: Readable;
}

export interface Store {
  /** Where the objects are (a path, a bucket), for messages. */
  readonly location: string;
  /** Stores the stream under `key`: readers see the whole object or none, never part of it. */
  put(key: string, body: AsyncIterable<Uint8Array>): Promise<StoredObject>;
  /** put() for content already in memory (events). */
  putBytes(key: string, data: Uint8Array): Promise<StoredObject>;
  get(key: string, range?: ByteRange): Promise<ObjectRead>;
  stat(key: string): Promise<StoredObject>;
  /** Every object under `folder` (whole segments: 'ns/pod-uid'), by key; none when it is absent. */
  list(folder: string): Promise<StoredObject[]>;
  /**
   * The namespace folders at the top of the store, sorted: the first segments that are Kubernetes
   * namespace names (so neither _host, _buildid nor a foreign name), whether or not the namespace
   * still exists, so that retention finds the crashes of one deleted while it was not running.
   * Every namespace holding an object is listed; a folder emptied on the filesystem may be too.
   */
  namespaces(): Promise<string[]>;
  /** Removes the object; one already gone is no error. */
  delete(key: string): Promise<void>;
  /** Bytes of dumps the namespace holds. */
  usage(namespace: string): Promise<number>;
  /** Bytes that can still be stored, or undefined when the backend sets no such bound. */
  freeBytes(): Promise<number | undefined>;
  /** The store is there and can be read. */
  ready(): Promise<boolean>;
}

export type StoreErrorCode =
  /** No object under the key. */
  | 'PM_ERR_STORE_NOT_FOUND'
  /** Something is there but it is not a plain object of this store (a folder, a link elsewhere). */
  | 'PM_ERR_STORE_NOT_A_FILE'
  /** The key is not made of the layout's safe segments. */
  | 'PM_ERR_STORE_BAD_KEY'
  /** The backend has no room (or quota) for the object. */
  | 'PM_ERR_STORE_FULL'
  /** The backend cannot be reached or does not answer in time (down, overloaded): may pass. */
  | 'PM_ERR_STORE_UNAVAILABLE'
  /** The backend refuses the request itself (no such bucket, credentials or rights refused). */
  | 'PM_ERR_STORE_REFUSED';

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  readonly key: string;
  constructor(code: StoreErrorCode, key: string, why: string, cause?: unknown) {
    super(`${key}: ${why}`, cause === undefined ? undefined : { cause });
    this.name = 'StoreError';
    this.code = code;
    this.key = key;
  }
}

export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}

/** The segments of a key or folder; a StoreError for anything but the layout's safe segments. */
export function checkedSegments(key: string): string[] {
  const checked = keySegments(key);
  if ('refused' in checked) throw new StoreError('PM_ERR_STORE_BAD_KEY', key, checked.refused);
  return checked.segments;
}

/** The whole object, or undefined when it is larger than `maxBytes` (its bytes are not read then). */
export async function readBytes(store: Store, key: string, maxBytes = Infinity): Promise<Buffer | undefined> {
  const read = await store.get(key);
  if (read.size > maxBytes) {
    read.body.destroy();
    return undefined;
  }
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of read.body as AsyncIterable<Buffer>) {
    length += chunk.length;
    // Grown since it was opened: still bounded.
    if (length > maxBytes) {
      read.body.destroy();
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** A top-level name that namespaces() lists: a namespace's name, which is always a safe segment. */
export function isNamespaceFolder(name: string): boolean {
  return isDnsLabel(name);
}

/** Bytes of the dumps among `objects`: what usage() counts. */
export function dumpBytes(objects: StoredObject[]): number {
  return objects.reduce((sum, o) => sum + (isDumpKey(o.key) ? o.size : 0), 0);
}
