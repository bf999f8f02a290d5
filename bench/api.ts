import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zstdCompressSync } from 'node:zlib';
import autocannon from 'autocannon';
import { dumpRelPath } from '@podmortem/contract';
import { FakeKubeApi } from '../test/support/fake-kube-api.ts';
import { startBenchApi, waitHttp } from './query-api-process.ts';
import { freePort } from '../test/support/ports.ts';
import { CrashIndex, StorageRoot, addUser, makeCrash, type SeededCrash } from '../test/support/query-api.ts';
import { stack } from '../test/support/stack.ts';

// bench:api — the query API (`node query-api/src/main.ts`, its own process) on the real local
// stack, with baselines measured in the same run:
//   - search: requests/s and p50/p99 latency at a fixed concurrency (autocannon), against the
//     same query sent straight to Elasticsearch at the same concurrency;
//   - dump download: MB/s of the stored dump (as stored, and decompressed with ?format=raw),
//     against nginx (Debian) serving the same file from the same storage root.
// The API runs with LOG_LEVEL=warn and a rate limit high enough not to throttle the load.
//
//   npm run bench:api      10 s per search run, 16 connections; a 256 MiB dump, 3 rounds of 8 downloads
//   BENCH_SECONDS=20 BENCH_CONNECTIONS=32 BENCH_DUMP_MB=512 npm run bench:api

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const DUMP_MB = Number(process.env.BENCH_DUMP_MB ?? 256);
const DOWNLOADS = Number(process.env.BENCH_DOWNLOADS ?? 8);
const DOWNLOAD_CONCURRENCY = Number(process.env.BENCH_DOWNLOAD_CONCURRENCY ?? 2);
const CRASHES = Number(process.env.BENCH_CRASHES ?? 5000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const cleanups: (() => Promise<void> | void)[] = [];
async function cleanup(): Promise<void> {
  for (const c of cleanups.reverse()) await c();
}
process.once('exit', () => {
  for (const p of children) p.kill('SIGKILL');
});
const children: ChildProcess[] = [];

interface Load {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function load(
  url: string,
  opts: { headers?: Record<string, string>; method?: 'GET' | 'POST'; body?: string },
): Promise<Load> {
  const r = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: SECONDS,
    method: opts.method ?? 'GET',
    headers: opts.headers ?? {},
    ...(opts.body === undefined ? {} : { body: opts.body }),
  });
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.non2xx };
}

/** Downloads `url` DOWNLOADS times, DOWNLOAD_CONCURRENCY at a time; MB/s over the whole run. */
async function downloads(
  url: string,
  headers: Record<string, string>,
  expectedBytes: number,
): Promise<number> {
  let next = 0;
  let total = 0;
  const one = () =>
    new Promise<number>((resolve, reject) => {
      const req = httpRequest(url, { headers }, (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`${url}: ${res.statusCode ?? '?'}`));
          res.resume();
          return;
        }
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => resolve(n));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  const worker = async () => {
    while (next < DOWNLOADS) {
      next++;
      const n = await one();
      if (n !== expectedBytes) throw new Error(`${url}: ${n} bytes, expected ${expectedBytes}`);
      total += n;
    }
  };
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: DOWNLOAD_CONCURRENCY }, worker));
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  return total / 1e6 / secs;
}

function nginxBinary(): string | undefined {
  const find = () => ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));
  if (find()) return find();
  if (process.getuid?.() === 0) {
    process.stderr.write('installing nginx (apt-get)…\n');
    spawnSync('apt-get', ['install', '-y', '-q', 'nginx-light'], { stdio: 'ignore' });
    if (!find()) spawnSync('apt-get', ['install', '-y', '-q', 'nginx'], { stdio: 'ignore' });
  }
  return find();
}

async function startNginx(root: string): Promise<string | undefined> {
  const bin = nginxBinary();
  if (!bin) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'pm-nginx-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const asRoot = process.getuid?.() === 0 ? 'user root;' : '';
  writeFileSync(
    join(dir, 'nginx.conf'),
    `${asRoot}
daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  default_type application/octet-stream;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server { listen 127.0.0.1:${port}; root ${root}; }
}
`,
  );
  const p = spawn(bin, ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: 'ignore' });
  children.push(p);
  cleanups.push(() => void p.kill('SIGTERM'));
  await waitHttp(`http://127.0.0.1:${port}/`);
  return `http://127.0.0.1:${port}`;
}

