import { execFileSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { FsStore } from './fs-store.ts';
import { readBytes } from './store.ts';

// The filesystem store beyond the shared conformance: the exact names and modes on the volume,
// no temporary file left behind, and confinement to the root against symlinks, FIFOs and folders.

function setup(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'pm-fs-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const root = join(dir, 'root');
  mkdirSync(root);
  writeFileSync(join(dir, 'secret'), 'TOP-SECRET');
  return { dir, root, store: new FsStore({ root }) };
}

const notA = { name: 'StoreError', code: 'PM_ERR_STORE_NOT_A_FILE' };

t.test('objects are files at their key, 0640 in 0750 folders, with no temporary file left', async (t) => {
  const { root, store } = setup(t);
  await store.put('ns/pod/c/a.core.zst', Readable.from([Buffer.from('core')]));
  await store.putBytes('ns/pod/c/a.json', Buffer.from('{}'));
  t.equal(readFileSync(join(root, 'ns/pod/c/a.core.zst'), 'utf8'), 'core');
  t.equal(statSync(join(root, 'ns/pod/c/a.core.zst')).mode & 0o777, 0o640, 'dumps hold secrets');
  t.equal(statSync(join(root, 'ns/pod/c/a.json')).mode & 0o777, 0o640);
  for (const d of ['ns', 'ns/pod', 'ns/pod/c']) t.equal(statSync(join(root, d)).mode & 0o777, 0o750, d);
  t.same(readdirSync(join(root, 'ns/pod/c')).sort(), ['a.core.zst', 'a.json']);

  await t.rejects(
    store.put(
      'ns/pod/c/b.core.zst',
      (async function* () {
        yield Buffer.from('part');
        await Promise.resolve();
        throw new Error('cut');
      })(),
    ),
  );
  t.same(readdirSync(join(root, 'ns/pod/c')).sort(), ['a.core.zst', 'a.json'], 'the temporary file removed');
});

t.test('temporary and foreign names are no keys: never listed nor counted', async (t) => {
  const { root, store } = setup(t);
  await store.putBytes('ns/pod/c/a.core.zst', Buffer.alloc(10));
  writeFileSync(join(root, 'ns/pod/c/.tmp-0123456789ab-b.core.zst'), Buffer.alloc(1000));
  writeFileSync(join(root, 'ns/pod/c/has space.core.zst'), Buffer.alloc(1000));
  t.same(
    (await store.list('ns')).map((o) => o.key),
    ['ns/pod/c/a.core.zst'],
  );
  t.equal(await store.usage('ns'), 10);
});

t.test(
  'symlinks are never followed: not within a namespace, not across namespaces, not out of the root',
  async (t) => {
    const { dir, root, store } = setup(t);
    await store.putBytes('ns/pod/c/a.core.zst', Buffer.from('inside'));
    await store.putBytes('team-b/uid-b/c/b.core.zst', Buffer.from('team-b secret'));
    await store.putBytes('team-b/uid-b/c/b.json', Buffer.from('{"team":"b"}'));
    symlinkSync(join(root, 'ns/pod/c/a.core.zst'), join(root, 'ns/pod/c/in.core.zst'));
    symlinkSync(join(dir, 'secret'), join(root, 'ns/pod/c/out.core.zst'));
    mkdirSync(join(dir, 'elsewhere/c'), { recursive: true });
    writeFileSync(join(dir, 'elsewhere/c/x.json'), 'TOP-SECRET');
    symlinkSync(join(dir, 'elsewhere'), join(root, 'ns/linked'));
    // The attack of the audit: a pod folder of one namespace linked to another namespace's, by a
    // relative link and by an absolute one; and one core linked to another namespace's core.
    symlinkSync('../team-b/uid-b', join(root, 'ns/uid-b'));
    symlinkSync(join(root, 'team-b/uid-b'), join(root, 'ns/uid-abs'));
    symlinkSync(join(root, 'team-b/uid-b/c/b.core.zst'), join(root, 'ns/pod/c/across.core.zst'));

    for (const key of [
      'ns/pod/c/in.core.zst',
      'ns/pod/c/out.core.zst',
      'ns/pod/c/across.core.zst',
      'ns/linked/c/x.json',
      'ns/uid-b/c/b.core.zst',
      'ns/uid-abs/c/b.json',
    ]) {
      await t.rejects(store.get(key), notA, `get ${key}`);
      await t.rejects(store.stat(key), notA, `stat ${key}`);
    }
    await t.rejects(store.list('ns/linked'), notA, 'a linked folder is not listed');
    await t.rejects(store.list('ns/uid-b'), notA, 'a folder linked to another namespace is not listed');
    t.same(
      (await store.list('ns')).map((o) => o.key),
      ['ns/pod/c/a.core.zst'],
      'the listing holds only real files, and does not descend into linked folders',
    );
    t.equal(await store.usage('ns'), 6, "another namespace's files do not count for this one");
    await t.rejects(store.delete('ns/linked/c/x.json'), notA);
    await t.rejects(store.delete('ns/uid-b/c/b.core.zst'), notA);
    t.equal(readFileSync(join(dir, 'elsewhere/c/x.json'), 'utf8'), 'TOP-SECRET', 'nothing removed outside');
    t.equal(
      (await readBytes(store, 'team-b/uid-b/c/b.core.zst'))?.toString(),
      'team-b secret',
      'nothing removed in the other namespace',
    );
    await t.rejects(store.putBytes('ns/linked/c/y.json', Buffer.from('x')), notA, 'nothing written outside');
    await t.rejects(
      store.putBytes('ns/uid-b/c/y.json', Buffer.from('x')),
      notA,
      'nothing written into another namespace',
    );
    await store.delete('ns/pod/c/in.core.zst');
    t.equal(
      (await readBytes(store, 'ns/pod/c/a.core.zst'))?.toString(),
      'inside',
      'a link removed, not its target',
    );
  },
);

t.test('only regular files are read: a FIFO is refused at once, a folder too', async (t) => {
  const { root, store } = setup(t);
  mkdirSync(join(root, 'ns/pod/c'), { recursive: true });
  execFileSync('mkfifo', [join(root, 'ns/pod/c/f.core.zst')]);
  await t.rejects(store.get('ns/pod/c/f.core.zst'), notA);
  await t.rejects(store.stat('ns/pod/c/f.core.zst'), notA);
  await t.rejects(store.get('ns/pod'), notA);
  t.same(await store.list('ns'), [], 'neither is listed');
});

t.test('the root: ready when it is a folder; writes make it', async (t) => {
  const { dir } = setup(t);
  const later = new FsStore({ root: join(dir, 'later') });
  t.equal(await later.ready(), false);
  await later.putBytes('ns/p/c/e.json', Buffer.from('{}'));
  t.equal(await later.ready(), true);
  t.ok((await later.freeBytes()) > 0);
  writeFileSync(join(dir, 'a-file'), 'not a folder');
  const onFile = new FsStore({ root: join(dir, 'a-file') });
  t.equal(await onFile.ready(), false);
  await t.rejects(
    onFile.putBytes('ns/p/c/e.json', Buffer.from('{}')),
    { code: 'EEXIST' },
    'the root is a file: refused, naming it',
  );
});

t.test(
  'a volume out of space is PM_ERR_STORE_FULL, with nothing left on it',
  { skip: process.getuid?.() === 0 ? false : 'mounting a small tmpfs needs root' },
  async (t) => {
    const { dir } = setup(t);
    const mount = join(dir, 'small');
    mkdirSync(mount);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mount]);
    t.teardown(() => execFileSync('umount', ['-l', mount]));
    const store = new FsStore({ root: mount });
    await t.rejects(store.put('ns/p/c/a.core.zst', Readable.from([Buffer.alloc(1 << 20)])), {
      name: 'StoreError',
      code: 'PM_ERR_STORE_FULL',
    });
    t.same(readdirSync(join(mount, 'ns/p/c')), [], 'the temporary file removed');
  },
);
