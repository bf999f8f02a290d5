import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import t from 'tap';
import { newCrashId, validExamples, type CrashEvent } from '@podmortem/contract';
import { FsStore, MemoryStore, readBytes, type StoredObject } from '@podmortem/contract/store';
import { StorageWriter, type StorageWriterParams } from './storage-writer.ts';

// The storage writer on a real folder (the filesystem store): atomic files, idempotence by crash
// id and core, the stored dump always zstd, and the errors that keep a crash pending or set it
// aside; then on the in-memory store, which shows that the writer relies on the store interface
// alone (quota from usage(), the free-space floor from freeBytes(), the event after the dump).

const onDisk = (root: string, params: Omit<StorageWriterParams, 'store'>) =>
  new StorageWriter({ store: new FsStore({ root }), ...params });

function setup(t: { teardown(fn: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'pm-storage-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const root = join(dir, 'root');
  mkdirSync(root);
  const raw = Buffer.from('\x7fELF' + 'core bytes '.repeat(1000));
  const zst = join(dir, 'spooled.core.zst');
  writeFileSync(zst, zstdCompressSync(raw));
  const plain = join(dir, 'spooled-plain.core.zst');
  writeFileSync(plain, raw);
  return { dir, root, raw, zst, plain };
}

function draft(): CrashEvent {
  const base = validExamples().find((e) => e.name === 'segv-stored')?.event;
  if (!base) throw new Error('the contract has no segv-stored example');
  // What the storage writer fills in is not in a draft.
  const dump = { ...base.dump };
  delete dump.path;
  delete dump.stored_bytes;
  delete dump.compression;
  return { ...base, crash: { id: newCrashId() }, dump };
}

/** Where a stored event says its dump is. */
const dumpOf = (root: string, event: CrashEvent) => join(root, event.dump.path ?? '(no dump path)');

const files = (dir: string): string[] =>
  readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name).slice(dir.length + 1))
    .sort();

t.test('stores the dump, then the event completed with where the dump is', async (t) => {
  const { root, raw, zst } = setup(t);
  const writer = onDisk(root, { minFreeBytes: 0 });
  const d = draft();
  const event = await writer.store(d, { path: zst, compression: 'zstd' });
  const k8s = d.kubernetes;
  if (!k8s) throw new Error('the example has a pod');
  const dir = `${k8s.namespace}/${k8s.pod.uid}/${k8s.container.name}`;
  t.same(files(root), [`${dir}/${d.crash.id}.core.zst`, `${dir}/${d.crash.id}.json`]);
  t.equal(event.dump.path, `${dir}/${d.crash.id}.core.zst`);
  t.equal(event.dump.compression, 'zstd');
  t.equal(event.dump.stored_bytes, statSync(dumpOf(root, event)).size);
  t.same(zstdDecompressSync(readFileSync(dumpOf(root, event))), raw);
  t.same(JSON.parse(readFileSync(join(root, `${dir}/${d.crash.id}.json`), 'utf8')), event);
  t.equal(statSync(dumpOf(root, event)).mode & 0o777, 0o640, 'dumps hold secrets: not world-readable');
});

t.test('an uncompressed spooled core is compressed on the way: the stored dump is always zstd', async (t) => {
  const { root, raw, plain } = setup(t);
  const event = await onDisk(root, { minFreeBytes: 0 }).store(draft(), {
    path: plain,
    compression: 'none',
  });
  t.equal(event.dump.compression, 'zstd');
  t.same(zstdDecompressSync(readFileSync(dumpOf(root, event))), raw);
});

t.test('storing again is harmless and returns the stored event', async (t) => {
  const { root, zst } = setup(t);
  const writer = onDisk(root, { minFreeBytes: 0 });
  const d = draft();
  const first = await writer.store(d, { path: zst, compression: 'zstd' });
  const before = files(root);
  const second = await writer.store(
    { ...d, collector: { ...d.collector, handler_ms: 99 } },
    { path: zst, compression: 'zstd' },
  );
  t.same(second, first, 'the event already stored, not a new one');
  t.same(files(root), before, 'no second copy');
});

t.test('a stored dump cut short (size differs from the event) is written again', async (t) => {
  const { root, zst } = setup(t);
  const writer = onDisk(root, { minFreeBytes: 0 });
  const d = draft();
  const first = await writer.store(d, { path: zst, compression: 'zstd' });
  writeFileSync(dumpOf(root, first), 'cut');
  const again = await writer.store(d, { path: zst, compression: 'zstd' });
  t.equal(statSync(dumpOf(root, again)).size, again.dump.stored_bytes);
});