async function main(): Promise<void> {
  const kube = await FakeKubeApi.start();
  cleanups.push(() => kube.close());
  const index = await CrashIndex.create('pm-bench-api');
  cleanups.push(() => index.destroy());
  const storage = new StorageRoot();
  cleanups.push(() => storage.destroy());
  const token = addUser(kube, 'bench', ['team-a', 'team-b']);

  process.stderr.write(`seeding ${CRASHES} crashes and a ${DUMP_MB} MiB dump…\n`);
  const now = Date.now();
  const events = Array.from(
    { length: CRASHES },
    (_, i) =>
      makeCrash({
        namespace: i % 2 === 0 ? 'team-a' : 'team-b',
        pod: `api-${i % 50}`,
        at: now - i * 60_000,
        coreBytes: 0,
        status: 'skipped',
      }).event,
  );
  for (let i = 0; i < events.length; i += 1000) await index.add(events.slice(i, i + 1000));
  // The dump: half random, half zeros (about 2:1 under zstd), as cores often are.
  const raw = Buffer.concat([randomBytes((DUMP_MB << 20) / 2), Buffer.alloc((DUMP_MB << 20) / 2)]);
  const big: SeededCrash = makeCrash({ namespace: 'team-a', pod: 'big-0', at: now, coreBytes: 2 });
  big.raw = raw;
  big.stored = zstdCompressSync(raw);
  big.event.dump = { ...big.event.dump, size_bytes: raw.length, stored_bytes: big.stored.length };
  delete big.event.dump.sha256;
  storage.write(big);
  await index.add([big.event]);

  const work = mkdtempSync(join(tmpdir(), 'pm-bench-api-'));
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));
  const server = await startBenchApi({
    kube,
    work,
    crashIndex: index.alias,
    storageEnv: { PODMORTEM_API_STORAGE_ROOT: storage.root },
    adopt: (api) => {
      children.push(api);
      cleanups.push(() => void api.kill('SIGTERM'));
    },
  });
  const auth = { authorization: `Bearer ${token}` };

  const searchPath = '/v1/crashes?namespace=team-a&limit=50';
  // Warm up: caches of TokenReview/SubjectAccessReview and the JIT.
  for (let i = 0; i < 50; i++) await fetch(`${server}${searchPath}`, { headers: auth });
  process.stderr.write(`search: ${CONNECTIONS} connections × ${SECONDS} s, API then Elasticsearch…\n`);
  const apiSearch = await load(`${server}${searchPath}`, { headers: auth });
  const esBody = JSON.stringify({
    query: {
      bool: {
        filter: [
          { terms: { 'kubernetes.namespace': ['team-a'] } },
          { term: { 'kubernetes.namespace': 'team-a' } },
        ],
      },
    },
    sort: [{ '@timestamp': { order: 'desc' } }, { 'crash.id': { order: 'desc' } }],
    size: 51,
    track_total_hits: false,
  });
  const esSearch = await load(`${stack.elasticsearchUrl}/${index.alias}/_search`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: esBody,
  });

  process.stderr.write(
    `downloads: ${ROUNDS} rounds of ${DOWNLOADS} × the dump, ${DOWNLOAD_CONCURRENCY} at a time…\n`,
  );
  const nginx = await startNginx(storage.root);
  const dumpUrl = `${server}/v1/crashes/${big.event.crash.id}/dump`;
  const stored = big.stored.length;
  // Rounds alternate between the API and nginx, and medians are compared, so that a busy machine
  // (and the page cache warming up) weighs on both alike.
  const apiStoredRuns: number[] = [];
  const apiRawRuns: number[] = [];
  const nginxRuns: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    apiStoredRuns.push(await downloads(dumpUrl, auth, stored));
    if (nginx) nginxRuns.push(await downloads(`${nginx}/${dumpRelPath(big.event)}`, {}, stored));
    apiRawRuns.push(await downloads(`${dumpUrl}?format=raw`, auth, raw.length));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const apiStored = median(apiStoredRuns);
  const apiRaw = median(apiRawRuns);
  const nginxStored = nginx ? median(nginxRuns) : undefined;

  const f = (n: number, d = 1) => n.toFixed(d);
  const ratio = (a: number, b: number | undefined) => (b === undefined ? 'n/a' : `${f(a / b, 2)}×`);
  const rows: [string, string, string, string][] = [
    [
      `search req/s (c=${CONNECTIONS})`,
      f(apiSearch.rps, 0),
      `${f(esSearch.rps, 0)} (ES direct)`,
      ratio(apiSearch.rps, esSearch.rps),
    ],
    [
      'search latency p50 ms',
      f(apiSearch.p50),
      `${f(esSearch.p50)} (ES direct)`,
      ratio(apiSearch.p50, esSearch.p50),
    ],
    [
      'search latency p99 ms',
      f(apiSearch.p99),
      `${f(esSearch.p99)} (ES direct)`,
      ratio(apiSearch.p99, esSearch.p99),
    ],
    [
      `dump MB/s, as stored (${f(stored / 1e6, 0)} MB zstd, c=${DOWNLOAD_CONCURRENCY})`,
      f(apiStored),
      nginxStored === undefined ? 'nginx unavailable' : `${f(nginxStored)} (nginx)`,
      ratio(apiStored, nginxStored),
    ],
    [
      `dump MB/s, ?format=raw (${f(raw.length / 1e6, 0)} MB decompressed)`,
      f(apiRaw),
      nginxStored === undefined ? 'nginx unavailable' : `${f(nginxStored)} (nginx, stored file)`,
      ratio(apiRaw, nginxStored),
    ],
  ];
  const header = ['measure', 'podmortem API', 'baseline', 'ratio'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  console.log(
    `\nbench:api — ${CRASHES} crashes indexed, node ${process.version}, ${new Date().toISOString()}`,
  );
  console.log(line(header));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const r of rows) console.log(line(r));
  if (apiSearch.errors + esSearch.errors > 0)
    console.log(`errors/non-2xx: API ${apiSearch.errors}, Elasticsearch ${esSearch.errors}`);
}

try {
  await main();
} finally {
  await cleanup();
}
