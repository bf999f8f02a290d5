import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import t from 'tap';
import { newCrashId, validExamples, type CrashEvent } from '@podmortem/contract';
import { StorageWriter } from './storage-writer.ts';

// The storage writer on a real folder: atomic files, idempotence by crash id and core, the
// stored dump always zstd, and the errors that keep a crash pending or set it aside.

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
  const writer = new StorageWriter({ root, minFreeBytes: 0 });
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
  const event = await new StorageWriter({ root, minFreeBytes: 0 }).store(draft(), {
    path: plain,
    compression: 'none',
  });
  t.equal(event.dump.compression, 'zstd');
  t.same(zstdDecompressSync(readFileSync(dumpOf(root, event))), raw);
});

t.test('storing again is harmless and returns the stored event', async (t) => {
  const { root, zst } = setup(t);
  const writer = new StorageWriter({ root, minFreeBytes: 0 });
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
  const writer = new StorageWriter({ root, minFreeBytes: 0 });
  const d = draft();
  const first = await writer.store(d, { path: zst, compression: 'zstd' });
  writeFileSync(dumpOf(root, first), 'cut');
  const again = await writer.store(d, { path: zst, compression: 'zstd' });
  t.equal(statSync(dumpOf(root, again)).size, again.dump.stored_bytes);
});

t.test('an event without a dump (skipped) is stored alone', async (t) => {
  const { root } = setup(t);
  const d = draft();
  const event = await new StorageWriter({ root, minFreeBytes: 0 }).store(
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
  const writer = new StorageWriter({ root, minFreeBytes: Number.MAX_SAFE_INTEGER });
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
  await t.rejects(new StorageWriter({ root, minFreeBytes: 0 }).store(evil, undefined), {
    code: 'PM_ERR_EVENT_INVALID',
    retriable: false,
  });
});

t.test('an unwritable root is a retriable storage error, and leaves no temporary file', async (t) => {
  const { dir, zst } = setup(t);
  const root = join(dir, 'a-file');
  writeFileSync(root, 'not a folder');
  await t.rejects(
    new StorageWriter({ root, minFreeBytes: 0 }).store(draft(), { path: zst, compression: 'zstd' }),
    {
      code: 'PM_ERR_STORAGE',
      retriable: true,
    },
  );
});
