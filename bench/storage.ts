// bench:storage — a dump to and from the S3 backend (the local stack's SeaweedFS), with baselines
// measured in the same run:
//   1. upload MB/s of a SIZE_MIB MiB compressed dump through the collector's path (a process of its
//      own building its store with storeFrom() from the collector's settings and storing the crash
//      with its StorageWriter: a streamed multipart upload of the spooled .core.zst, each part with
//      its SHA-256, then the event), against `curl --upload-file` of the same file (one SigV4 PUT);
//   2. download MB/s of that dump through the query API's dump route (the API on the same bucket)
//      against a direct SigV4 GET of the object with curl; both fetched by curl to /dev/null;
//   3. the peak RSS of the process doing the upload (bench/storage-put.ts, its own getrusage
//      maxRSS), against the same process storing a crash without a dump (its event alone).
// Rounds alternate (collector, curl, collector, …) and medians are compared, so a busy machine
// weighs on both alike.
//
//   npm run bench:storage                   a 1 GiB dump, 3 rounds
//   SIZE_MIB=64 ROUNDS=1 npm run bench:storage   a quick try
import { execFile, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createZstdCompress } from 'node:zlib';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListObjectsV2Command,
} from '@aws-sdk/client-s3';
import type { CrashEvent } from '@podmortem/contract';
import { envName } from '@podmortem/contract/runtime';
import { S3_DEFAULTS, type StoreSettings } from '@podmortem/contract/store';
import { FakeKubeApi } from '../test/support/fake-kube-api.ts';
import { startBenchApi } from './query-api-process.ts';
import { CrashIndex, addUser, makeCrash } from '../test/support/query-api.ts';
import { stackS3Client } from '../test/support/s3.ts';
import { repoDir, stack, uniqueName } from '../test/support/stack.ts';

const MIB = 1024 * 1024;
const SIZE_MIB = Number(process.env.SIZE_MIB ?? 1024);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const run = promisify(execFile);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

interface PutResult {
  ms: number;
  maxRssBytes: number;
  event: CrashEvent;
}

if (process.argv.includes('--help')) {
  console.log(`npm run bench:storage — S3 upload and download of a dump against curl, peak RSS of the upload
  SIZE_MIB  size of the stored (zstd) dump, MiB (default 1024)
  ROUNDS    alternating rounds of each measure; medians compared (default 3)`);
  process.exit(0);
}

const progress = (s: string) => process.stderr.write(`${s}\n`);
const cleanups: (() => unknown)[] = [];
const children: ChildProcess[] = [];
process.once('exit', () => {
  for (const p of children) p.kill('SIGKILL');
});

async function curl(args: string[]): Promise<{ bytes: number; seconds: number }> {
  const { stdout } = await run(
    'curl',
    ['-sS', '--fail', '-o', '/dev/null', '-w', '%{size_download} %{size_upload} %{time_total}', ...args],
    { maxBuffer: 1 << 20 },
  );
  const [down = 0, up = 0, seconds = NaN] = stdout.trim().split(' ').map(Number);
  return { bytes: Math.max(down, up), seconds };
}

