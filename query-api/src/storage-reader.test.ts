import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FsStore, MemoryStore } from '@podmortem/contract/store';
import { StorageReader } from './storage-reader.ts';

const base = mkdtempSync(join(tmpdir(), 'pm-reader-'));
t.teardown(() => rmSync(base, { recursive: true, force: true }));
const root = join(base, 'root');
const id1 = '0193a1b2-0000-7000-8000-000000000001';
const id2 = '0193a1b2-0000-7000-8000-000000000002';
const uid = '5f0c8a52-8d7e-4c11-9f70-3f2b6c7d8e01';
mkdirSync(join(root, 'ns', uid, 'api'), { recursive: true });
mkdirSync(join(root, 'ns', uid, 'side'), { recursive: true });
writeFileSync(join(root, 'ns', uid, 'api', `${id1}.core.zst`), 'core1');
writeFileSync(join(root, 'ns', uid, 'api', `${id1}.json`), '{}');
writeFileSync(join(root, 'ns', uid, 'api', `${id2}.json`), '{}');
writeFileSync(join(root, 'ns', uid, 'api', `.${id2}.core.zst.tmp`), 'partial');
writeFileSync(join(root, 'ns', uid, 'api', 'notes.txt'), 'x');
writeFileSync(join(base, 'secret'), 'secret');
symlinkSync(join(base, 'secret'), join(root, 'ns', uid, 'side', `${id1}.core.zst`));
const reader = new StorageReader({ store: new FsStore({ root }) });

t.test('opens files under the root', async (t) => {
  const f = await reader.read(`ns/${uid}/api/${id1}.core.zst`);
  t.equal(f.size, 5);
  t.equal((await f.body.toArray()).join(''), 'core1');
  t.equal((await reader.readSmall(`ns/${uid}/api/${id1}.core.zst`, 5))?.toString(), 'core1');
  t.equal(await reader.readSmall(`ns/${uid}/api/${id1}.core.zst`, 4), undefined, 'larger than asked for');
  t.equal((await reader.stat(`ns/${uid}/api/${id1}.json`)).size, 2);
});

t.test('refuses every path that is not plain segments under the root', async (t) => {
  for (const p of [
    '',
    '/etc/passwd',
    '../secret',
    'ns/../../secret',
    'ns/./x',
    'ns//x',
    'ns\\x',
    'ns/x\0',
    '.hidden',
    `ns/${'a/'.repeat(9)}x`,
    'x'.repeat(1025),
  ]) {
    await t.rejects(reader.read(p), { name: 'StorageError', problem: 'unsafe' }, JSON.stringify(p));
    await t.rejects(reader.stat(p), { name: 'StorageError', problem: 'unsafe' }, JSON.stringify(p));
  }
});

t.test('a symlink leading out of the root is refused; a missing file is missing', async (t) => {
  await t.rejects(reader.read(`ns/${uid}/side/${id1}.core.zst`), { name: 'StorageError', problem: 'unsafe' });
  await t.rejects(reader.read(`ns/${uid}/api/${id2}.core.zst`), { name: 'StorageError', problem: 'missing' });
  await t.rejects(
    reader.read(`ns/${uid}/api`),
    { name: 'StorageError', problem: 'unsafe' },
    'a directory is not a file',
  );
});

t.test('lists a pod’s crashes from the layout, skipping temporary, foreign and unsafe files', async (t) => {
  t.same(await reader.listPod('ns', uid), [
    {
      container: 'api',
      crashId: id1,
      dump: { relPath: `ns/${uid}/api/${id1}.core.zst`, size: 5 },
      event: { relPath: `ns/${uid}/api/${id1}.json`, size: 2 },
    },
    { container: 'api', crashId: id2, event: { relPath: `ns/${uid}/api/${id2}.json`, size: 2 } },
  ]);
  t.same(await reader.listPod('ns', uid, 'side'), []);
  t.same(await reader.listPod('ns', '00000000-0000-4000-8000-000000000000'), []);
  t.equal(await reader.ready(), true);
  t.equal(await new StorageReader({ store: new FsStore({ root: join(base, 'nope') }) }).ready(), false);
});

t.test('any store will do: the same listing from the in-memory store', async (t) => {
  const store = new MemoryStore();
  await store.putBytes(`ns/${uid}/api/${id1}.core.zst`, Buffer.from('core1'));
  await store.putBytes(`ns/${uid}/api/${id1}.json`, Buffer.from('{}'));
  await store.putBytes(`ns/${uid}/api/${id2}.json`, Buffer.from('{}'));
  await store.putBytes(`ns/${uid}/api/notes.txt`, Buffer.from('x'));
  await store.putBytes(`ns/${uid}/api-x/${id2}.json`, Buffer.from('{}'));
  const memory = new StorageReader({ store });
  t.same(
    (await memory.listPod('ns', uid)).map((f) => [f.container, f.crashId, f.dump?.size, f.event?.size]),
    [
      ['api', id1, 5, 2],
      ['api', id2, undefined, 2],
      ['api-x', id2, undefined, 2],
    ],
    'containers in order, then crashes',
  );
  await t.rejects(memory.read(`ns/${uid}/api/${id2}.core.zst`), { name: 'StorageError', problem: 'missing' });
  await t.rejects(memory.read(`ns/${uid}/api`), { name: 'StorageError', problem: 'unsafe' });
});
