import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { readBytes, S3_MIN_PART_BYTES, S3Store, type StoreErrorCode } from '@podmortem/contract/store';
import t from 'tap';
import { freePort } from './support/ports.ts';
import { freshBucket, stackS3Client, stackS3Params } from './support/s3.ts';
import { uniqueName } from './support/stack.ts';

// S3Store on the local stack's real S3 server (SeaweedFS), beyond what the store conformance
// suite asks of every backend: multipart uploads of streams larger than a part, ranges across
// parts, a failed upload aborted on the server, checksums, the key prefix, credentials from files,
// and every way the server can be missing or refuse: a typed error, never a hang.

const code = (c: StoreErrorCode) => ({ name: 'StoreError', code: c });

/** `parts` chunks of `size` bytes, each filled with its own index: every byte says where it is. */
async function* chunks(parts: number, size: number) {
  for (let i = 0; i < parts; i++) yield Buffer.alloc(size, i);
}

async function* failingAfter(parts: number, size: number) {
  yield* chunks(parts, size);
  throw new Error('the spool file broke');
}

const part = S3_MIN_PART_BYTES;

async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const got: Buffer[] = [];
  for await (const chunk of body) got.push(Buffer.from(chunk));
  return Buffer.concat(got);
}

t.test('a stream larger than a part is uploaded in parts and read back whole and by range', async (t) => {
  const b = await freshBucket(t);
  const store = b.store({ partSizeBytes: part, queueSize: 2 });
  // 13 MiB: two whole parts and a short last one, sent as 1 MiB chunks (parts are cut from the
  // stream, not from the chunks).
  const mib = 1 << 20;
  const size = 13 * mib;
  const source = await collect(chunks(13, mib));
  const put = await store.put('ns/p/c/big.core.zst', chunks(13, mib));
  t.equal(put.size, size);
  const whole = await readBytes(store, 'ns/p/c/big.core.zst');
  t.equal(
    createHash('sha256')
      .update(whole ?? Buffer.alloc(0))
      .digest('hex'),
    createHash('sha256').update(source).digest('hex'),
  );
  // Across the first part boundary.
  const across = await store.get('ns/p/c/big.core.zst', { start: part - 3, end: part + 2 });
  t.same(await collect(across.body), source.subarray(part - 3, part + 3));
  t.equal(across.size, size, 'the size is the object’s, not the range’s');
  t.equal(across.etag, put.etag);
  const past = await store.get('ns/p/c/big.core.zst', { start: size + 10 });
  t.equal((await collect(past.body)).length, 0, 'a range past the end is empty');
  t.same(await b.openUploads(), [], 'no upload left open');
});

t.test('a stream that fails after two parts leaves no object, no open upload, the old object', async (t) => {
  const b = await freshBucket(t);
  const store = b.store({ partSizeBytes: part, queueSize: 1 });
  await store.putBytes('ns/p/c/old.core.zst', Buffer.from('whole'));
  await t.rejects(store.put('ns/p/c/old.core.zst', failingAfter(2 * 5, 1 << 20)), /the spool file broke/);
  await t.rejects(store.put('ns/p/c/new.core.zst', failingAfter(2 * 5, 1 << 20)), /the spool file broke/);
  t.equal((await readBytes(store, 'ns/p/c/old.core.zst'))?.toString(), 'whole');
  await t.rejects(store.stat('ns/p/c/new.core.zst'), code('PM_ERR_STORE_NOT_FOUND'));
  t.same(await b.openUploads(), [], 'the multipart uploads were aborted');
  t.same(await b.objectKeys(), ['ns/p/c/old.core.zst']);
});

t.test('uploads carry a SHA-256 the server keeps; checksums can be turned off', async (t) => {
  const b = await freshBucket(t);
  const client = stackS3Client();
  t.teardown(() => client.destroy());
  const data = Buffer.from('{"crash":1}\n');
  await b.store().putBytes('ns/p/c/e.json', data);
  await b.store({ partSizeBytes: part }).put('ns/p/c/d.core.zst', chunks(6, 1 << 20));
  await b.store({ checksum: 'off' }).putBytes('ns/p/c/plain.json', data);
  const head = (key: string) =>
    client.send(new HeadObjectCommand({ Bucket: b.bucket, Key: key, ChecksumMode: 'ENABLED' }));
  t.equal((await head('ns/p/c/e.json')).ChecksumSHA256, createHash('sha256').update(data).digest('base64'));
  t.match(
    (await head('ns/p/c/d.core.zst')).ChecksumSHA256,
    /.+-2$/,
    'a multipart object: a checksum of parts',
  );
  t.equal((await head('ns/p/c/plain.json')).ChecksumSHA256, undefined);
  // A checksum that does not match the bytes is refused by the server, not stored.
  await t.rejects(
    client.send(
      new PutObjectCommand({
        Bucket: b.bucket,
        Key: 'ns/p/c/bad.json',
        Body: data,
        ChecksumSHA256: createHash('sha256').update('other').digest('base64'),
      }),
    ),
  );
  await t.rejects(b.store().stat('ns/p/c/bad.json'), code('PM_ERR_STORE_NOT_FOUND'));
});

