import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import t from 'tap';
import { freshBucket, stackS3Client } from './support/s3.ts';
import { repoDir, stack } from './support/stack.ts';

// A dump far larger than memory may hold goes to the bucket as a stream: a 2 GiB body put through
// S3Store in a process of its own (test/support/s3-big-put.ts) peaks well below the body's size,
// at about its parts in flight and Node's own. The process has its key from the environment only
// (AWS_ACCESS_KEY_ID, the SDK's default chain), as a pod given it by env from a Secret would.
// The bound is what a node can count on per upload: Node and the SDK alone take about 125 MiB, the
// parts in flight about 30, and V8 grows its young generation under this allocation rate to some
// 30 MiB more (the used heap stays flat): 235 to 260 MiB were seen for 2 GiB, so 256 would flake.

const GIB = 1 << 30;
const MIB = 1 << 20;
const SIZE = Number(process.env.PM_S3_BIG_PUT_BYTES ?? 2 * GIB);
const RSS_BOUND = 320 * MIB;

t.test(`a ${SIZE / MIB} MiB stream is stored with a peak RSS under ${RSS_BOUND / MIB} MiB`, async (t) => {
  const b = await freshBucket(t, 'pm-big');
  const params = { ...b.params };
  delete params.credentials;
  const key = 'ns/p/c/big.core.zst';
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [join(repoDir, 'test/support/s3-big-put.ts'), JSON.stringify(params), String(SIZE), key],
    {
      env: {
        PATH: process.env.PATH ?? '',
        AWS_ACCESS_KEY_ID: stack.s3.accessKeyId,
        AWS_SECRET_ACCESS_KEY: stack.s3.secretAccessKey,
      },
      timeout: 540_000,
    },
  );
  const put = JSON.parse(stdout) as { size: number; ms: number; maxRssBytes: number };
  t.equal(put.size, SIZE, 'the whole body is stored');
  t.ok(
    put.maxRssBytes < RSS_BOUND,
    `peak RSS ${(put.maxRssBytes / MIB).toFixed(0)} MiB for a ${SIZE / MIB} MiB body`,
  );
  const client = stackS3Client();
  t.teardown(() => client.destroy());
  const head = await client.send(
    new HeadObjectCommand({ Bucket: b.bucket, Key: key, ChecksumMode: 'ENABLED' }),
  );
  t.equal(head.ContentLength, SIZE);
  t.match(head.ChecksumSHA256, /-\d+$/, 'every part was sent with its SHA-256, checked by the server');
  // Each 64 KiB chunk is filled with its index: the tail read back by range is the body's tail.
  const tail = await b.store().get(key, { start: SIZE - 4 });
  const got: Buffer[] = [];
  for await (const chunk of tail.body as AsyncIterable<Buffer>) got.push(chunk);
  t.same(Buffer.concat(got), Buffer.alloc(4, (Math.ceil(SIZE / (64 << 10)) - 1) & 0xff));
  t.same(await b.openUploads(), [], 'no upload left open');
});
