import { mkdtemp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { moduleKey } from '@podmortem/contract';
import { MemoryStore, readBytes } from '@podmortem/contract/store';
import { newCrashId } from '@podmortem/contract/crash-id';
import { moduleCacheFiles, type SpoolMeta, type SpoolModule } from '../spool-entry.ts';
import { buildCrashEvent } from './crash-event.ts';
import { ModuleWriter } from './module-writer.ts';
import { createTelemetry } from './telemetry.ts';

const A = 'aa'.repeat(20);
const B = 'bb'.repeat(20);

function meta(modules: SpoolModule[]): SpoolMeta {
  return {
    version: 1,
    crashId: newCrashId(),
    timestamp: new Date().toISOString(),
    node: 'n1',
    kernel: {
      pid: 42, nsPid: 42, tid: 42, nsTid: 42, signal: 11, time: 0, coreLimit: -1, comm: 'app',
      exePath: '/app (deleted)', hostname: 'h', uid: 0, gid: 0,
    }, // prettier-ignore
    dump: { status: 'skipped', sizeBytes: 0, storedBytes: 0, compression: 'zstd', limitBytes: 1 },
    modules,
    handlerMs: 1,
    collectorVersion: '0.1.0',
  };
}
const ranges = [{ start: '0x1000', end: '0x3000' }];

async function setup(t: { teardown(fn: () => unknown): void }) {
  const spoolDir = await mkdtemp(join(tmpdir(), 'pm-modwriter-'));
  t.teardown(() => rm(spoolDir, { recursive: true, force: true }));
  await mkdir(join(spoolDir, 'modules'));
  const store = new MemoryStore();
  const telemetry = createTelemetry(async () => ({ entries: 0, bytes: 0 }));
  const writer = new ModuleWriter({ store, minFreeBytes: 0, spoolDir, telemetry });
  const deliver = (m: SpoolMeta) =>
    writer.storeModules(m, buildCrashEvent({ meta: m, owner: { kind: 'host' }, nodeName: 'n1' }));
  return { spoolDir, store, telemetry, writer, deliver };
}

t.test('stored once per build id; later crashes find it in the store', async (t) => {
  const { spoolDir, store, telemetry, deliver } = await setup(t);
  await writeFile(moduleCacheFiles(spoolDir, A).bytes, 'the executable');
  const first = await deliver(
    meta([
      { path: '/app', deleted: true, ranges, buildId: A, sizeBytes: 14, capture: 'copied' },
      { path: '/lib/x.so', ranges, capture: 'skipped', skipped: 'no-build-id', reason: 'none' },
    ]),
  );
  t.same(first.analysis?.modules, [
    { path: '/app', build_id: A, deleted: true, start: '0x1000', end: '0x3000', captured: true },
    { path: '/lib/x.so', start: '0x1000', end: '0x3000', skipped: 'no-build-id', skip_reason: 'none' },
  ]);
  t.match(first.process, { executable: '/app', executable_deleted: true });
  t.equal((await readBytes(store, moduleKey(A)))?.toString(), 'the executable');
  t.same(await readdir(join(spoolDir, 'modules')), [`${A}.stored`], 'bytes gone, marker left');

  const second = await deliver(meta([{ path: '/app', ranges, buildId: A, capture: 'cached' }]));
  t.equal(second.analysis?.modules?.[0]?.captured, true);
  t.equal(
    (await telemetry.registry.getSingleMetric('podmortem_collector_modules_stored_total')?.get())?.values[0]
      ?.value,
    1,
  );
  const skipped = await telemetry.registry
    .getSingleMetric('podmortem_collector_modules_skipped_total')
    ?.get();
  t.same(
    skipped?.values.map((v) => [v.labels.reason, v.value]),
    [['no-build-id', 1]],
  );
});

t.test('already in the store from another node: not written again, marked on this node', async (t) => {
  const { spoolDir, store, telemetry, deliver } = await setup(t);
  await store.putBytes(moduleKey(B), Buffer.from('from node 2'));
  await writeFile(moduleCacheFiles(spoolDir, B).bytes, 'from node 1');
  const event = await deliver(meta([{ path: '/b', ranges, buildId: B, capture: 'copied' }]));
  t.equal(event.analysis?.modules?.[0]?.captured, true);
  t.equal((await readBytes(store, moduleKey(B)))?.toString(), 'from node 2');
  t.same(await readdir(join(spoolDir, 'modules')), [`${B}.stored`]);
  t.equal(
    (await telemetry.registry.getSingleMetric('podmortem_collector_modules_stored_total')?.get())?.values[0]
      ?.value ?? 0,
    0,
  );
});

t.test('skipped by the handler, or lost from the cache: not captured, and why', async (t) => {
  const { deliver } = await setup(t);
  const event = await deliver(
    meta([
      { path: '/big', ranges, buildId: A, capture: 'skipped', skipped: 'too-large', reason: '9 bytes' },
      { path: '/lost', ranges, buildId: B, capture: 'copied' },
    ]),
  );
  t.match(event.analysis?.modules, [
    { path: '/big', captured: false, skipped: 'too-large', skip_reason: '9 bytes' },
    { path: '/lost', captured: false, skipped: 'not-captured' },
  ]);
});

t.test('no room in the store beside the dump: not captured, kept in the node cache', async (t) => {
  const { spoolDir } = await setup(t);
  await writeFile(moduleCacheFiles(spoolDir, A).bytes, 'x'.repeat(100));
  const small = new MemoryStore({ capacityBytes: 150 });
  const w = new ModuleWriter({
    store: small,
    minFreeBytes: 0,
    spoolDir,
    telemetry: createTelemetry(async () => ({ entries: 0, bytes: 0 })),
  });
  // A dump of 60 bytes to come: 100 more bytes of module would leave it no room.
  const m = { ...meta([{ path: '/app', ranges, buildId: A, capture: 'copied' }]) };
  m.dump = { ...m.dump, status: 'stored', storedBytes: 60, sizeBytes: 60 };
  const event = await w.storeModules(
    m,
    buildCrashEvent({ meta: m, owner: { kind: 'host' }, nodeName: 'n1' }),
  );
  t.match(event.analysis?.modules?.[0], { captured: false, skipped: 'store-full' });
  await t.rejects(small.stat(moduleKey(A)), { code: 'PM_ERR_STORE_NOT_FOUND' });
  t.same(await readdir(join(spoolDir, 'modules')), [A], 'the bytes wait for a later crash');
});
