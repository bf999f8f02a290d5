import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { newCrashId, validateCrashEvent, type CrashEvent } from '@podmortem/contract';
import { createLogger } from '@podmortem/contract/runtime';
import { FsStore } from '@podmortem/contract/store';
import type { CaptureMarks } from './capture-policy.ts';
import { buildCrashEvent } from './crash-event.ts';
import { Delivery, type PodSource } from './delivery.ts';
import { AgentError } from './errors.ts';
import type { PodInfo, PodLookup } from './pod-info.ts';
import type { Sink } from './sink.ts';
import { Spool, type DeliveryState } from './spool.ts';
import { ModuleWriter } from './module-writer.ts';
import { StorageWriter } from './storage-writer.ts';
import { createTelemetry, type Telemetry } from './telemetry.ts';
import { writeSpoolMeta, type SpoolMeta } from '../spool-entry.ts';

// Delivery over a real spool folder and a real storage root, with in-process sinks and pods.
// On-disk names are spelled out here on purpose: they are the format other versions read.

const logger = createLogger('test', { level: 'silent' });
const CONTAINER_ID = 'c4a1f3e9b2d84f0e9a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f';
const POD_UID = '5f0c8a52-8d7e-4c11-9f70-3f2b6c7d8e01';
const cgroup = `0::/kubepods.slice/kubepods-pod${POD_UID.replaceAll('-', '_')}.slice/cri-containerd-${CONTAINER_ID}.scope\n`;
const CORE = Buffer.from('not an ELF core, kept as sent\n'.repeat(50));

/** A sink that records what it is given; `failures` first attempts fail (retriably). */
class RecordingSink implements Sink {
  readonly name: string;
  readonly events: CrashEvent[] = [];
  attempts = 0;
  private failures: number;
  private readonly onFailure: (attempt: number) => void;

  constructor(name: string, options: { failures?: number; onFailure?: (attempt: number) => void } = {}) {
    this.name = name;
    this.failures = options.failures ?? 0;
    this.onFailure = options.onFailure ?? (() => undefined);
  }

  /** Acknowledges from now on. */
  heal(): void {
    this.failures = 0;
  }

  async start(): Promise<void> {}
  async shutdown(): Promise<void> {}

  async announce(event: CrashEvent): Promise<void> {
    this.attempts++;
    if (this.failures > 0) {
      this.failures--;
      this.onFailure(this.attempts);
      throw new AgentError('PM_ERR_KAFKA', `${this.name} is down`);
    }
    this.events.push(event);
  }
}

/**
 * The pod of the crashed container, known to the resolver only after `refreshesNeeded` refreshes;
 * with `capture`, its podmortem.io/capture marks, and its namespace's from `namespace`.
 */
function pods(
  refreshesNeeded = 0,
  options: { capture?: CaptureMarks; namespace?: (name: string) => Promise<CaptureMarks | undefined> } = {},
): PodSource & { refreshes: number; namespaceReads: string[] } {
  const pod: PodInfo = {
    namespace: 'shop',
    name: 'api-0',
    uid: POD_UID,
    labels: {},
    containers: new Map([[CONTAINER_ID, { name: 'api', runtime: 'containerd' }]]),
    specContainers: [{ name: 'api' }],
  };
  if (options.capture) pod.capture = options.capture;
  const source = {
    refreshes: 0,
    namespaceReads: [] as string[],
    lookup: (): PodLookup =>
      source.refreshes >= refreshesNeeded
        ? { kind: 'found', pod, container: { name: 'api', runtime: 'containerd' } }
        : { kind: 'unknown' },
    refresh: async () => {
      source.refreshes++;
    },
    namespaceCapture: async (name: string) => {
      source.namespaceReads.push(name);
      return options.namespace ? options.namespace(name) : undefined;
    },
  };
  return source;
}

function spoolMeta(crashId: string, overrides: Partial<SpoolMeta> = {}): SpoolMeta {
  return {
    version: 1,
    crashId,
    timestamp: new Date().toISOString(),
    node: 'node-a',
    kernel: {
      pid: 4242, nsPid: 7, tid: 4242, nsTid: 7, signal: 11, time: Math.floor(Date.now() / 1000),
      coreLimit: -1, comm: 'api', exePath: '/usr/local/bin/api', hostname: 'api-0', uid: 0, gid: 0,
    }, // prettier-ignore
    proc: {
      cgroup,
      cmdline: ['/usr/local/bin/api'],
      comm: 'api',
      exe: '/usr/local/bin/api',
      nsPids: [4242, 7],
    },
    dump: {
      status: 'stored',
      sizeBytes: CORE.length,
      storedBytes: CORE.length,
      compression: 'none',
      limitBytes: 2 ** 31,
    },
    handlerMs: 3,
    collectorVersion: '0.1.0',
    ...overrides,
  };
}

