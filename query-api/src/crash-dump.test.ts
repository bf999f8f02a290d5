import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { gunzipSync, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { pino } from 'pino';
import t from 'tap';
import tar from 'tar-stream';
import {
  crashIndexForId,
  dumpRelPath,
  eventRelPath,
  newCrashId,
  validExamples,
  type CrashEvent,
} from '@podmortem/contract';
import { MemoryStore } from '@podmortem/contract/store';
import { buildApp } from './app.ts';
import { readConfig } from './config.ts';
import { createElasticsearchClient } from './crash-store.ts';
import type { KubeReviews } from './kube-reviews.ts';
import { PrometheusClient } from './prometheus-client.ts';
import { StorageReader } from './storage-reader.ts';

// The dump and archive routes on the in-memory store, through inject(): they depend on the store
// interface alone. The crash index is a stand-in HTTP server answering the one search the routes
// make (a crash by id); the caller may read and download in team-a only.

const template = validExamples().find((e) => e.name === 'segv-stored')?.event;
if (!template) throw new Error('the contract has no segv-stored example');

const uid = randomUUID();

function crash(tweak: (e: CrashEvent) => void = () => undefined) {
  const event = structuredClone(template) as CrashEvent;
  event.crash.id = newCrashId();
  if (!event.kubernetes) throw new Error('the example has a pod');
  event.kubernetes.namespace = 'team-a';
  event.kubernetes.pod.name = 'api-0';
  event.kubernetes.pod.uid = uid;
  event.kubernetes.container.name = 'api';
  const raw = Buffer.concat([randomBytes(2048), Buffer.alloc(2048)]);
  const stored = zstdCompressSync(raw);
  event.dump = {
    status: 'stored',
    compression: 'zstd',
    limit_bytes: 1 << 30,
    path: dumpRelPath(event),
    size_bytes: raw.length,
    stored_bytes: stored.length,
    sha256: createHash('sha256').update(raw).digest('hex'),
  };
  tweak(event);
  return { event, raw, stored };
}

const events = new Map<string, CrashEvent>();

async function bodyOf(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString() || '{}');
}

/** The values of the first `ids` query clause anywhere in a search body. */
function idsIn(node: unknown): string[] {
  if (typeof node !== 'object' || node === null) return [];
  const ids = (node as { ids?: { values?: unknown } }).ids?.values;
  if (Array.isArray(ids)) return ids.filter((v): v is string => typeof v === 'string');
  for (const child of Object.values(node)) {
    const found = idsIn(child);
    if (found.length > 0) return found;
  }
  return [];
}

/**
 * Elasticsearch as far as the routes use it: a crash read by id from its monthly index, a search
 * by crash id, and empty aggregations.
 */
const es = createServer((req, res) => {
  const byId = /^\/(crashes-\d{4}\.\d{2})\/_doc\/([^/?]+)/.exec(req.url ?? '');
  if (byId) {
    const [, index, id = ''] = byId;
    const event = events.get(decodeURIComponent(id));
    const found = event !== undefined && crashIndexForId(event.crash.id, 'crashes') === index;
    res.writeHead(found ? 200 : 404, {
      'content-type': 'application/json',
      'x-elastic-product': 'Elasticsearch',
    });
    res.end(JSON.stringify({ _index: index, _id: id, found, ...(found ? { _source: event } : {}) }));
    return;
  }
  void bodyOf(req).then((body) => {
    // The store wraps every query (crashesOnly): find its ids clause wherever it sits.
    const ids = idsIn(body);
    const hits = ids.flatMap((id) => {
      const event = events.get(id);
      return event ? [{ _id: id, _index: 'crashes', _source: event }] : [];
    });
    res.writeHead(200, { 'content-type': 'application/json', 'x-elastic-product': 'Elasticsearch' });
    res.end(JSON.stringify({ took: 0, timed_out: false, hits: { total: { value: hits.length }, hits } }));
  });
});
await new Promise<void>((resolve) => es.listen(0, '127.0.0.1', resolve));
t.teardown(() => es.close());
const esUrl = `http://127.0.0.1:${(es.address() as AddressInfo).port}`;

const kube: KubeReviews = {
  reviewToken: (token) => Promise.resolve(token === 'tok' ? { username: 'alice', groups: [] } : undefined),
  reviewAccess: (_caller, attrs) => Promise.resolve(attrs.namespace === 'team-a'),
};

const store = new MemoryStore();
const config = readConfig({}, { crashIndex: 'crashes', elasticsearchUrl: esUrl });
const client = createElasticsearchClient(esUrl);
const app = await buildApp({
  config,
  es: client,
  kube,
  prometheus: new PrometheusClient({ url: config.prometheusUrl }),
  storage: new StorageReader({ store }),
  store,
  logger: pino({ level: 'silent' }),
});
t.teardown(async () => {
  await app.close();
  await client.close();
});

async function seed(c: ReturnType<typeof crash>, withDump = true) {
  events.set(c.event.crash.id, c.event);
  await store.putBytes(eventRelPath(c.event), Buffer.from(JSON.stringify(c.event)));
  if (withDump) await store.put(dumpRelPath(c.event), Readable.from([c.stored]));
}

const get = (url: string, headers: Record<string, string> = {}) =>
  app.inject({ method: 'GET', url, headers: { authorization: 'Bearer tok', ...headers } });

