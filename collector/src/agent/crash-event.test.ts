import t from 'tap';
import { newCrashId, validateCrashEvent } from '@podmortem/contract';
import { buildCrashEvent, signalName } from './crash-event.ts';
import type { CoreNotes } from './elf-notes.ts';
import type { PodInfo } from './pod-info.ts';
import type { SpoolMeta } from '../spool-entry.ts';

const ID = 'c4a1f3e9b2d84f0e9a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f';
const UID = '5f0c8a52-8d7e-4c11-9f70-3f2b6c7d8e01';
const cgroup = `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID.replaceAll('-', '_')}.slice/cri-containerd-${ID}.scope\n`;

const procFacts = {
  cgroup,
  cmdline: ['/usr/local/bin/api-server', '--serve'],
  comm: 'api-server',
  exe: '/usr/local/bin/api-server',
  nsPids: [4242, 7],
};

function meta(overrides: Partial<SpoolMeta> = {}): SpoolMeta {
  return {
    version: 1,
    crashId: newCrashId(),
    timestamp: '2026-11-22T10:00:00.123Z',
    node: 'node-a',
    kernel: {
      pid: 4242, nsPid: 7, tid: 4243, nsTid: 8, signal: 11, time: 1795000000, coreLimit: -1,
      comm: 'api-server', exePath: '/usr/local/bin/api-server', hostname: 'api-0', uid: 1000, gid: 1000,
    }, // prettier-ignore
    proc: procFacts,
    dump: {
      status: 'stored',
      sizeBytes: 1000,
      storedBytes: 200,
      sha256: 'ab'.repeat(32),
      compression: 'zstd',
      limitBytes: 2 ** 31,
    },
    handlerMs: 12.5,
    collectorVersion: '0.1.0',
    ...overrides,
  };
}

const notes: CoreNotes = {
  machine: 'x86_64',
  signal: 11,
  sigCode: 1,
  faultAddress: '0x0',
  pid: 7,
  tid: 8,
  comm: 'api-server',
  args: '/usr/local/bin/api-server --serve',
  uid: 0,
  gid: 0,
  threads: 2,
  mappedFiles: [
    { start: '0x1000', end: '0x2000', fileOffset: 0, path: '/usr/local/bin/api-server', buildId: 'abcdef12' },
    { start: '0x2000', end: '0x3000', fileOffset: 4096, path: '/usr/local/bin/api-server' },
    { start: '0x7000', end: '0x8000', fileOffset: 0, path: '/usr/lib/libc.so.6' },
  ],
  exePath: '/usr/local/bin/api-server',
  buildId: 'abcdef12',
  problems: [],
};

const apiContainer = {
  name: 'api',
  runtime: 'containerd' as const,
  image: 'registry.example/api:1.2.3',
  imageDigest: 'sha256:' + 'cd'.repeat(32),
};
const pod: PodInfo = {
  namespace: 'payments',
  name: 'api-7d9f8-x2x9z',
  uid: UID,
  labels: { app: 'api' },
  owner: { kind: 'ReplicaSet', name: 'api-7d9f8' },
  containers: new Map([[ID, apiContainer]]),
  specContainers: [{ name: 'api', image: 'registry.example/api:1.2.3' }],
};
const identity = { containerId: ID, runtime: 'containerd' as const, podUid: UID, path: '/x' };