interface Setup {
  spoolDir: string;
  storageRoot: string;
  spool: Spool;
  telemetry: Telemetry;
  otlp: RecordingSink;
  kafka: RecordingSink;
  stores: CrashEvent[];
  delivery: Delivery;
  /** Spools an entry as the handler does: the core, then the meta. */
  entry(meta?: Partial<SpoolMeta>, options?: { core?: boolean }): Promise<string>;
  /** Files left in the spool folder. */
  left(): string[];
}

function setup(
  t: { teardown(fn: () => unknown): void },
  options: { otlp?: RecordingSink; kafka?: RecordingSink; pods?: PodSource; captureDefault?: boolean } = {},
): Setup {
  const dir = mkdtempSync(join(tmpdir(), 'pm-delivery-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const spoolDir = join(dir, 'spool');
  const storageRoot = join(dir, 'storage');
  const spool = new Spool(spoolDir);
  const telemetry = createTelemetry(() => spool.usage());
  const otlp = options.otlp ?? new RecordingSink('otlp');
  const kafka = options.kafka ?? new RecordingSink('kafka');
  const store = new FsStore({ root: storageRoot });
  const writer = new StorageWriter({ store, minFreeBytes: 0 });
  const stores: CrashEvent[] = [];
  const delivery = new Delivery({
    spool,
    nodeName: 'node-a',
    storage: {
      store: async (draft, core) => {
        stores.push(draft);
        return writer.store(draft, core);
      },
    },
    modules: new ModuleWriter({ store, minFreeBytes: 0, spoolDir, telemetry }),
    sinks: [otlp, kafka],
    pods: options.pods ?? pods(),
    telemetry,
    logger,
    retryInitialMs: 1,
    retryMaxMs: 5,
    podWaitMs: 60_000,
    captureDefault: options.captureDefault ?? true,
  });
  return {
    spoolDir,
    storageRoot,
    spool,
    telemetry,
    otlp,
    kafka,
    stores,
    delivery,
    async entry(overrides = {}, entryOptions = {}) {
      await spool.create();
      const meta = spoolMeta(newCrashId(), overrides);
      if (entryOptions.core !== false) writeFileSync(join(spoolDir, `${meta.crashId}.core.zst`), CORE);
      await writeSpoolMeta(spoolDir, meta);
      return meta.crashId;
    },
    left: () => readdirSync(spoolDir),
  };
}

const deliver = (s: Setup, id: string) => s.delivery.deliver(id, new AbortController().signal);

/** The event prepare makes of an entry, marked so that a test can tell it was not made again. */
function preparedEvent(id: string): CrashEvent {
  const event = buildCrashEvent({ meta: spoolMeta(id), owner: { kind: 'host' }, nodeName: 'node-a' });
  return { ...event, process: { ...event.process, name: 'from-the-saved-state' } };
}

function storedEvent(s: Setup, event: CrashEvent): unknown {
  const path = join(s.storageRoot, '_host', 'node-a', '_process', `${event.crash.id}.json`);
  return JSON.parse(readFileSync(path, 'utf8'));
}

t.test('an entry is stored, announced to every sink once, then removed with its state', async (t) => {
  const s = setup(t);
  const id = await s.entry();
  t.equal(await deliver(s, id), 'delivered');
  t.equal(s.otlp.events.length, 1);
  t.equal(s.kafka.events.length, 1);
  const [event] = s.otlp.events;
  t.same(s.kafka.events[0], event, 'both sinks got the same event');
  t.ok(event && validateCrashEvent(event).ok);
  t.match(event, {
    crash: { id },
    kubernetes: { namespace: 'shop', pod: { name: 'api-0', uid: POD_UID }, container: { name: 'api' } },
    dump: { status: 'stored', path: `shop/${POD_UID}/api/${id}.core.zst` },
  });
  t.same(s.left(), [], 'meta, core and the agent state are gone');
  t.equal(await deliver(s, id), 'gone', 'delivering it again finds nothing');
});

t.test('a pod not known yet: prepare is retried until the resolver knows it', async (t) => {
  const source = pods(3);
  const s = setup(t, { pods: source });
  const id = await s.entry();
  t.equal(await deliver(s, id), 'delivered');
  t.equal(source.refreshes, 3);
  t.match(s.otlp.events[0], { kubernetes: { pod: { name: 'api-0' } } });
  t.same(
    (await s.telemetry.deliveryFailures.get()).values.map((v) => [v.labels, v.value]),
    [[{ step: 'prepare', code: 'PM_ERR_POD_PENDING' }, 2]],
  );
});

t.test('resume after prepare: the saved event is stored and announced, not made again', async (t) => {
  const s = setup(t);
  const id = await s.entry({ proc: undefined, procError: 'gone' });
  const event = preparedEvent(id);
  await s.spool.entry(id).saveState({ event, announced: {} });
  t.equal(await deliver(s, id), 'delivered');
  t.equal(s.stores.length, 1);
  t.equal(s.stores[0]?.process.name, 'from-the-saved-state');
  t.match(storedEvent(s, event), { process: { name: 'from-the-saved-state' } });
  t.equal(s.otlp.events[0]?.process.name, 'from-the-saved-state');
  t.equal(s.kafka.events[0]?.process.name, 'from-the-saved-state');
});

t.test('resume after storage: not stored again, announced to every sink', async (t) => {
  const s = setup(t);
  const id = await s.entry();
  const event = preparedEvent(id);
  await s.spool.entry(id).saveState({ event, stored: true, announced: {} });
  t.equal(await deliver(s, id), 'delivered');
  t.same(s.stores, [], 'storage was not called');
  t.same(s.otlp.events, [event]);
  t.same(s.kafka.events, [event]);
  t.same(s.left(), []);
});

t.test('resume after one sink acknowledged: only the others are announced to', async (t) => {
  const s = setup(t);
  const id = await s.entry();
  const event = preparedEvent(id);
  await s.spool.entry(id).saveState({ event, stored: true, announced: { kafka: true } });
  t.equal(await deliver(s, id), 'delivered');
  t.same(s.otlp.events, [event]);
  t.equal(s.kafka.attempts, 0, 'kafka had acknowledged it');
});

t.test('resume from the state file of the agent before sinks (otlp/kafka fields)', async (t) => {
  const cases: [Record<string, boolean>, DeliveryState['announced'], { otlp: number; kafka: number }][] = [
    [{ otlp: true }, { otlp: true }, { otlp: 0, kafka: 1 }],
    [{ kafka: true }, { kafka: true }, { otlp: 1, kafka: 0 }],
    [
      { otlp: true, kafka: true },
      { otlp: true, kafka: true },
      { otlp: 0, kafka: 0 },
    ],
    [{ otlp: false, kafka: false }, {}, { otlp: 1, kafka: 1 }],
  ];
  for (const [saved, announced, expected] of cases) {
    const s = setup(t);
    const id = await s.entry();
    const event = preparedEvent(id);
    writeFileSync(join(s.spoolDir, `${id}.agent.json`), JSON.stringify({ event, stored: true, ...saved }));
    t.same(await s.spool.entry(id).readState(), { event, stored: true, announced });
    t.equal(await deliver(s, id), 'delivered', JSON.stringify(saved));
    t.same({ otlp: s.otlp.attempts, kafka: s.kafka.attempts }, expected, JSON.stringify(saved));
    t.same(s.stores, [], 'not stored again');
    t.same(s.left(), []);
  }
});

t.test('an unreadable agent state starts the delivery over', async (t) => {
  const s = setup(t);
  const id = await s.entry();
  writeFileSync(join(s.spoolDir, `${id}.agent.json`), '{"event": {"cut sh');
  t.equal(await deliver(s, id), 'delivered');
  t.equal(s.stores.length, 1);
  t.equal(s.otlp.events.length, 1);
});

t.test('a malformed meta is moved to rejected/ with its reason, and counted', async (t) => {
  for (const [what, meta, message] of [
    ['not JSON', () => '{"version": 1, "cr', /meta of \S+ is not JSON/],
    ['wrong version', (id: string) => JSON.stringify({ ...spoolMeta(id), version: 2 }), /version 2 is not 1/],
    ['another crash', () => JSON.stringify(spoolMeta(newCrashId())), /crashId "\S+" is not the file's/],
  ] as const) {
    const s = setup(t);
    const id = await s.entry();
    const body = meta(id);
    writeFileSync(join(s.spoolDir, `${id}.meta.json`), body);
    await s.spool.entry(id).saveState({ announced: {} });
    t.equal(await deliver(s, id), 'rejected', what);
    t.same(s.left(), ['rejected'], 'nothing of the entry is left in the spool');
    const rejected = join(s.spoolDir, 'rejected');
    t.same(readdirSync(rejected).sort(), [
      `${id}.agent.json`,
      `${id}.core.zst`,
      `${id}.meta.json`,
      `${id}.reason.json`,
    ]);
    t.equal(readFileSync(join(rejected, `${id}.meta.json`), 'utf8'), body, 'the meta as it was');
    const reason = JSON.parse(readFileSync(join(rejected, `${id}.reason.json`), 'utf8')) as Record<
      string,
      string
    >;
    t.equal(reason.code, 'PM_ERR_SPOOL_ENTRY_INVALID');
    t.match(reason.message, message);
    t.ok(!Number.isNaN(Date.parse(reason.at ?? '')), 'when');
    t.same(
      (await s.telemetry.rejected.get()).values.map((v) => [v.labels, v.value]),
      [[{ code: 'PM_ERR_SPOOL_ENTRY_INVALID' }, 1]],
    );
    t.equal(s.stores.length + s.otlp.attempts + s.kafka.attempts, 0, 'neither stored nor announced');
  }
});

t.test('a spooled core that is missing: the event is stored and announced with dump failed', async (t) => {
  const s = setup(t);
  const id = await s.entry({}, { core: false });
  t.equal(await deliver(s, id), 'delivered');
  const [event] = s.kafka.events;
  t.match(event?.dump, { status: 'failed', reason: /the spooled core is missing/ });
  t.equal(event?.dump.path, undefined, 'no dump stored');
  t.same(s.otlp.events, [event]);
  t.same(s.left(), []);
});

t.test('a failing sink is retried until it acknowledges; the others are announced to once', async (t) => {
  const s = setup(t, { kafka: new RecordingSink('kafka', { failures: 3 }) });
  const id = await s.entry();
  t.equal(await deliver(s, id), 'delivered');
  t.equal(s.kafka.attempts, 4);
  t.equal(s.kafka.events.length, 1);
  t.equal(s.otlp.attempts, 1);
  const failures = (await s.telemetry.deliveryFailures.get()).values;
  t.same(
    failures.map((v) => [v.labels, v.value]),
    [[{ step: 'kafka', code: 'PM_ERR_KAFKA' }, 3]],
  );
});

t.test('stopped by the signal: the entry stays, with what was done saved, and resumes', async (t) => {
  const stop = new AbortController();
  const kafka = new RecordingSink('kafka', {
    failures: Infinity,
    onFailure: (attempt) => {
      if (attempt === 2) stop.abort();
    },
  });
  const s = setup(t, { kafka });
  const id = await s.entry();
  await t.rejects(s.delivery.deliver(id, stop.signal));
  t.same(s.left().sort(), [`${id}.agent.json`, `${id}.core.zst`, `${id}.meta.json`]);
  const state: DeliveryState = await s.spool.entry(id).readState();
  t.match(state, { stored: true, announced: { otlp: true } });
  t.notOk(state.announced.kafka, 'kafka never acknowledged');
  t.notOk(existsSync(join(s.spoolDir, 'rejected')), 'not rejected');

  // The next delivery (a later sweep, or a restarted agent) finishes it with kafka alone.
  kafka.heal();
  t.equal(await deliver(s, id), 'delivered');
  t.equal(s.stores.length, 1, 'stored once');
  t.equal(s.otlp.attempts, 1, 'announced to otlp once');
  t.equal(s.kafka.events.length, 1);
  t.same(s.left(), []);
});

// The test's core is no ELF file: the reason says so after why the dump was not kept.
const NOT_ELF = 'core notes unreadable: not an ELF core: the file starts with 6e6f7420, not 7f454c46';

/** Every file under the storage root, relative. */
function storedFiles(s: Setup): string[] {
  return readdirSync(s.storageRoot, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.includes('.'))
    .sort();
}

t.test(
  'a pod asking for no capture: its event says skipped, its core is not stored, the entry goes',
  async (t) => {
    const source = pods(0, { capture: { annotation: 'false' } });
    const s = setup(t, { pods: source });
    const id = await s.entry();
    t.equal(await deliver(s, id), 'delivered');
    const [event] = s.kafka.events;
    t.same(event?.dump, {
      status: 'skipped',
      reason: `capture disabled by pod annotation podmortem.io/capture=false; ${NOT_ELF}`,
      size_bytes: CORE.length,
      limit_bytes: 2 ** 31,
    });
    t.same(s.otlp.events, [event]);
    t.same(storedFiles(s), [`shop/${POD_UID}/api/${id}.json`], 'the event alone is in the store');
    t.same(JSON.parse(readFileSync(join(s.storageRoot, `shop/${POD_UID}/api/${id}.json`), 'utf8')), event);
    t.same(source.namespaceReads, [], 'the pod decided: its namespace was not read');
    t.same(s.left(), [], 'the spooled core is gone with the entry');
    t.same(
      (await s.telemetry.crashes.get()).values.map((v) => [v.labels, v.value]),
      [[{ namespace: 'shop', signal: 'SIGSEGV', dump_status: 'skipped' }, 1]],
    );
  },
);

t.test('a namespace asking for no capture, read again while the API cannot answer', async (t) => {
  let failures = 2;
  const source = pods(0, {
    namespace: async () => {
      if (failures-- > 0) throw new AgentError('PM_ERR_KUBE_UNAVAILABLE', 'reading namespace shop: down');
      return { label: 'false' };
    },
  });
  const s = setup(t, { pods: source });
  const id = await s.entry();
  t.equal(await deliver(s, id), 'delivered');
  t.same(source.namespaceReads, ['shop', 'shop', 'shop']);
  t.same(
    (await s.telemetry.deliveryFailures.get()).values.map((v) => [v.labels, v.value]),
    [[{ step: 'prepare', code: 'PM_ERR_KUBE_UNAVAILABLE' }, 2]],
  );
  t.same(s.kafka.events[0]?.dump, {
    status: 'skipped',
    reason: `capture disabled by namespace label podmortem.io/capture=false; ${NOT_ELF}`,
    size_bytes: CORE.length,
    limit_bytes: 2 ** 31,
  });
  t.same(storedFiles(s), [`shop/${POD_UID}/api/${id}.json`]);
});

t.test('a pod saying true in a namespace saying false is stored', async (t) => {
  const source = pods(0, { capture: { label: 'true' }, namespace: async () => ({ label: 'false' }) });
  const s = setup(t, { pods: source });
  const id = await s.entry();
  t.equal(await deliver(s, id), 'delivered');
  t.match(s.kafka.events[0]?.dump, { status: 'stored', path: `shop/${POD_UID}/api/${id}.core.zst` });
  t.equal(s.kafka.events[0]?.dump.reason, NOT_ELF, 'nothing about capture in the reason');
  t.same(storedFiles(s), [`shop/${POD_UID}/api/${id}.core.zst`, `shop/${POD_UID}/api/${id}.json`]);
  t.same(source.namespaceReads, []);
});

t.test('a bad value on the pod is ignored: its namespace and the default decide', async (t) => {
  const source = pods(0, { capture: { annotation: 'nope' } });
  const s = setup(t, { pods: source });
  const id = await s.entry();
  t.equal(await deliver(s, id), 'delivered');
  t.match(s.kafka.events[0]?.dump, { status: 'stored', path: `shop/${POD_UID}/api/${id}.core.zst` });
  t.same(source.namespaceReads, ['shop'], 'the namespace was read in its stead');
});

t.test('the collector default false: a crash outside any pod is recorded without its dump', async (t) => {
  const s = setup(t, { captureDefault: false });
  const id = await s.entry({ proc: undefined, procError: 'gone' });
  t.equal(await deliver(s, id), 'delivered');
  t.same(s.kafka.events[0]?.dump, {
    status: 'skipped',
    reason: `capture disabled by the collector default (PODMORTEM_COLLECTOR_CAPTURE_DEFAULT=false); ${NOT_ELF}`,
    size_bytes: CORE.length,
    limit_bytes: 2 ** 31,
  });
  t.same(storedFiles(s), [`_host/node-a/_process/${id}.json`]);
  t.same(s.left(), []);
});

t.test(
  "capture disabled for a dump the handler did not keep: the handler's status and reason stand",
  async (t) => {
    const s = setup(t, { pods: pods(0, { capture: { label: 'false' } }) });
    const id = await s.entry(
      {
        dump: {
          status: 'skipped',
          reason: 'rate limit: 3 dumps in 60 s',
          sizeBytes: 0,
          storedBytes: 0,
          compression: 'none',
          limitBytes: 2 ** 31,
        },
      },
      { core: false },
    );
    t.equal(await deliver(s, id), 'delivered');
    t.same(s.kafka.events[0]?.dump, {
      status: 'skipped',
      reason: 'rate limit: 3 dumps in 60 s',
      size_bytes: 0,
      limit_bytes: 2 ** 31,
    });
  },
);
