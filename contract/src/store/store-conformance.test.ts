import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { freshBucket, type TestBucket } from '../../../test/support/s3.ts';
import { FsStore } from './fs-store.ts';
import { MemoryStore } from './memory-store.ts';
import { readBytes, type Store, type StoreErrorCode } from './store.ts';

// What every Store does, run against each implementation: what the callers (the collector's
// writer, the query API's reader) may rely on whatever the backend. S3Store runs on the local
// stack's real S3 server (SeaweedFS): one bucket for this run, each test below a prefix of its own.

let bucket: Promise<TestBucket> | undefined;
let prefixes = 0;

const implementations: [string, (t: Test) => Store | Promise<Store>][] = [
  [
    'FsStore',
    (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'pm-store-'));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      mkdirSync(join(dir, 'root'));
      return new FsStore({ root: join(dir, 'root') });
    },
  ],
  ['MemoryStore', () => new MemoryStore()],
  [
    'S3Store',
    async () => {
      bucket ??= freshBucket(t, 'pm-conformance');
      prefixes += 1;
      return (await bucket).store({ prefix: `run/${prefixes}` });
    },
  ],
];

const text = async (body: AsyncIterable<unknown>) => {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks).toString();
};

const code = (c: StoreErrorCode) => ({ name: 'StoreError', code: c });

/** A stream that yields some bytes and then fails, as a spool file read from a failing disk would. */
async function* failingHalfway() {
  yield Buffer.from('half of');
  await Promise.resolve();
  throw new Error('the source broke');
}