t.test('a crash in a pod: every fact from its best source', async (t) => {
  const m = meta();
  const e = buildCrashEvent({
    meta: m,
    owner: { kind: 'pod', identity, pod, container: apiContainer },
    notes,
    nodeName: 'node-a',
  });
  t.ok(validateCrashEvent(e).ok);
  t.same(e.kubernetes, {
    namespace: 'payments',
    pod: { name: 'api-7d9f8-x2x9z', uid: UID },
    container: { name: 'api' },
    node: { name: 'node-a' },
    labels: { app: 'api' },
    owner: { kind: 'ReplicaSet', name: 'api-7d9f8' },
  });
  t.same(e.container, {
    id: ID,
    runtime: 'containerd',
    image: { name: 'registry.example/api:1.2.3', digest: 'sha256:' + 'cd'.repeat(32) },
  });
  t.same(e.process, {
    pid: 4242,
    ns_pid: 7,
    tid: 4243,
    executable: '/usr/local/bin/api-server',
    name: 'api-server',
    args: ['/usr/local/bin/api-server', '--serve'],
    uid: 1000,
    gid: 1000,
  });
  t.same(e.signal, { number: 11, name: 'SIGSEGV', code: 1 });
  t.same(e.fault, { address: '0x0' });
  t.same(e.analysis?.modules, [
    { path: '/usr/local/bin/api-server', build_id: 'abcdef12' },
    { path: '/usr/lib/libc.so.6' },
  ]);
  t.equal(e.analysis?.build_id, 'abcdef12');
  t.same(e.dump, { status: 'stored', size_bytes: 1000, limit_bytes: 2 ** 31, sha256: 'ab'.repeat(32) });
  t.same(e.collector, { version: '0.1.0', node: 'node-a', handler_ms: 12.5 });
  t.equal(e['@timestamp'], m.timestamp);
  t.equal(e.crash.id, m.crashId);
});

t.test('a host process has no kubernetes or container block', async (t) => {
  const e = buildCrashEvent({
    meta: meta({ proc: { ...procFacts, cgroup: '0::/system.slice/cron.service\n' } }),
    owner: { kind: 'host' },
    notes,
    nodeName: 'node-a',
  });
  t.equal(e.kubernetes, undefined);
  t.equal(e.container, undefined);
});

t.test('a container of no known pod keeps what the cgroup says', async (t) => {
  const e = buildCrashEvent({
    meta: meta(),
    owner: { kind: 'container', identity, why: 'unknown' },
    notes,
    nodeName: 'node-a',
  });
  t.equal(e.kubernetes, undefined);
  t.same(e.container, { id: ID, runtime: 'containerd' });
});

t.test('an unreadable core is recorded in dump.reason, the event still made', async (t) => {
  const m = meta({ proc: undefined, procError: 'process gone' });
  m.dump.reason = 'rate limited';
  const e = buildCrashEvent({
    meta: m,
    owner: { kind: 'host' },
    notesError: 'not an ELF core: the file starts with 67617262',
    nodeName: 'node-a',
  });
  t.equal(
    e.dump.reason,
    'rate limited; core notes unreadable: not an ELF core: the file starts with 67617262',
  );
  t.same(e.signal, { number: 11, name: 'SIGSEGV' }, 'the kernel signal when the core says nothing');
  t.same(e.process.args, undefined);
  t.equal(e.process.executable, '/usr/local/bin/api-server');
});

t.test('malformed kernel arguments: the core supplies what it can', async (t) => {
  const m = meta({ argsError: '%P: "x" is not a pid', proc: undefined });
  m.kernel = { ...m.kernel, pid: 0, uid: 0, gid: 0, signal: 0, comm: '' };
  const e = buildCrashEvent({
    meta: m,
    owner: { kind: 'host' },
    notes: { ...notes, uid: 33, gid: 44 },
    nodeName: 'node-a',
  });
  t.equal(e.process.pid, 7, "the core's pid");
  t.equal(e.process.uid, 33);
  t.equal(e.process.name, 'api-server');
  t.same(e.process.args, ['/usr/local/bin/api-server', '--serve'], 'the core psargs, split');
});

t.test('no pid from anywhere cannot make a valid event', async (t) => {
  const m = meta({ proc: undefined });
  m.kernel = { ...m.kernel, pid: 0 };
  t.throws(() => buildCrashEvent({ meta: m, owner: { kind: 'host' }, nodeName: 'node-a' }), {
    code: 'PM_ERR_EVENT_INVALID',
  });
});