t.test('a prefix keeps installations apart; foreign names are never listed', async (t) => {
  const b = await freshBucket(t);
  const one = b.store({ prefix: 'cluster-a' });
  const two = b.store({ prefix: 'cluster-b/x' });
  await one.putBytes('ns/p/c/1.core.zst', Buffer.alloc(10));
  await two.putBytes('ns/p/c/1.core.zst', Buffer.alloc(20));
  const client = stackS3Client();
  t.teardown(() => client.destroy());
  await client.send(new PutObjectCommand({ Bucket: b.bucket, Key: 'cluster-a/ns/p/c/.tmp-x', Body: 'x' }));
  await client.send(new PutObjectCommand({ Bucket: b.bucket, Key: 'cluster-a/ns/p/c/a b', Body: 'x' }));
  t.same(
    (await one.list('ns')).map((o) => o.key),
    ['ns/p/c/1.core.zst'],
  );
  t.equal(await one.usage('ns'), 10);
  t.equal(await two.usage('ns'), 20);
  t.same(await b.store().list('ns'), [], 'nothing outside a prefix');
  t.same(await b.objectKeys(), [
    'cluster-a/ns/p/c/.tmp-x',
    'cluster-a/ns/p/c/1.core.zst',
    'cluster-a/ns/p/c/a b',
    'cluster-b/x/ns/p/c/1.core.zst',
  ]);
  t.throws(() => new S3Store({ ...b.params, prefix: '../up' }), RangeError);
  t.throws(() => new S3Store({ ...b.params, prefix: '/lead' }), RangeError);
  t.throws(() => new S3Store({ ...b.params, bucket: '' }), RangeError);
  t.throws(() => new S3Store({ ...b.params, partSizeBytes: part - 1 }), RangeError);
  t.throws(() => new S3Store({ ...b.params, queueSize: 0 }), RangeError);
  t.throws(() => new S3Store({ ...b.params, queueSize: 1.5 }), RangeError);
});

t.test('namespaces: those below the prefix only, over more than one page of the listing', async (t) => {
  const b = await freshBucket(t);
  const one = b.store({ prefix: 'cluster-a' });
  const two = b.store({ prefix: 'cluster-b/x' });
  const client = stackS3Client();
  t.teardown(() => client.destroy());
  // S3 answers at most 1000 names a page: 1001 namespaces need a second one.
  const names = Array.from({ length: 1001 }, (_, i) => `ns-${String(i).padStart(4, '0')}`);
  for (let i = 0; i < names.length; i += 50)
    await Promise.all(
      names
        .slice(i, i + 50)
        .map((ns) =>
          client.send(
            new PutObjectCommand({ Bucket: b.bucket, Key: `cluster-a/${ns}/p/c/1.json`, Body: '{}' }),
          ),
        ),
    );
  await client.send(new PutObjectCommand({ Bucket: b.bucket, Key: 'cluster-a/a b/p/c/1.json', Body: 'x' }));
  await two.putBytes('other/p/c/1.json', Buffer.from('{}'));
  t.same(await one.namespaces(), names, 'every namespace once, in order; the foreign name left out');
  t.same(await two.namespaces(), ['other']);
});

t.test('a budget bounds freeBytes: it less what the prefix holds', async (t) => {
  const b = await freshBucket(t);
  t.equal(await b.store().freeBytes(), undefined, 'no budget: no bound');
  const store = b.store({ prefix: 'p', budgetBytes: 1000 });
  t.equal(await store.freeBytes(), 1000);
  await store.putBytes('ns/p/c/1.core.zst', Buffer.alloc(300));
  await store.putBytes('ns/p/c/1.json', Buffer.alloc(50));
  t.equal(await store.freeBytes(), 650);
  await store.putBytes('ns/p/c/2.core.zst', Buffer.alloc(900));
  t.equal(await store.freeBytes(), 0, 'never below zero');
});

