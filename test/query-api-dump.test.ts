import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync, mkdtempSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import t, { type Test } from 'tap';
import tar from 'tar-stream';
import { dumpRelPath, type CrashEvent } from '@podmortem/contract';
import { BACKENDS, openBackend } from './support/backends.ts';
import {
  addUser,
  bearer,
  harness,
  makeCrash,
  sha256,
  writeThrough,
  type SeededCrash,
} from './support/query-api.ts';
import { metricValue } from './support/metrics.ts';

// Dump downloads and pod archives from a real store, on each backend (a storage root, an S3
// bucket): byte-exact bodies and ranges, the raw core's sha256, 410 for a removed dump, every
// traversal attempt refused (parameters, dump paths in events, and on the filesystem symlinks
// and FIFOs inside the root), audit records, and tar.gz archives holding exactly the pod's dumps
// and events — a deleted pod's too, by uid.

for (const name of BACKENDS)
  t.test(name, async (t) => {
    // The filesystem's store is the harness's own root, where the attacks below plant links.
    const h = await harness({}, name === 'fs' ? {} : { store: (await openBackend(t, name)).store });
    t.teardown(() => h.close());
    const alice = addUser(h.kube, 'alice', ['team-a']);

    const uid = 'aaaaaaaa-2222-4000-8000-000000000001';
    const oldUid = 'aaaaaaaa-2222-4000-8000-0000000000aa';
    const otherUid = 'aaaaaaaa-2222-4000-8000-000000000002';
    const hour = 3_600_000;
    const now = Date.now();
    const main = makeCrash({
      namespace: 'team-a',
      pod: 'api-0',
      uid,
      at: now - 5 * hour,
      coreBytes: 256 * 1024,
    });
    const second = makeCrash({ namespace: 'team-a', pod: 'api-0', uid, at: now - 4 * hour });
    const sidecar = makeCrash({
      namespace: 'team-a',
      pod: 'api-0',
      uid,
      container: 'sidecar',
      at: now - 3 * hour,
    });
    const skipped = makeCrash({
      namespace: 'team-a',
      pod: 'api-0',
      uid,
      at: now - 2 * hour,
      status: 'skipped',
    });
    const otherPod = makeCrash({ namespace: 'team-a', pod: 'api-1', uid: otherUid, at: now - hour });
    // An earlier incarnation of api-0, deleted long ago: on storage only, the index forgot it.
    const old1 = makeCrash({ namespace: 'team-a', pod: 'api-0', uid: oldUid, at: now - 50 * hour });
    const old2 = makeCrash({
      namespace: 'team-a',
      pod: 'api-0',
      uid: oldUid,
      container: 'init',
      at: now - 49 * hour,
    });
    const truncated = makeCrash({
      namespace: 'team-a',
      pod: 'api-2',
      at: now - hour,
      status: 'truncated',
      coreBytes: 8192,
    });
    const removed = makeCrash({ namespace: 'team-a', pod: 'api-3', at: now - hour });
    const teamB = makeCrash({ namespace: 'team-b', pod: 'web-0', at: now - hour });

    for (const c of [main, second, sidecar, skipped, otherPod, old1, old2, truncated, removed, teamB])
      await writeThrough(h.store, c);
    await h.index.add(
      [main, second, sidecar, skipped, otherPod, truncated, removed, teamB].map((c) => c.event),
    );

    const outside = mkdtempSync(join(tmpdir(), 'pm-outside-'));
    t.teardown(() => rmSync(outside, { recursive: true, force: true }));
    writeFileSync(join(outside, 'secret'), 'TOP-SECRET-OUTSIDE-THE-ROOT');

    async function get(url: string, headers: Record<string, string> = {}) {
      const res = await h.app.inject({ method: 'GET', url, headers: { ...bearer(alice), ...headers } });
      return {
        status: res.statusCode,
        headers: res.headers,
        body: res.rawPayload,
        json: () => res.json<{ code: string; message: string }>(),
      };
    }

    const dumpUrl = (c: SeededCrash, q = '') => `/v1/crashes/${c.event.crash.id}/dump${q}`;

    t.test('the whole stored dump, byte for byte, with its headers', async (t) => {
      const stored = main.stored ?? Buffer.alloc(0);
      const r = await get(dumpUrl(main));
      t.equal(r.status, 200);
      t.ok(r.body.equals(stored), 'body = the stored file');
      t.equal(r.headers['content-length'], String(stored.length));
      t.equal(r.headers['content-type'], 'application/zstd');
      t.equal(r.headers.etag, `"${main.event.dump.sha256 ?? ''}.zst"`);
      t.equal(r.headers['x-podmortem-sha256'], main.event.dump.sha256);
      t.equal(r.headers['accept-ranges'], 'bytes');
      t.equal(r.headers['content-disposition'], `attachment; filename="${main.event.crash.id}.core.zst"`);
      const notModified = await get(dumpUrl(main), { 'if-none-match': String(r.headers.etag) });
      t.equal(notModified.status, 304);
      t.equal(notModified.body.length, 0);
    });

    t.test('range requests match the stored bytes exactly', async (t) => {
      const stored = main.stored ?? Buffer.alloc(0);
      const size = stored.length;
      const cases: [string, number, number][] = [
        ['bytes=0-99', 0, 99],
        ['bytes=100-', 100, size - 1],
        ['bytes=-500', size - 500, size - 1],
        ['bytes=10-10', 10, 10],
        [`bytes=${size - 7}-${size + 1000}`, size - 7, size - 1],
        [`bytes=-${size + 10}`, 0, size - 1],
      ];
      for (const [range, start, end] of cases) {
        const r = await get(dumpUrl(main), { range });
        t.equal(r.status, 206, `${range} → 206`);
        t.equal(r.headers['content-range'], `bytes ${start}-${end}/${size}`);
        t.equal(r.headers['content-length'], String(end - start + 1));
        t.ok(r.body.equals(stored.subarray(start, end + 1)), `${range}: the exact bytes`);
      }
      for (const range of [`bytes=${size}-`, `bytes=${size + 5}-${size + 10}`, 'bytes=-0']) {
        const r = await get(dumpUrl(main), { range });
        t.equal(r.status, 416, `${range} → 416`);
        t.equal(r.headers['content-range'], `bytes */${size}`);
        t.same(r.json(), {
          statusCode: 416,
          code: 'PM_ERR_RANGE_NOT_SATISFIABLE',
          error: 'Range Not Satisfiable',
          message: `headers/range ${range} is outside the ${size} bytes of the dump`,
        });
      }
      const ignored = await get(dumpUrl(main), { range: 'bytes=0-1,5-6' });
      t.equal(ignored.status, 200, 'several ranges: the whole body');
      t.ok(ignored.body.equals(stored));
      const stale = await get(dumpUrl(main), { range: 'bytes=0-9', 'if-range': '"stale"' });
      t.equal(stale.status, 200, 'If-Range with another ETag: the whole body');
    });

    t.test('?format=raw is the original core, its sha256 and its ranges', async (t) => {
      const raw = main.raw ?? Buffer.alloc(0);
      const r = await get(dumpUrl(main, '?format=raw'));
      t.equal(r.status, 200);
      t.equal(sha256(r.body), main.event.dump.sha256);
      t.equal(r.headers['content-length'], String(raw.length));
      t.equal(r.headers['content-type'], 'application/octet-stream');
      t.equal(r.headers.etag, `"${main.event.dump.sha256 ?? ''}"`);
      for (const [range, start, end] of [
        ['bytes=1000-1999', 1000, 1999],
        ['bytes=-4096', raw.length - 4096, raw.length - 1],
        [`bytes=${raw.length - 1}-`, raw.length - 1, raw.length - 1],
      ] as const) {
        const p = await get(dumpUrl(main, '?format=raw'), { range });
        t.equal(p.status, 206, range);
        t.ok(p.body.equals(raw.subarray(start, end + 1)), `${range}: the exact raw bytes`);
      }
      const tr = await get(dumpUrl(truncated, '?format=raw'));
      t.equal(tr.status, 200, 'a truncated dump decompresses too (its raw length unknown: streamed)');
      t.equal(sha256(tr.body), truncated.event.dump.sha256);
    });

    t.test('no dump, and a dump removed by retention', async (t) => {
      const none = await get(dumpUrl(skipped));
      t.equal(none.status, 404);
      t.equal(none.json().code, 'PM_ERR_NO_DUMP');
      t.equal(
        none.json().message,
        `crash ${skipped.event.crash.id} has no stored dump (dump.status skipped: ${skipped.event.dump.reason ?? ''})`,
      );
      await h.store.delete(dumpRelPath(removed.event));
      for (const q of ['', '?format=raw']) {
        const gone = await get(dumpUrl(removed, q));
        t.equal(gone.status, 410);
        t.equal(gone.json().code, 'PM_ERR_DUMP_GONE');
        t.equal(
          gone.json().message,
          `the dump of crash ${removed.event.crash.id} has been removed from storage (retention)`,
        );
      }
    });

    t.test('traversal attempts in any parameter are rejected', async (t) => {
      const id = main.event.crash.id;
      // Each attempt with the parameter its 400 must name.
      const attempts: [string, string][] = [
        ['/v1/crashes/..%2F..%2Fetc%2Fpasswd/dump', 'params/id'],
        ['/v1/crashes/%2e%2e/dump', 'params/id'],
        ['/v1/crashes/%2E%2E%2F%2E%2E/dump', 'params/id'],
        [`/v1/crashes/${id}%00/dump`, 'params/id'],
        [`/v1/crashes/%2Fetc%2Fpasswd/dump`, 'params/id'],
        [`/v1/crashes/${id}/dump?format=..%2F..%2Fetc%2Fpasswd`, 'querystring/format'],
        [`/v1/crashes/${id}/dump?format=raw&path=%2Fetc%2Fpasswd`, 'querystring/path'],
        ['/v1/namespaces/..%2F../pods/api-0/dumps.tar.gz', 'params/namespace'],
        ['/v1/namespaces/%2e%2e/pods/api-0/dumps.tar.gz', 'params/namespace'],
        ['/v1/namespaces/%2Fetc/pods/api-0/dumps.tar.gz', 'params/namespace'],
        ['/v1/namespaces/team-a%00/pods/api-0/dumps.tar.gz', 'params/namespace'],
        ['/v1/namespaces/team-a/pods/..%2F..%2F..%2Fetc/dumps.tar.gz', 'params/pod'],
        ['/v1/namespaces/team-a/pods/%2e%2e/dumps.tar.gz', 'params/pod'],
        ['/v1/namespaces/team-a/pods/api..0/dumps.tar.gz', 'params/pod'],
        ['/v1/namespaces/team-a/pods/api-0/dumps.tar.gz?container=..', 'querystring/container'],
        ['/v1/namespaces/team-a/pods/api-0/dumps.tar.gz?container=%2Fetc', 'querystring/container'],
        ['/v1/namespaces/team-a/pods/api-0/dumps.tar.gz?uid=..%2F..%2Fetc', 'querystring/uid'],
        ['/v1/namespaces/team-a/pods/api-0/dumps.tar.gz?uid=%00', 'querystring/uid'],
      ];
      // Dot segments (`%2e%2e`) may be resolved by the URL parser before routing: no route then.
      const checkRefusal = (
        t: Test,
        how: string,
        url: string,
        param: string,
        status: number,
        body: string,
      ) => {
        const { code, message } = JSON.parse(body) as { code: string; message: string };
        if (status === 404 && url.includes('%2e%2e')) {
          t.same(
            [status, code],
            [404, 'PM_ERR_ROUTE_NOT_FOUND'],
            `${how}${url}: a dot segment resolved, no route`,
          );
          t.match(message, /^no route GET \/v1\//, `${how}${url}: the message says so`);
          return;
        }
        t.same([status, code], [400, 'PM_ERR_VALIDATION'], `${how}${url} → 400 PM_ERR_VALIDATION`);
        t.equal(message.split(' ')[0], param, `${how}${url}: a 400 naming ${param} (${message})`);
      };
      for (const [url, param] of attempts) {
        const r = await get(url);
        checkRefusal(t, '', url, param, r.status, r.body.toString());
      }
      // The same over a real socket, the path sent exactly as written.
      const address = await h.app.listen({ host: '127.0.0.1', port: 0 });
      t.teardown(() => h.app.server.close());
      const { port } = new URL(address);
      for (const [path, param] of attempts) {
        const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = httpRequest({ host: '127.0.0.1', port, path, headers: bearer(alice) }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
            );
          });
          req.on('error', reject);
          req.end();
        });
        checkRefusal(t, 'over HTTP ', path, param, r.status, r.body);
      }
      for (const url of [
        '/v1/crashes/../../etc/passwd/dump',
        '/v1/namespaces/team-a/pods/api-0/../../../../etc',
      ]) {
        const r = await get(url);
        t.equal(r.status, 404, `${url}: no route`);
        t.notMatch(r.body.toString(), 'root:');
      }
    });

    async function seedEvent(c: SeededCrash, mutate: (e: CrashEvent) => void): Promise<SeededCrash> {
      mutate(c.event);
      await h.index.add([c.event]);
      return c;
    }

    t.test('dump paths in events and symlinks inside the root cannot lead outside', async (t) => {
      // An event whose dump.path names another tenant's file, or climbs out of the root.
      const pointing = await seedEvent(makeCrash({ namespace: 'team-a', pod: 'evil-0', at: now }), (e) => {
        e.dump.path = dumpRelPath(teamB.event);
      });
      const climbing = await seedEvent(makeCrash({ namespace: 'team-a', pod: 'evil-1', at: now }), (e) => {
        e.dump.path = '../../../../etc/passwd';
      });
      const attacks = [pointing, climbing];
      let linkedPodUid: string | undefined;
      if (name === 'fs') {
        // A stored dump that is a symlink to a file outside the root.
        const linked = makeCrash({ namespace: 'team-a', pod: 'evil-2', at: now });
        const linkPath = h.storage.path(dumpRelPath(linked.event));
        mkdirSync(dirname(linkPath), { recursive: true });
        symlinkSync(join(outside, 'secret'), linkPath);
        await h.index.add([linked.event]);
        // A pod folder that is a symlink to a folder outside the root holding a crash.
        const dirLinked = makeCrash({ namespace: 'team-a', pod: 'evil-3', at: now });
        const fakeDir = join(outside, 'pod', dirLinked.event.kubernetes?.container.name ?? 'api');
        mkdirSync(fakeDir, { recursive: true });
        writeFileSync(join(fakeDir, `${dirLinked.event.crash.id}.core.zst`), dirLinked.stored ?? '');
        writeFileSync(join(fakeDir, `${dirLinked.event.crash.id}.json`), JSON.stringify(dirLinked.event));
        const podDir = h.storage.path(`team-a/${dirLinked.event.kubernetes?.pod.uid ?? ''}`);
        mkdirSync(dirname(podDir), { recursive: true });
        symlinkSync(join(outside, 'pod'), podDir);
        await h.index.add([dirLinked.event]);
        attacks.push(linked, dirLinked);
        linkedPodUid = dirLinked.event.kubernetes?.pod.uid ?? '';
      }

      for (const c of attacks) {
        for (const q of ['', '?format=raw']) {
          const r = await get(dumpUrl(c, q));
          t.equal(r.status, 404, `${c.event.kubernetes?.pod.name ?? ''}${q} → 404`);
          t.equal(r.json().code, 'PM_ERR_DUMP_UNREADABLE');
          t.equal(
            r.json().message,
            `the dump of crash ${c.event.crash.id} cannot be served from the storage root`,
            'the crash named, nothing of the path',
          );
          t.notMatch(r.body.toString('latin1'), 'TOP-SECRET');
          t.notMatch(r.body.toString('latin1'), 'root:');
        }
      }
      if (linkedPodUid !== undefined) {
        const archive = await get(`/v1/namespaces/team-a/pods/evil-3/dumps.tar.gz?uid=${linkedPodUid}`);
        t.equal(archive.status, 404, 'an archive of a symlinked pod folder holds nothing: 404');
        t.equal(archive.json().message, 'no crashes of pod team-a/evil-3 found');
      }
      t.ok(
        h.logs.lines.some((l) => l.msg === 'dump.path off the storage layout'),
        'the refusal is logged',
      );
    });

    if (name === 'fs')
      t.test(
        'a link or a misfiled copy in team-a never hands team-b’s files to a team-a caller',
        async (t) => {
          const bUid = teamB.event.kubernetes?.pod.uid ?? '';
          const bDir = h.storage.path(`team-b/${bUid}`);
          // The audit's attack: team-a/<uid> → ../team-b/<uid>, then team-a's archive of team-b's pod name.
          symlinkSync(`../team-b/${bUid}`, h.storage.path(`team-a/${bUid}`));
          // The same files copied (not linked) under a team-a folder: the stored events say team-b.
          const copyUid = 'aaaaaaaa-2222-4000-8000-0000000000cc';
          const copied = h.storage.path(`team-a/${copyUid}`);
          cpSync(bDir, copied, { recursive: true });
          // A team-a crash whose core file is a link to team-b's core, inside the root.
          const linked = makeCrash({ namespace: 'team-a', pod: 'evil-4', at: now });
          const linkPath = h.storage.path(dumpRelPath(linked.event));
          mkdirSync(dirname(linkPath), { recursive: true });
          symlinkSync(h.storage.path(dumpRelPath(teamB.event)), linkPath);
          await h.index.add([linked.event]);
          t.teardown(() => {
            rmSync(h.storage.path(`team-a/${bUid}`), { force: true });
            rmSync(copied, { recursive: true, force: true });
          });

          const secret = (teamB.stored ?? Buffer.alloc(0)).subarray(0, 64).toString('latin1');
          for (const q of [`?uid=${bUid}`, `?uid=${copyUid}`, '']) {
            const r = await get(`/v1/namespaces/team-a/pods/web-0/dumps.tar.gz${q}`);
            t.equal(r.status, 404, `team-a archive of web-0${q}: 404`);
            t.equal(r.json().code, 'PM_ERR_POD_NOT_FOUND');
            t.notMatch(r.body.toString('latin1'), secret, 'none of team-b’s bytes');
          }
          for (const q of ['', '?format=raw']) {
            const r = await get(dumpUrl(linked, q));
            t.equal(r.status, 404, `a core linked to another namespace’s${q}: 404`);
            t.equal(r.json().code, 'PM_ERR_DUMP_UNREADABLE');
          }
          const bob = addUser(h.kube, 'bob-b', ['team-b']);
          const own = await h.app.inject({
            url: `/v1/namespaces/team-b/pods/web-0/dumps.tar.gz?uid=${bUid}`,
            headers: bearer(bob),
          });
          t.equal(own.statusCode, 200, 'team-b still gets its own archive');
          t.same(
            [...(await untar(own.rawPayload)).keys()].sort(),
            [...expectedEntries([teamB]).keys()].sort(),
          );
        },
      );

    if (name === 'fs')
      t.test('a FIFO in place of a dump is refused at once and never holds the file threads', async (t) => {
        const fifo = await seedEvent(
          makeCrash({ namespace: 'team-a', pod: 'fifo-0', at: now }),
          () => undefined,
        );
        const path = h.storage.path(dumpRelPath(fifo.event));
        mkdirSync(dirname(path), { recursive: true });
        execFileSync('mkfifo', [path]);
        t.teardown(() => unlinkSync(path));
        // More requests than Node's file thread pool has threads (4): a blocking open on each would
        // leave none for the readiness check after them.
        const answered = async (p: Promise<{ status: number }>) =>
          Promise.race([
            p,
            new Promise<'hang'>((resolve) => setTimeout(() => resolve('hang'), 30_000).unref()),
          ]);
        const downloads = await Promise.all(
          Array.from({ length: 12 }, (_, i) =>
            answered(get(dumpUrl(fifo, i % 2 === 0 ? '' : '?format=raw'))),
          ),
        );
        t.same(
          downloads.map((r) => (r === 'hang' ? 'hang' : r.status)),
          Array.from({ length: 12 }, () => 404),
          'every download answered 404',
        );
        const archive = await answered(get(`/v1/namespaces/team-a/pods/fifo-0/dumps.tar.gz`));
        t.not(archive, 'hang', 'the archive answered');
        const ready = await answered(h.app.inject('/readyz').then((r) => ({ status: r.statusCode })));
        t.same(ready === 'hang' ? 'hang' : ready.status, 200, '/readyz answers after them');
      });

    async function untar(body: Buffer): Promise<Map<string, Buffer>> {
      const files = new Map<string, Buffer>();
      const extract = tar.extract();
      Readable.from([body]).pipe(createGunzip()).pipe(extract);
      for await (const entry of extract) {
        const chunks: Buffer[] = [];
        for await (const chunk of entry) chunks.push(chunk as Buffer);
        files.set(entry.header.name, Buffer.concat(chunks));
      }
      return files;
    }

    function expectedEntries(crashes: SeededCrash[]): Map<string, Buffer> {
      const m = new Map<string, Buffer>();
      for (const c of crashes) {
        const k8s = c.event.kubernetes;
        if (!k8s) continue;
        const base = `${k8s.pod.uid}/${k8s.container.name}/${c.event.crash.id}`;
        m.set(`${base}.json`, Buffer.from(JSON.stringify(c.event)));
        if (c.stored) m.set(`${base}.core.zst`, c.stored);
      }
      return m;
    }

    t.test('tar.gz: exactly the pod’s dumps and events', async (t) => {
      const r = await get('/v1/namespaces/team-a/pods/api-0/dumps.tar.gz');
      t.equal(r.status, 200);
      t.equal(r.headers['content-type'], 'application/gzip');
      t.match(String(r.headers['content-disposition']), 'team-a_api-0_dumps.tar.gz');
      const files = await untar(r.body);
      const expected = expectedEntries([main, second, sidecar, skipped]);
      t.same([...files.keys()].sort(), [...expected.keys()].sort(), 'the entries of the current incarnation');
      for (const [name, content] of expected)
        t.ok(files.get(name)?.equals(content), `${name}: the stored bytes`);
      t.ok(
        [...files.keys()].every((n) => !n.startsWith(otherUid)),
        'nothing of another pod of the namespace',
      );

      const one = await untar(
        (await get('/v1/namespaces/team-a/pods/api-0/dumps.tar.gz?container=sidecar')).body,
      );
      t.same([...one.keys()].sort(), [...expectedEntries([sidecar]).keys()].sort(), 'one container');
    });

    t.test('tar.gz of a deleted pod by its uid, found in storage although the index forgot it', async (t) => {
      const r = await get(`/v1/namespaces/team-a/pods/api-0/dumps.tar.gz?uid=${oldUid}`);
      t.equal(r.status, 200);
      const files = await untar(r.body);
      const expected = expectedEntries([old1, old2]);
      t.same([...files.keys()].sort(), [...expected.keys()].sort());
      for (const [name, content] of expected) t.ok(files.get(name)?.equals(content), name);
      const wrongName = await get(`/v1/namespaces/team-a/pods/api-1/dumps.tar.gz?uid=${oldUid}`);
      t.equal(wrongName.status, 404, 'a uid of another pod name is not that pod’s');
      t.same(
        [wrongName.json().code, wrongName.json().message],
        ['PM_ERR_POD_NOT_FOUND', 'no crashes of pod team-a/api-1 found'],
      );
      const unknown = await get(
        '/v1/namespaces/team-a/pods/api-0/dumps.tar.gz?uid=aaaaaaaa-2222-4000-8000-00000000ffff',
      );
      t.equal(unknown.status, 404);
      t.same(
        [unknown.json().code, unknown.json().message],
        ['PM_ERR_POD_NOT_FOUND', 'no crashes of pod team-a/api-0 found'],
      );
    });

    t.test('every download leaves an audit record and counts', async (t) => {
      const stored = main.stored ?? Buffer.alloc(0);
      const before = h.logs.lines.length;
      const downloads = async (kind: string) => {
        const text = await h.telemetry.registry.getSingleMetricAsString('podmortem_api_downloads_total');
        return metricValue(text, 'podmortem_api_downloads_total', {
          kind,
          namespace: 'team-a',
          outcome: 'complete',
        });
      };
      const dumpsBefore = await downloads('dump');
      const archivesBefore = await downloads('archive');
      await get(dumpUrl(main));
      await get(dumpUrl(main), { range: 'bytes=0-99' });
      await get('/v1/namespaces/team-a/pods/api-0/dumps.tar.gz');
      const audits = h.logs.lines.slice(before).filter((l) => l.audit === true);
      t.equal(audits.length, 3);
      t.match(audits[0], {
        audit: true,
        action: 'download.dump',
        user: 'alice',
        crash_id: main.event.crash.id,
        namespace: 'team-a',
        bytes: stored.length,
        complete: true,
        status: 200,
      });
      t.ok(!Number.isNaN(Date.parse(String(audits[0]?.at))), 'with the time');
      t.match(audits[1], { bytes: 100, range: 'bytes=0-99', status: 206 });
      t.match(audits[2], {
        action: 'download.archive',
        user: 'alice',
        pod: 'api-0',
        pod_uids: [uid],
        files: 4,
      });
      t.ok(Number(audits[2]?.bytes) > 0);
      t.equal((await downloads('dump')) - dumpsBefore, 2, 'the whole dump and the range counted complete');
      t.equal((await downloads('archive')) - archivesBefore, 1, 'the archive counted complete');
    });
  });
