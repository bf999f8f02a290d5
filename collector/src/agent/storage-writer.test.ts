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

/** The draft moved to another namespace. */
function inNamespace(d: CrashEvent, namespace: string): CrashEvent {
  if (!d.kubernetes) throw new Error('the example has a pod');
  return { ...d, kubernetes: { ...d.kubernetes, namespace } };
}

t.test('a namespace over its dump quota gets its events stored without dumps, saying why', async (t) => {
  const { root, zst } = setup(t);
  const oneDump = statSync(zst).size;
  const quota = 2 * oneDump - 1;
  const writer = new StorageWriter({ root, minFreeBytes: 0, namespaceQuotaBytes: quota });
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
  const first = await new StorageWriter({ root, minFreeBytes: 0, namespaceQuotaBytes: 1 }).store(d, core);
  t.equal(first.dump.status, 'skipped');
  const again = await new StorageWriter({ root, minFreeBytes: 0 }).store(d, core);
  t.same(again, first, 'the stored (and maybe announced) event, not a second story');
  t.equal(files(root).filter((f) => f.endsWith('.core.zst')).length, 0);
});

t.test('a crash outside any pod is not held to a namespace quota', async (t) => {
  const { root, zst } = setup(t);
  const d = draft();
  delete d.kubernetes;
  const event = await new StorageWriter({ root, minFreeBytes: 0, namespaceQuotaBytes: 1 }).store(d, {
    path: zst,
    compression: 'zstd',
  });
  t.equal(event.dump.status, 'stored');
});