for (const [name, make] of implementations) {
  t.test(name, async (t) => {
    t.test('put a stream, then read it whole or by range, with the same facts as stat', async (t) => {
      const store = await make(t);
      const put = await store.put(
        'ns/pod/c/a.core.zst',
        Readable.from([Buffer.from('0123'), Buffer.from('456789')]),
      );
      t.equal(put.size, 10);
      const whole = await store.get('ns/pod/c/a.core.zst');
      t.equal(await text(whole.body), '0123456789');
      const facts = await store.stat('ns/pod/c/a.core.zst');
      t.same(
        [whole.key, whole.size, whole.etag, whole.mtime.getTime()],
        [facts.key, facts.size, facts.etag, facts.mtime.getTime()],
      );
      t.equal(await text((await store.get('ns/pod/c/a.core.zst', { start: 2, end: 4 })).body), '234');
      t.equal(await text((await store.get('ns/pod/c/a.core.zst', { start: 7 })).body), '789');
      t.equal((await store.get('ns/pod/c/a.core.zst', { start: 7 })).size, 10, 'the size is the object’s');
      t.equal((await readBytes(store, 'ns/pod/c/a.core.zst', 10))?.toString(), '0123456789');
      t.equal(await readBytes(store, 'ns/pod/c/a.core.zst', 9), undefined, 'larger than allowed');
    });

    t.test('putBytes replaces an object whole, with a new etag', async (t) => {
      const store = await make(t);
      const first = await store.putBytes('ns/pod/c/e.json', Buffer.from('{}'));
      const second = await store.putBytes('ns/pod/c/e.json', Buffer.from('{"a":1}'));
      t.not(second.etag, first.etag);
      t.equal((await readBytes(store, 'ns/pod/c/e.json'))?.toString(), '{"a":1}');
    });

    t.test('a put whose stream fails leaves nothing, and an object it replaced intact', async (t) => {
      const store = await make(t);
      await t.rejects(store.put('ns/pod/c/new.core.zst', failingHalfway()), /the source broke/);
      await t.rejects(store.stat('ns/pod/c/new.core.zst'), code('PM_ERR_STORE_NOT_FOUND'));
      await store.putBytes('ns/pod/c/old.core.zst', Buffer.from('whole'));
      await t.rejects(store.put('ns/pod/c/old.core.zst', failingHalfway()));
      t.equal((await readBytes(store, 'ns/pod/c/old.core.zst'))?.toString(), 'whole');
      t.same(
        (await store.list('ns')).map((o) => o.key),
        ['ns/pod/c/old.core.zst'],
        'no partial object listed',
      );
    });

    t.test('missing objects, folders and keys outside the layout are told apart', async (t) => {
      const store = await make(t);
      await store.putBytes('ns/pod/c/x.json', Buffer.from('x'));
      await t.rejects(store.get('ns/pod/c/y.json'), code('PM_ERR_STORE_NOT_FOUND'));
      await t.rejects(store.stat('ns/pod/c/x.json/deeper'), code('PM_ERR_STORE_NOT_FOUND'));
      await t.rejects(store.get('ns/pod/c'), code('PM_ERR_STORE_NOT_A_FILE'));
      await t.rejects(store.stat('ns/pod'), code('PM_ERR_STORE_NOT_A_FILE'));
      for (const key of [
        '',
        '../x',
        'ns/../x',
        'ns//x',
        '.hidden',
        'ns/./x',
        '/etc/passwd',
        'ns\\x',
        'x'.repeat(1025),
      ]) {
        await t.rejects(store.get(key), code('PM_ERR_STORE_BAD_KEY'), `get ${JSON.stringify(key)}`);
        await t.rejects(
          store.putBytes(key, Buffer.from('x')),
          code('PM_ERR_STORE_BAD_KEY'),
          `put ${JSON.stringify(key)}`,
        );
        await t.rejects(store.list(key), code('PM_ERR_STORE_BAD_KEY'), `list ${JSON.stringify(key)}`);
      }
      await t.rejects(store.get(`ns/${'a/'.repeat(8)}x`), code('PM_ERR_STORE_BAD_KEY'), 'too deep');
    });

    t.test('list: the objects under a folder of whole segments, by key', async (t) => {
      const store = await make(t);
      for (const key of [
        'ns/b/c/2.json',
        'ns/a/c/1.json',
        'ns/a/d/3.core.zst',
        'ns/ab/c/4.json',
        'other/a/c/5.json',
      ])
        await store.putBytes(key, Buffer.from(key));
      t.same(
        (await store.list('ns/a')).map((o) => [o.key, o.size]),
        [
          ['ns/a/c/1.json', 13],
          ['ns/a/d/3.core.zst', 17],
        ],
      );
      t.same(
        (await store.list('ns')).map((o) => o.key),
        ['ns/a/c/1.json', 'ns/a/d/3.core.zst', 'ns/ab/c/4.json', 'ns/b/c/2.json'],
      );
      t.same(await store.list('nowhere'), []);
      await t.rejects(store.list('ns/a/c/1.json'), code('PM_ERR_STORE_NOT_A_FILE'), 'an object is no folder');
    });

    t.test(
      'namespaces: the namespace folders at the top, sorted; other top-level names are not',
      async (t) => {
        const store = await make(t);
        t.same(await store.namespaces(), [], 'an empty store has none');
        for (const key of [
          'team-b/p/c/1.json',
          'team-a/p/c/2.core.zst',
          'team-a/q/c/3.json',
          '_buildid/ab12/executable',
          '_host/node-1/_process/4.json',
          'Not_A_Namespace/p/c/5.json',
          'dotted.name/p/c/6.json',
          'top-level-object',
        ])
          await store.putBytes(key, Buffer.from(key));
        t.same(
          await store.namespaces(),
          ['team-a', 'team-b'],
          'each once; _buildid, _host and junk names left out',
        );
      },
    );

    t.test('usage counts the dumps of a namespace; delete removes, twice harmlessly', async (t) => {
      const store = await make(t);
      await store.putBytes('ns/p/c/1.core.zst', Buffer.alloc(100));
      await store.putBytes('ns/p/c/1.json', Buffer.alloc(7));
      await store.putBytes('ns/q/c/2.core.zst', Buffer.alloc(50));
      await store.putBytes('other/p/c/3.core.zst', Buffer.alloc(1000));
      t.equal(await store.usage('ns'), 150);
      t.equal(await store.usage('empty'), 0);
      await store.delete('ns/p/c/1.core.zst');
      await store.delete('ns/p/c/1.core.zst');
      await t.rejects(store.get('ns/p/c/1.core.zst'), code('PM_ERR_STORE_NOT_FOUND'));
      t.equal(await store.usage('ns'), 50);
      await t.rejects(store.delete('ns/p'), code('PM_ERR_STORE_NOT_A_FILE'));
      await t.rejects(store.delete('../x'), code('PM_ERR_STORE_BAD_KEY'));
    });

    t.test('ready, and free bytes a number when the backend bounds them', async (t) => {
      const store = await make(t);
      t.equal(await store.ready(), true);
      const free = await store.freeBytes();
      t.ok(free === undefined || (Number.isFinite(free) && free >= 0));
      t.type(store.location, 'string');
    });
  });
}

t.test('FsStore: a symlinked folder at the root is not listed as a namespace', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pm-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new FsStore({ root: join(dir, 'root') });
  await store.putBytes('team-a/p/c/1.json', Buffer.from('{}'));
  mkdirSync(join(dir, 'elsewhere', 'p', 'c'), { recursive: true });
  writeFileSync(join(dir, 'elsewhere', 'p', 'c', '2.json'), '{}');
  symlinkSync(join(dir, 'elsewhere'), join(dir, 'root', 'planted'));
  symlinkSync(join(dir, 'root', 'team-a'), join(dir, 'root', 'alias'));
  t.same(await store.namespaces(), ['team-a'], 'neither a link out of the root nor one inside it');
});

t.test('FsStore: no root yet has no namespaces', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pm-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.same(await new FsStore({ root: join(dir, 'absent') }).namespaces(), []);
});

t.test('MemoryStore: a capacity plays a full backend', async (t) => {
  const store = new MemoryStore({ capacityBytes: 10 });
  await store.putBytes('ns/p/c/a.json', Buffer.alloc(6));
  t.equal(await store.freeBytes(), 4);
  await t.rejects(store.put('ns/p/c/b.json', Readable.from([Buffer.alloc(5)])), code('PM_ERR_STORE_FULL'));
  await store.putBytes('ns/p/c/a.json', Buffer.alloc(10));
  t.equal(await store.freeBytes(), 0, 'a replaced object frees its room');
});