t.test('credentials from files, as a mounted Secret; a missing file is a refusal', async (t) => {
  const b = await freshBucket(t);
  const dir = await mkdtemp(join(tmpdir(), 'pm-s3-secret-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const { accessKeyId, secretAccessKey } = stackS3Params(b.bucket).credentials as {
    accessKeyId: string;
    secretAccessKey: string;
  };
  await writeFile(join(dir, 'id'), `${accessKeyId}\n`);
  await writeFile(join(dir, 'secret'), `${secretAccessKey}\n`);
  const store = b.store({
    credentials: { accessKeyIdFile: join(dir, 'id'), secretAccessKeyFile: join(dir, 'secret') },
  });
  await store.putBytes('ns/p/c/1.json', Buffer.from('{}'));
  t.equal((await readBytes(store, 'ns/p/c/1.json'))?.toString(), '{}');
  const missing = b.store({
    credentials: { accessKeyIdFile: join(dir, 'nope'), secretAccessKeyFile: join(dir, 'secret') },
  });
  await t.rejects(missing.stat('ns/p/c/1.json'), { ...code('PM_ERR_STORE_REFUSED'), message: /nope/ });
  t.equal(await missing.ready(), false);
});

t.test('a missing bucket and wrong credentials are refusals, each saying which', async (t) => {
  const b = await freshBucket(t);
  await b.store().putBytes('ns/p/c/1.json', Buffer.from('{}'));
  const gone = b.store({ bucket: uniqueName('pm-missing').toLowerCase() });
  const bucketMissing = { ...code('PM_ERR_STORE_REFUSED'), message: /does not exist/ };
  await t.rejects(gone.putBytes('ns/p/c/1.json', Buffer.from('{}')), bucketMissing);
  await t.rejects(gone.put('ns/p/c/1.core.zst', chunks(1, 10)), bucketMissing);
  // A stream of more parts than the upload holds at once: it fails with most of the stream unread,
  // and the error is still the server's, not the stream's being cut short.
  await t.rejects(gone.put('ns/p/c/2.core.zst', chunks(40, 1 << 20)), bucketMissing);
  await t.rejects(gone.get('ns/p/c/1.json'), bucketMissing);
  await t.rejects(gone.stat('ns/p/c/1.json'), bucketMissing);
  await t.rejects(gone.list('ns'), bucketMissing);
  t.equal(await gone.ready(), false);

  const params = stackS3Params(b.bucket);
  const wrongSecret = b.store({
    credentials: { accessKeyId: 'podmortem-local', secretAccessKey: 'not-the-secret' },
  });
  const unknownKey = b.store({ credentials: { accessKeyId: 'nobody', secretAccessKey: 'nothing' } });
  for (const store of [wrongSecret, unknownKey]) {
    const refused = { ...code('PM_ERR_STORE_REFUSED'), message: /refused the request/ };
    await t.rejects(store.putBytes('ns/p/c/2.json', Buffer.from('{}')), refused);
    await t.rejects(store.get('ns/p/c/1.json'), code('PM_ERR_STORE_REFUSED'));
    await t.rejects(store.list('ns'), refused);
    t.equal(await store.ready(), false);
  }
  t.ok(params.credentials, 'the stack’s own key is the one that works');
  t.equal(await b.store().ready(), true);
});

t.test('a server that is down or silent is unavailable within the timeout, never a hang', async (t) => {
  // Nothing listens on a reserved port: connections are refused.
  const down = new S3Store({
    ...stackS3Params('any-bucket'),
    endpoint: `http://127.0.0.1:${await freePort()}`,
  });
  t.teardown(() => down.close());
  const unavailable = { ...code('PM_ERR_STORE_UNAVAILABLE'), message: /unreachable/ };
  await t.rejects(down.putBytes('ns/p/c/1.json', Buffer.from('{}')), unavailable);
  await t.rejects(down.put('ns/p/c/1.core.zst', chunks(1, 10)), unavailable);
  await t.rejects(down.get('ns/p/c/1.json'), unavailable);
  await t.rejects(down.list('ns'), unavailable);
  t.equal(await down.ready(), false);

  // A server that takes the connection and never answers.
  const sockets = new Set<Socket>();
  const silent = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => silent.listen(port, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        silent.close(() => resolve());
      }),
  );
  const stalled = new S3Store({
    ...stackS3Params('any-bucket'),
    endpoint: `http://127.0.0.1:${port}`,
    timeoutMs: 300,
    maxAttempts: 1,
  });
  t.teardown(() => stalled.close());
  const noAnswer = { ...code('PM_ERR_STORE_UNAVAILABLE'), message: /no answer within 300 ms/ };
  await t.rejects(stalled.stat('ns/p/c/1.json'), noAnswer);
  await t.rejects(stalled.putBytes('ns/p/c/1.json', Buffer.from('{}')), noAnswer);
  await t.rejects(stalled.get('ns/p/c/1.json'), code('PM_ERR_STORE_UNAVAILABLE'));
  await t.rejects(
    stalled.put('ns/p/c/1.core.zst', Readable.from([Buffer.from('x')])),
    code('PM_ERR_STORE_UNAVAILABLE'),
  );
  t.equal(await stalled.ready(), false);
});
