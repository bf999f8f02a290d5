import { Readable } from 'node:stream';
import {
  checkedSegments,
  dumpBytes,
  isNamespaceFolder,
  StoreError,
  type ByteRange,
  type ObjectRead,
  type Store,
  type StoredObject,
} from './store.ts';

// The store in a Map, for the unit tests of its callers: the same keys, errors and atomicity as
// the filesystem store (an object appears once its whole stream has been read), with an
// optional capacity so that a full backend can be played too.

interface Entry {
  data: Buffer;
  mtime: Date;
  etag: string;
}

export class MemoryStore implements Store {
  readonly location = 'memory';
  private readonly objects = new Map<string, Entry>();
  private readonly capacityBytes: number | undefined;
  private version = 0;

  constructor(params: { capacityBytes?: number } = {}) {
    this.capacityBytes = params.capacityBytes;
  }

  async put(key: string, body: AsyncIterable<Uint8Array>): Promise<StoredObject> {
    checkedSegments(key);
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(Buffer.from(chunk));
    return this.save(key, Buffer.concat(chunks));
  }

  putBytes(key: string, data: Uint8Array): Promise<StoredObject> {
    return settled(() => {
      checkedSegments(key);
      return this.save(key, data);
    });
  }

  private save(key: string, data: Uint8Array): StoredObject {
    const replaced = this.objects.get(key)?.data.length ?? 0;
    if (this.capacityBytes !== undefined && this.used() - replaced + data.length > this.capacityBytes)
      throw new StoreError('PM_ERR_STORE_FULL', key, `no room for ${data.length} bytes`);
    this.version += 1;
    const entry = { data: Buffer.from(data), mtime: new Date(), etag: `m${this.version.toString(16)}` };
    this.objects.set(key, entry);
    return factsOf(key, entry);
  }

  get(key: string, range?: ByteRange): Promise<ObjectRead> {
    return settled(() => {
      const entry = this.entry(key);
      const start = range?.start ?? 0;
      const end = range?.end === undefined ? entry.data.length : range.end + 1;
      return { ...factsOf(key, entry), body: Readable.from([entry.data.subarray(start, end)]) };
    });
  }

  stat(key: string): Promise<StoredObject> {
    return settled(() => factsOf(key, this.entry(key)));
  }

  list(folder: string): Promise<StoredObject[]> {
    return settled(() => {
      checkedSegments(folder);
      if (this.objects.has(folder)) throw new StoreError('PM_ERR_STORE_NOT_A_FILE', folder, 'not a folder');
      return [...this.objects]
        .filter(([key]) => key.startsWith(`${folder}/`))
        .map(([key, entry]) => factsOf(key, entry))
        .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    });
  }

  namespaces(): Promise<string[]> {
    return settled(() => {
      const firsts = [...this.objects.keys()].flatMap((key) => {
        const [first, ...rest] = key.split('/');
        return first !== undefined && rest.length > 0 && isNamespaceFolder(first) ? [first] : [];
      });
      return [...new Set(firsts)].sort();
    });
  }

  delete(key: string): Promise<void> {
    return settled(() => {
      checkedSegments(key);
      if (this.isFolder(key)) throw new StoreError('PM_ERR_STORE_NOT_A_FILE', key, 'not a regular file');
      this.objects.delete(key);
    });
  }

  async usage(namespace: string): Promise<number> {
    return dumpBytes(await this.list(namespace));
  }

  freeBytes(): Promise<number | undefined> {
    return settled(() => (this.capacityBytes === undefined ? undefined : this.capacityBytes - this.used()));
  }

  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }

  private entry(key: string): Entry {
    checkedSegments(key);
    const entry = this.objects.get(key);
    if (entry) return entry;
    if (this.isFolder(key)) throw new StoreError('PM_ERR_STORE_NOT_A_FILE', key, 'not a regular file');
    throw new StoreError('PM_ERR_STORE_NOT_FOUND', key, 'not found');
  }

  private isFolder(key: string): boolean {
    return [...this.objects.keys()].some((k) => k.startsWith(`${key}/`));
  }

  private used(): number {
    let sum = 0;
    for (const entry of this.objects.values()) sum += entry.data.length;
    return sum;
  }
}

/** The result of `work` as a promise, rejected (never thrown) when it throws, as a backend's would be. */
function settled<T>(work: () => T): Promise<T> {
  return new Promise((resolve) => {
    resolve(work());
  });
}

function factsOf(key: string, entry: Entry): StoredObject {
  return { key, size: entry.data.length, mtime: entry.mtime, etag: entry.etag };
}