const sigv4 = [
  '--aws-sigv4',
  `aws:amz:${stack.s3.region}:s3`,
  '--user',
  `${stack.s3.accessKeyId}:${stack.s3.secretAccessKey}`,
  // The body is not hashed into the signature, as for a stream of unknown content.
  '-H',
  'x-amz-content-sha256: UNSIGNED-PAYLOAD',
];

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'pm-bench-storage-'));
  cleanups.push(() => rm(work, { recursive: true, force: true }));
  const client = stackS3Client();
  cleanups.push(() => client.destroy());
  const bucket = uniqueName('pm-bench-storage').toLowerCase().slice(0, 63);
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  cleanups.push(async () => {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    for (const o of page.Contents ?? [])
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key }));
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  });

  // The spooled core: random bytes, so zstd keeps the stored dump at about SIZE_MIB.
  progress(`writing a ${SIZE_MIB} MiB .core.zst spool file…`);
  const corePath = join(work, 'core.zst');
  await pipeline(
    Readable.from(
      (function* () {
        for (let i = 0; i < SIZE_MIB; i++) yield randomFillSync(Buffer.allocUnsafe(MIB));
      })(),
    ),
    createZstdCompress(),
    createWriteStream(corePath),
  );
  const stored = (await stat(corePath)).size;

  const secretDir = join(work, 'secret');
  await mkdir(secretDir, { mode: 0o700 });
  await writeFile(join(secretDir, 'id'), stack.s3.accessKeyId, { mode: 0o600 });
  await writeFile(join(secretDir, 'key'), stack.s3.secretAccessKey, { mode: 0o600 });
  const storeSettings = (prefix: string): StoreSettings => ({
    storageRoot: work,
    storageBackend: 's3',
    storageS3Endpoint: stack.s3.url,
    storageS3Region: stack.s3.region,
    storageS3Bucket: bucket,
    storageS3Prefix: prefix,
    storageS3PathStyle: true,
    storageS3AccessKeyIdFile: join(secretDir, 'id'),
    storageS3SecretAccessKeyFile: join(secretDir, 'key'),
    storageS3TimeoutMs: 30_000,
    storageS3BudgetBytes: 0,
    storageS3PartSizeBytes: 8 * MIB,
    storageS3QueueSize: S3_DEFAULTS.queueSize,
    storageS3Checksum: 'SHA256',
  });

  const collectorPut = async (withCore: boolean): Promise<PutResult> => {
    const draft = makeCrash({ namespace: 'team-a', pod: 'big-0', at: Date.now(), status: 'skipped' }).event;
    draft.dump = withCore
      ? { status: 'stored', compression: 'zstd', size_bytes: SIZE_MIB * MIB, limit_bytes: 4 << 30 }
      : { status: 'skipped', reason: 'bench: the event alone', limit_bytes: 4 << 30 };
    const { stdout } = await run(
      process.execPath,
      [
        join(repoDir, 'bench/storage-put.ts'),
        JSON.stringify(storeSettings('')),
        JSON.stringify(draft),
        ...(withCore ? [corePath] : []),
      ],
      { maxBuffer: 16 << 20 },
    );
    return JSON.parse(stdout) as PutResult;
  };
  // Each crash is a pod of its own: its folder is all it stored.
  const removeStored = async (event: CrashEvent) => {
    const k8s = event.kubernetes;
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: `${k8s?.namespace ?? ''}/${k8s?.pod.uid ?? ''}/` }),
    );
    for (const o of page.Contents ?? [])
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key }));
  };
  const curlUrl = `${stack.s3.url}/${bucket}/curl/core.zst`;

  progress(`upload: ${ROUNDS} rounds, the collector's store then curl…`);
  const puts: PutResult[] = [];
  const curlPuts: number[] = [];
  const idle = await collectorPut(false);
  await removeStored(idle.event);
  let last: CrashEvent | undefined;
  for (let round = 0; round < ROUNDS; round++) {
    const put = await collectorPut(true);
    if (put.event.dump.stored_bytes !== stored)
      throw new Error(`the collector stored ${String(put.event.dump.stored_bytes)} bytes of ${stored}`);
    puts.push(put);
    if (last) await removeStored(last);
    last = put.event;
    const up = await curl([...sigv4, '--upload-file', corePath, curlUrl]);
    if (up.bytes !== stored) throw new Error(`curl uploaded ${up.bytes} bytes of ${stored}`);
    curlPuts.push(up.seconds * 1000);
    progress(
      `  round ${round + 1}: collector ${(put.ms / 1000).toFixed(2)} s (peak RSS ${(put.maxRssBytes / MIB).toFixed(0)} MiB), curl ${up.seconds.toFixed(2)} s`,
    );
  }
  if (!last) throw new Error('ROUNDS must be at least 1');

  progress('download: starting the query API on the bucket…');
  const kube = await FakeKubeApi.start();
  cleanups.push(() => kube.close());
  const index = await CrashIndex.create('pm-bench-storage');
  cleanups.push(() => index.destroy());
  await index.add([last]);
  const token = addUser(kube, 'bench', ['team-a']);
  const server = await startBenchApi({
    kube,
    work,
    crashIndex: index.alias,
    storageEnv: Object.fromEntries(
      Object.entries(storeSettings('')).map(([k, v]) => [envName('PODMORTEM_API_', k), String(v)]),
    ),
    adopt: (api) => {
      children.push(api);
      cleanups.push(() => void api.kill('SIGTERM'));
    },
  });
  const dumpUrl = `${server}/v1/crashes/${last.crash.id}/dump`;
  const objectUrl = `${stack.s3.url}/${bucket}/${last.dump.path ?? ''}`;

  progress(`download: ${ROUNDS} rounds, the API's dump route then a direct GET…`);
  const apiGets: number[] = [];
  const directGets: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const viaApi = await curl(['-H', `authorization: Bearer ${token}`, dumpUrl]);
    const direct = await curl([...sigv4, objectUrl]);
    for (const [what, got] of [
      ['the API', viaApi],
      ['the direct GET', direct],
    ] as const)
      if (got.bytes !== stored) throw new Error(`${what} sent ${got.bytes} bytes of ${stored}`);
    apiGets.push(viaApi.seconds * 1000);
    directGets.push(direct.seconds * 1000);
    progress(
      `  round ${round + 1}: API ${viaApi.seconds.toFixed(2)} s, direct ${direct.seconds.toFixed(2)} s`,
    );
  }

  const mbs = (ms: number) => stored / 1e6 / (ms / 1000);
  const upCollector = mbs(median(puts.map((p) => p.ms)));
  const upCurl = mbs(median(curlPuts));
  const downApi = mbs(median(apiGets));
  const downDirect = mbs(median(directGets));
  const rss = puts.map((p) => p.maxRssBytes);
  const f = (n: number, d = 1) => n.toFixed(d);
  const rows: [string, string, string, string][] = [
    [
      `upload MB/s (${f(stored / 1e6, 0)} MB .core.zst)`,
      f(upCollector),
      `${f(upCurl)} (curl --upload-file)`,
      `${f(upCollector / upCurl, 2)}×`,
    ],
    [
      'download MB/s',
      f(downApi),
      `${f(downDirect)} (curl GET of the object)`,
      `${f(downApi / downDirect, 2)}×`,
    ],
    [
      'peak RSS of the uploading process, MiB',
      `${f(median(rss) / MIB, 0)} (max ${f(Math.max(...rss) / MIB, 0)})`,
      `${f(idle.maxRssBytes / MIB, 0)} (the same storing its event alone)`,
      `${f(median(rss) / idle.maxRssBytes, 2)}×`,
    ],
  ];
  const header = ['measure (medians)', 'podmortem', 'baseline', 'ratio'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  console.log(
    `\nbench:storage — SeaweedFS S3 at ${stack.s3.url}, ${ROUNDS} alternating rounds, node ${process.version}, ${new Date().toISOString()}`,
  );
  console.log(line(header));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const r of rows) console.log(line(r));
}

try {
  await main();
} finally {
  for (const c of cleanups.reverse()) await c();
}