t.test('the stored dump, whole or a range, as stored or decompressed', async (t) => {
  const c = crash();
  await seed(c);
  const url = `/v1/crashes/${c.event.crash.id}/dump`;
  const sha = c.event.dump.sha256 ?? '';

  const whole = await get(url);
  t.equal(whole.statusCode, 200);
  t.same(whole.rawPayload, c.stored);
  t.equal(whole.headers.etag, `"${sha}.zst"`);
  t.equal(whole.headers['content-length'], String(c.stored.length));
  t.equal(whole.headers['content-type'], 'application/zstd');

  const tail = await get(url, { range: 'bytes=-5' });
  t.equal(tail.statusCode, 206);
  t.same(tail.rawPayload, c.stored.subarray(-5));
  t.equal(
    tail.headers['content-range'],
    `bytes ${c.stored.length - 5}-${c.stored.length - 1}/${c.stored.length}`,
  );

  const raw = await get(`${url}?format=raw`);
  t.same(raw.rawPayload, c.raw);
  t.same(zstdDecompressSync(whole.rawPayload), c.raw);
  const slice = await get(`${url}?format=raw`, { range: 'bytes=100-2199' });
  t.equal(slice.statusCode, 206);
  t.same(slice.rawPayload, c.raw.subarray(100, 2200), 'a range of the decompressed core');
  t.equal(slice.headers['content-length'], '2100');
});

t.test('304, 416, gone and refused', async (t) => {
  const c = crash();
  await seed(c);
  const url = `/v1/crashes/${c.event.crash.id}/dump`;
  const etag = `"${c.event.dump.sha256 ?? ''}.zst"`;
  t.equal((await get(url, { 'if-none-match': etag })).statusCode, 304);

  const past = await get(url, { range: `bytes=${c.stored.length}-` });
  t.equal(past.statusCode, 416);
  t.equal(past.headers['content-range'], `bytes */${c.stored.length}`);
  t.equal(past.json<{ code: string }>().code, 'PM_ERR_RANGE_NOT_SATISFIABLE');

  const gone = crash();
  await seed(gone, false);
  const r = await get(`/v1/crashes/${gone.event.crash.id}/dump`);
  t.equal(r.statusCode, 410, 'no object under the key: removed by retention');
  t.equal(r.json<{ code: string }>().code, 'PM_ERR_DUMP_GONE');

  // The crash says its dump was taken away: the 410 says when, by whom and why, before the store
  // is asked (the core may still be there, half-way through removeDump).
  const deleted = crash((e) => {
    e.dump = {
      ...e.dump,
      status: 'deleted',
      reason: 'deleted by alice',
      removed_at: '2026-12-03T16:00:00.000Z',
      removed_by: 'alice',
    };
  });
  await seed(deleted);
  const d = await get(`/v1/crashes/${deleted.event.crash.id}/dump`);
  t.equal(d.statusCode, 410, 'a deleted dump is gone');
  t.match(d.json(), {
    code: 'PM_ERR_DUMP_REMOVED',
    message: `the dump of crash ${deleted.event.crash.id} was deleted by alice at 2026-12-03T16:00:00.000Z: deleted by alice`,
  });
  const expired = crash((e) => {
    e.dump = {
      ...e.dump,
      status: 'expired',
      reason: 'age: older than 30 days',
      removed_at: '2026-12-01T00:00:00.000Z',
      removed_by: 'retention',
    };
  });
  await seed(expired, false);
  const x = await get(`/v1/crashes/${expired.event.crash.id}/dump?format=raw`);
  t.equal(x.statusCode, 410, 'an expired dump is gone');
  t.match(x.json(), {
    code: 'PM_ERR_DUMP_REMOVED',
    message: `the dump of crash ${expired.event.crash.id} expired at 2026-12-01T00:00:00.000Z: age: older than 30 days`,
  });

  // Something under the dump's key that is not an object of the store.
  const folder = crash();
  await seed(folder, false);
  await store.putBytes(`${dumpRelPath(folder.event)}/x`, Buffer.from('x'));
  const refused = await get(`/v1/crashes/${folder.event.crash.id}/dump`);
  t.equal(refused.statusCode, 404);
  t.equal(refused.json<{ code: string }>().code, 'PM_ERR_DUMP_UNREADABLE');
});

t.test('without a sha256 the ETag is the store’s, weak', async (t) => {
  const c = crash((e) => delete e.dump.sha256);
  await seed(c);
  const facts = await store.stat(dumpRelPath(c.event));
  const r = await get(`/v1/crashes/${c.event.crash.id}/dump`);
  t.equal(r.headers.etag, `W/"${facts.etag}"`);
  t.equal(
    (await get(`/v1/crashes/${c.event.crash.id}/dump`, { 'if-none-match': `W/"${facts.etag}"` })).statusCode,
    304,
  );
});

t.test('the pod archive holds each event beside its dump, from the store’s listing', async (t) => {
  const a = crash();
  const b = crash();
  await seed(a);
  await seed(b, false);
  const r = await get(`/v1/namespaces/team-a/pods/api-0/dumps.tar.gz?uid=${uid}`);
  t.equal(r.statusCode, 200);
  const entries = new Map<string, Buffer>();
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (d: unknown) => chunks.push(Buffer.from(d as Uint8Array)));
    stream.on('end', () => {
      entries.set(header.name, Buffer.concat(chunks));
      next();
    });
  });
  await new Promise<void>((resolve, reject) => {
    extract.on('finish', resolve).on('error', reject);
    extract.end(gunzipSync(r.rawPayload));
  });
  t.same(entries.get(`${uid}/api/${a.event.crash.id}.core.zst`), a.stored);
  t.same(JSON.parse(entries.get(`${uid}/api/${b.event.crash.id}.json`)?.toString() ?? ''), b.event);
  t.notOk(entries.has(`${uid}/api/${b.event.crash.id}.core.zst`), 'no dump stored, none archived');
  t.equal((await get(`/v1/namespaces/team-a/pods/api-0/dumps.tar.gz?uid=${randomUUID()}`)).statusCode, 404);
});