t.test('an event without a dump (skipped) is stored alone', async (t) => {
  const { root } = setup(t);
  const d = draft();
  const event = await onDisk(root, { minFreeBytes: 0 }).store(
    { ...d, dump: { status: 'skipped', reason: 'rate limited' } },
    undefined,
  );
  t.equal(event.dump.path, undefined);
  t.same(
    files(root).map((f) => f.split('/').at(-1)),
    [`${d.crash.id}.json`],
  );
});

t.test('below the free-space floor nothing is written and the error says so (retriable)', async (t) => {
  const { root, zst } = setup(t);
  const writer = onDisk(root, { minFreeBytes: Number.MAX_SAFE_INTEGER });
  await t.rejects(writer.store(draft(), { path: zst, compression: 'zstd' }), {
    code: 'PM_ERR_STORAGE_FULL',
    retriable: true,
  });
  t.same(files(root), []);
});

t.test('a path segment that could escape the root is refused for good', async (t) => {
  const { root } = setup(t);
  const d = draft();
  if (!d.kubernetes) throw new Error('the example has a pod');
  const evil = { ...d, kubernetes: { ...d.kubernetes, namespace: '..' } };
  await t.rejects(onDisk(root, { minFreeBytes: 0 }).store(evil, undefined), {
    code: 'PM_ERR_EVENT_INVALID',
    retriable: false,
  });
});

t.test('an unwritable root is a retriable storage error, and leaves no temporary file', async (t) => {
  const { dir, zst } = setup(t);
  const root = join(dir, 'a-file');
  writeFileSync(root, 'not a folder');
  await t.rejects(onDisk(root, { minFreeBytes: 0 }).store(draft(), { path: zst, compression: 'zstd' }), {
    code: 'PM_ERR_STORAGE',
    retriable: true,
  });
});

/** The draft moved to another namespace. */
function inNamespace(d: CrashEvent, namespace: string): CrashEvent {
  if (!d.kubernetes) throw new Error('the example has a pod');
  return { ...d, kubernetes: { ...d.kubernetes, namespace } };
}

t.test('a namespace over its dump quota gets its events stored without dumps, saying why', async (t) => {
  const { root, zst } = setup(t);
  const oneDump = statSync(zst).size;
  const quota = 2 * oneDump - 1;
  const writer = onDisk(root, { minFreeBytes: 0, namespaceQuotaBytes: quota });
  const core = { path: zst, compression: 'zstd' } as const;
  // Stored at once: the quota is checked one store at a time, so only one dump fits.
  const events = await Promise.all(
    [draft(), draft(), draft()].map((d) => writer.store(inNamespace(d, 'busy'), core)),
  );
  t.same(events.map((e) => e.dump.status).sort(), ['skipped', 'skipped', 'stored']);
  for (const e of events.filter((e) => e.dump.status === 'skipped')) {
    t.equal(e.dump.path, undefined);
    t.match(
      e.dump.reason,
      new RegExp(`namespace busy is at its dump quota: ${oneDump} of ${quota} bytes used`),
    );
    t.equal(e.dump.sha256, draft().dump.sha256, 'what the handler saw of the core is kept');
  }
  t.equal(files(root).filter((f) => f.endsWith('.core.zst')).length, 1);
  t.equal(files(root).filter((f) => f.endsWith('.json')).length, 3, 'every crash recorded');

  const other = await writer.store(inNamespace(draft(), 'quiet'), core);
  t.equal(other.dump.status, 'stored', 'another namespace has its own quota');

  const stored = events.find((e) => e.dump.status === 'stored');
  if (!stored) throw new Error('one dump was stored');
  rmSync(dumpOf(root, stored));
  const afterRetention = await writer.store(inNamespace(draft(), 'busy'), core);
  t.equal(afterRetention.dump.status, 'stored', 'a removed dump no longer counts');
});

t.test('a crash stored over quota stays so when stored again, even once there is room', async (t) => {
  const { root, zst } = setup(t);
  const core = { path: zst, compression: 'zstd' } as const;
  const d = inNamespace(draft(), 'busy');
  const first = await onDisk(root, { minFreeBytes: 0, namespaceQuotaBytes: 1 }).store(d, core);
  t.equal(first.dump.status, 'skipped');
  const again = await onDisk(root, { minFreeBytes: 0 }).store(d, core);
  t.same(again, first, 'the stored (and maybe announced) event, not a second story');
  t.equal(files(root).filter((f) => f.endsWith('.core.zst')).length, 0);
});

t.test('a crash outside any pod is not held to a namespace quota', async (t) => {
  const { root, zst } = setup(t);
  const d = draft();
  delete d.kubernetes;
  const event = await onDisk(root, { minFreeBytes: 0, namespaceQuotaBytes: 1 }).store(d, {
    path: zst,
    compression: 'zstd',
  });
  t.equal(event.dump.status, 'stored');
});