t.test('signal names', async (t) => {
  t.equal(signalName(6), 'SIGABRT');
  t.equal(signalName(7), 'SIGBUS');
  t.equal(signalName(31), 'SIGSYS');
  t.equal(signalName(34), 'SIGRTMIN');
  t.equal(signalName(40), 'SIGRTMIN+6');
  t.equal(signalName(0), 'UNKNOWN');
  t.equal(signalName(99), 'UNKNOWN');
});

t.test(
  "a core whose own signal is not the kernel's (gcore): the kernel's signal, not the core's code",
  async (t) => {
    const e = buildCrashEvent({
      meta: meta(),
      owner: { kind: 'host' },
      notes: { ...notes, signal: 19, sigCode: 128, faultAddress: undefined },
      nodeName: 'node-a',
    });
    t.same(e.signal, { number: 11, name: 'SIGSEGV' });
    t.equal(e.fault, undefined);
  },
);

t.test('a pod whose names Kubernetes would refuse: the crash is kept, without its pod', async (t) => {
  const cases: [string, PodInfo, typeof apiContainer, RegExp][] = [
    [
      'a namespace climbing out',
      { ...pod, namespace: '../team-b' },
      apiContainer,
      /namespace "\.\.\/team-b"/,
    ],
    ['a pod name with a slash', { ...pod, name: 'api/0' }, apiContainer, /pod name "api\/0"/],
    ['a container name with NUL', pod, { ...apiContainer, name: 'api\u0000' }, /container name "api\\u0000"/],
    ['a pod uid in upper case', { ...pod, uid: UID.toUpperCase() }, apiContainer, /pod uid/],
  ];
  for (const [what, p, container, named] of cases) {
    const e = buildCrashEvent({
      meta: meta(),
      owner: { kind: 'pod', identity, pod: p, container },
      notes,
      nodeName: 'node-a',
    });
    t.ok(validateCrashEvent(e).ok, `${what}: a valid event`);
    t.equal(e.kubernetes, undefined, `${what}: no pod named`);
    t.same(e.container, { id: ID, runtime: 'containerd' }, `${what}: the container from the cgroup`);
    t.match(e.dump.reason, /recorded without its pod: not valid Kubernetes names/, `${what}: says why`);
    t.match(e.dump.reason, named, `${what}: names the bad name`);
  }
});

t.test('capture disabled: a dump the handler kept is marked skipped, the reason first', async (t) => {
  const owner = { kind: 'pod' as const, identity, pod, container: apiContainer };
  const why = 'capture disabled by pod label podmortem.io/capture=false';
  const kept = buildCrashEvent({ meta: meta(), owner, notes, nodeName: 'node-a', captureDisabled: why });
  t.same(kept.dump, {
    status: 'skipped',
    reason: why,
    size_bytes: 1000,
    limit_bytes: 2 ** 31,
    sha256: 'ab'.repeat(32),
  });
  t.equal(kept.analysis?.title, 'SIGSEGV in api-server', 'the core notes still describe the crash');
  const cut = meta({
    dump: { ...meta().dump, status: 'truncated', reason: 'core larger than the 200-byte limit' },
  });
  t.same(buildCrashEvent({ meta: cut, owner, notes, nodeName: 'node-a', captureDisabled: why }).dump, {
    status: 'skipped',
    reason: `${why}; core larger than the 200-byte limit`,
    size_bytes: 1000,
    limit_bytes: 2 ** 31,
    sha256: 'ab'.repeat(32),
  });
  // No dump was kept (the handler's rate limit): nothing to set aside, the handler's word stands.
  const none = meta({
    dump: {
      status: 'skipped',
      reason: 'rate limit',
      sizeBytes: 0,
      storedBytes: 0,
      compression: 'none',
      limitBytes: 2 ** 31,
    },
  });
  t.same(buildCrashEvent({ meta: none, owner, nodeName: 'node-a', captureDisabled: why }).dump, {
    status: 'skipped',
    reason: 'rate limit',
    size_bytes: 0,
    limit_bytes: 2 ** 31,
  });
});
