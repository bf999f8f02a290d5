import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { readCoreNotes } from '../collector/src/agent/elf-notes.ts';
import { installHandler } from '../collector/src/agent/handler-installer.ts';
import { Spool } from '../collector/src/agent/spool.ts';
import { pointKernelAt } from './support/core-pattern-lock.ts';
import { createPodCgroup } from './support/pod-cgroup.ts';
import { until } from './support/poll.ts';

// Real crashes through the real kernel: core_pattern pipes each core to the installed handler,
// which the kernel runs with an empty environment. The crashing programs sit in a pod-shaped
// cgroup. Checks the handler's spool entry and the ELF reader on a kernel-written core (signal,
// si_code, fault address, sender, crashing thread), which gcore cannot make.
// kernel.core_pattern and core_pipe_limit are global: changed only under the shared lock, restored
// in teardown.

const programs: Record<string, string> = {
  segv: `
#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>
int main(void) {
  printf("pid %d tid %d\\n", getpid(), gettid());
  fflush(stdout);
  *(volatile int *)0xdead000 = 1;
  return 0;
}`,
  abort: `
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
  printf("pid %d tid %d\\n", getpid(), gettid());
  fflush(stdout);
  abort();
}`,
  threads: `
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static pthread_barrier_t ready;
static void *idle(void *a) { pthread_barrier_wait(&ready); for (;;) pause(); return a; }
static void *crash(void *a) {
  pthread_barrier_wait(&ready);
  printf("pid %d tid %d\\n", getpid(), gettid());
  fflush(stdout);
  *(volatile int *)0xbad0000 = 1;
  return a;
}
int main(void) {
  pthread_t t[3];
  pthread_barrier_init(&ready, 0, 4);
  pthread_create(&t[0], 0, idle, 0);
  pthread_create(&t[1], 0, idle, 0);
  pthread_create(&t[2], 0, crash, 0);
  pthread_barrier_wait(&ready);
  for (;;) pause();
}`,
};

const dir = await mkdtemp(join(tmpdir(), 'pmk-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const spool = join(dir, 'spool');
const installed = await installHandler({
  dir: join(dir, 'bin'),
  config: { spoolDir: spool, minFreeBytes: 0 },
});
const exes: Record<string, string> = {};
for (const [name, source] of Object.entries(programs)) {
  await writeFile(join(dir, `${name}.c`), source);
  exes[name] = join(dir, `crash-${name}`);
  execFileSync('gcc', ['-O0', '-Wall', '-Werror', '-pthread', '-o', exes[name], join(dir, `${name}.c`)]);
}
const buildId = (path: string) =>
  /Build ID: ([0-9a-f]+)/.exec(execFileSync('readelf', ['-n', path], { encoding: 'utf8' }))?.[1];

const podUid = randomUUID();
const containerId = randomBytes(32).toString('hex');
const pod = createPodCgroup(podUid, containerId);
t.teardown(() => pod.remove());

// core_pipe_limit > 0: the kernel keeps /proc/<pid> until the handler is done with it.
t.teardown(await pointKernelAt(installed.corePattern, 16));
process.env.PODMORTEM_KERNEL_TEST_SECRET = 'do-not-record-me';

async function crash(name: string) {
  const exe = exes[name] ?? '';
  const result = await pod.run(exe);
  const m = /pid (\d+) tid (\d+)/.exec(result.stdout);
  const pid = Number(m?.[1]);
  const tid = Number(m?.[2]);
  const meta = await until(
    `the spool entry for ${name} (pid ${pid}); crash: ${JSON.stringify(result)}`,
    async () => {
      for (const id of await new Spool(spool).list()) {
        const candidate = await new Spool(spool).entry(id).readMeta();
        if (candidate?.kernel.pid === pid) return candidate;
      }
      return undefined;
    },
    30_000,
  );
  const entry = new Spool(spool).entry(meta.crashId);
  const notes = await readCoreNotes(entry.openCore(meta));
  const raw = await readFile(join(spool, `${meta.crashId}.meta.json`), 'utf8');
  await entry.remove();
  return { result, pid, tid, meta, notes, raw, exe };
}

t.test('SIGSEGV: the kernel facts, /proc facts of the pod container, and the core notes', async (t) => {
  const { result, pid, tid, meta, notes, raw, exe } = await crash('segv');
  t.match(result, { signal: 'SIGSEGV', coreDumped: true });
  t.equal(tid, pid);
  t.match(meta, {
    kernel: { pid, tid: pid, signal: 11, comm: 'crash-segv', exePath: exe, coreLimit: -1 },
    proc: { cmdline: [exe], comm: 'crash-segv', exe, nsPids: [pid] },
    dump: { status: 'stored', compression: 'zstd' },
  });
  t.equal(meta.procError, undefined);
  t.match(
    meta.proc?.cgroup,
    `/kubepods-besteffort-pod${podUid.replaceAll('-', '_')}.slice/cri-containerd-${containerId}.scope`,
  );
  t.match(notes, {
    signal: 11,
    sigCode: 1,
    faultAddress: '0xdead000',
    pid,
    tid: pid,
    comm: 'crash-segv',
    args: exe,
    threads: 1,
    exePath: exe,
    buildId: buildId(exe),
  });
  t.equal(meta.dump.sizeBytes > 0 && meta.dump.sha256?.length, 64);
  t.notMatch(raw, /do-not-record-me/, 'no environment in the spool');
  const log = (await readFile(join(spool, 'handler.log'), 'utf8'))
    .split('\n')
    .filter((l) => l.includes(meta.crashId));
  t.match(JSON.parse(log.at(-1) ?? '{}'), {
    msg: 'crash spooled',
    status: 'stored',
    rateKey: `container:${containerId}`,
  });
});

t.test('SIGABRT: sent by the process itself (tgkill), so a sender and no fault address', async (t) => {
  const { result, pid, meta, notes } = await crash('abort');
  t.match(result, { signal: 'SIGABRT', coreDumped: true });
  t.match(meta.kernel, { pid, signal: 6 });
  t.match(notes, { signal: 6, sigCode: -6, sender: { pid }, pid, comm: 'crash-abort' });
  t.equal(notes.faultAddress, undefined);
});

t.test('a crash in one thread of four: the crashing thread first, every thread counted', async (t) => {
  const { result, pid, tid, meta, notes } = await crash('threads');
  t.match(result, { signal: 'SIGSEGV', coreDumped: true });
  t.not(tid, pid, 'a thread other than the main one crashed');
  t.match(meta.kernel, { pid, tid, signal: 11 });
  t.match(notes, { signal: 11, sigCode: 1, faultAddress: '0xbad0000', pid, tid, threads: 4 });
});

t.test('the handler wrote nothing on stderr', async (t) => {
  t.equal(await readFile(join(dir, 'bin', 'podmortem-handler.stderr'), 'utf8'), '');
});