/** An in-memory store that records the keys put, in order, and can be made to fail dumps. */
class RecordingStore extends MemoryStore {
  readonly puts: string[] = [];
  failDumps = false;
  override async put(key: string, body: AsyncIterable<Uint8Array>): Promise<StoredObject> {
    this.puts.push(key);
    if (this.failDumps) throw new Error('backend refused the upload');
    return super.put(key, body);
  }
  override async putBytes(key: string, data: Uint8Array): Promise<StoredObject> {
    this.puts.push(key);
    return super.putBytes(key, data);
  }
}

const inMemory = (store: MemoryStore, params: Partial<Omit<StorageWriterParams, 'store'>> = {}) =>
  new StorageWriter({ store, minFreeBytes: 0, ...params });

const keysOf = async (store: MemoryStore, event: CrashEvent) =>
  (await store.list(event.kubernetes?.namespace ?? '_host')).map((o) => o.key);

t.test('in memory: the dump is put as zstd, then the event naming it', async (t) => {
  const { raw, zst, plain } = setup(t);
  for (const core of [
    { path: zst, compression: 'zstd' },
    { path: plain, compression: 'none' },
  ] as const) {
    const store = new RecordingStore();
    const d = draft();
    const event = await inMemory(store).store(d, core);
    const dumpKey = event.dump.path ?? '(no dump path)';
    t.same(
      store.puts,
      [dumpKey, dumpKey.replace(/\.core\.zst$/, '.json')],
      `${core.compression}: dump first`,
    );
    const stored = await readBytes(store, dumpKey);
    t.same(stored && zstdDecompressSync(stored), raw);
    t.equal(event.dump.stored_bytes, stored?.length);
    t.equal(event.dump.compression, 'zstd');
    t.same(JSON.parse((await readBytes(store, store.puts[1] ?? ''))?.toString() ?? ''), event);
  }
});

t.test('in memory: storing again puts nothing; a dump cut short is put again', async (t) => {
  const { zst } = setup(t);
  const store = new RecordingStore();
  const writer = inMemory(store);
  const core = { path: zst, compression: 'zstd' } as const;
  const d = draft();
  const first = await writer.store(d, core);
  const puts = store.puts.length;
  t.same(await writer.store(d, core), first, 'the stored event');
  t.equal(store.puts.length, puts, 'nothing put again');
  await store.putBytes(first.dump.path ?? '', Buffer.from('cut'));
  const again = await writer.store(d, core);
  t.equal((await store.stat(again.dump.path ?? '')).size, again.dump.stored_bytes);
});

t.test('in memory: a dump the store refuses leaves no event, and the crash pending', async (t) => {
  const { zst } = setup(t);
  const store = new RecordingStore();
  store.failDumps = true;
  const d = draft();
  await t.rejects(inMemory(store).store(d, { path: zst, compression: 'zstd' }), {
    code: 'PM_ERR_STORAGE',
    retriable: true,
  });
  t.same(await keysOf(store, d), [], 'no event without its dump');
});

t.test('in memory: a full store and the free-space floor are PM_ERR_STORAGE_FULL', async (t) => {
  const { zst } = setup(t);
  const core = { path: zst, compression: 'zstd' } as const;
  const tiny = new MemoryStore({ capacityBytes: 10 });
  await t.rejects(inMemory(tiny).store(draft(), core), { code: 'PM_ERR_STORAGE_FULL', retriable: true });
  const roomy = new MemoryStore({ capacityBytes: 1 << 30 });
  const d = draft();
  await t.rejects(inMemory(roomy, { minFreeBytes: 1 << 30 }).store(d, core), {
    code: 'PM_ERR_STORAGE_FULL',
    message: /memory has \d+ bytes free/,
  });
  t.same(await keysOf(roomy, d), [], 'nothing written below the floor');
});

t.test('in memory: the namespace quota counts the dumps usage() reports', async (t) => {
  const { zst } = setup(t);
  const store = new MemoryStore();
  const held = draft();
  const heldKey = `busy/${held.kubernetes?.pod.uid ?? ''}/api/${held.crash.id}.core.zst`;
  await store.putBytes(heldKey, Buffer.alloc(1000));
  const writer = inMemory(store, { namespaceQuotaBytes: 1000 });
  const event = await writer.store(inNamespace(draft(), 'busy'), { path: zst, compression: 'zstd' });
  t.equal(event.dump.status, 'skipped');
  t.match(event.dump.reason, /namespace busy is at its dump quota: 1000 of 1000 bytes used/);
  await store.delete(heldKey);
  const later = await writer.store(inNamespace(draft(), 'busy'), { path: zst, compression: 'zstd' });
  t.equal(later.dump.status, 'stored', 'room again once the dump is gone');
});
