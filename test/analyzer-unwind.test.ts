import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { validExamples, validateCrashEvent } from '@podmortem/contract';
import { analysisOf } from '../analyzer/src/analysis.ts';
import { crashSignature } from '../analyzer/src/signature.ts';
import type { StackThread } from '../analyzer/src/stack-text.ts';
import { unwindCore, type UnwindResult, type Unwound } from '../analyzer/src/unwinder.ts';
import { buildIdOf, buildPrograms, crashAll, lineOf, type Program } from './support/real-crash.ts';
import { until } from './support/poll.ts';

// The analyzer's unwinder on real kernel cores of small C and C++ programs (built with -g -O0
// unless a test says otherwise): the crashing function and source line of the crashing thread,
// the crashing thread first among all threads, bounded output for a runaway recursion, grouping
// by signature across rebuilds, and a typed failure, in bounded time, for each bad input and
// each way the unwinder itself can fail.

const run = promisify(execFile);

const sources = {
  segv: `#include <stddef.h>
struct hdr { int len; };
int parse_header(const struct hdr *h) {
  return h->len; /* CRASH */
}
int main(int argc, char **argv) {
  (void)argv;
  return parse_header(argc > 5 ? (const struct hdr *)argv : NULL);
}
`,
  assert: `#include <assert.h>
int main(int argc, char **argv) {
  (void)argv;
  assert(argc > 5); /* ASSERT */
  return 0;
}
`,
  threads: `#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#define WORKERS 8
static pthread_barrier_t ready;
static void report(const char *what) {
  printf("%s %d\\n", what, gettid());
  fflush(stdout);
}
static int *volatile nowhere;
static void crash_in_worker(void) {
  *nowhere = 1; /* CRASH */
}
static void *worker(void *arg) {
  report("tid");
  pthread_barrier_wait(&ready);
  if (arg) {
    report("crashing");
    crash_in_worker();
  }
  for (;;) pause();
  return arg;
}
int main(void) {
  pthread_t t[WORKERS];
  report("tid");
  pthread_barrier_init(&ready, 0, WORKERS + 1);
  for (long i = 0; i < WORKERS; i++) pthread_create(&t[i], 0, worker, (void *)(long)(i == 5));
  pthread_barrier_wait(&ready);
  for (;;) pause();
}
`,
  overflow: `static volatile int depth_limit = 1 << 30; /* far deeper than any stack */
int recurse(int n) {
  volatile char frame[64];
  frame[0] = (char)n;
  if (n == depth_limit) return 0;
  return recurse(n + 1) + frame[0]; /* RECURSE */
}
int main(void) { return recurse(0); }
`,
  fpe: `int divide(int a, int b) {
  return a / b; /* DIVIDE */
}
int main(int argc, char **argv) {
  (void)argv;
  return divide(argc, argc - 1);
}
`,
  cxx: `#include <cstddef>
namespace net {
class Parser {
 public:
  int parse(const char *text) { return text[0]; } /* CRASH */
};
}  // namespace net
int main(int argc, char **argv) {
  net::Parser parser;
  return parser.parse(argc > 5 ? argv[0] : nullptr);
}
`,
};

// One bug (parse_header on NULL), and a second one in the same binary, chosen by argv[1].
const groupSource = (extra: string) => `#include <stddef.h>
#include <stdlib.h>
struct hdr { int len; };
${extra}
__attribute__((noinline)) int parse_header(const struct hdr *h) {
  return h->len; /* CRASH */
}
__attribute__((noinline)) int write_footer(int *out) {
  *out = 7; /* FOOTER */
  return 0;
}
__attribute__((noinline)) int handle_request(const char *kind, void *p) {
  if (kind[0] == 'h') return parse_header(p) + 1;
  return write_footer(p) + 1;
}
int main(int argc, char **argv) {
  return handle_request(argv[1], argc > 5 ? argv : NULL);
}
`;
const unrelated = `__attribute__((noinline)) int unrelated_checksum(const char *s) {
  int sum = 0;
  while (*s) sum = sum * 31 + *s++;
  return sum;
}`;

const programs: Record<string, Program> = {
  segv: { source: sources.segv },
  assert: { source: sources.assert },
  threads: { source: sources.threads },
  overflow: { source: sources.overflow },
  fpe: { source: sources.fpe },
  cxx: { source: sources.cxx, lang: 'c++' },
  groupO0: { source: groupSource('') },
  groupO1: { source: groupSource(''), flags: ['-O1'] },
  groupExtra: { source: groupSource(unrelated) },
  gone: { source: sources.segv },
};

const dir = await mkdtemp(join(tmpdir(), 'pm-an-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

// A crash in a shared library that is then moved away, as the analyzer meets it: the library is
// found only in a folder of captured modules named by build id.
const libDir = join(dir, 'lib');
await mkdir(libDir);
const libSource = 'int lib_parse(const int *p) {\n  return *p + 1; /* LIB */\n}\n';
await writeFile(join(dir, 'lib.c'), libSource);
await run('gcc', [
  '-g',
  '-O0',
  '-Wall',
  '-Werror',
  '-shared',
  '-fPIC',
  '-o',
  join(libDir, 'libpmcrash.so'),
  join(dir, 'lib.c'),
]);
programs.uselib = {
  source:
    'int lib_parse(const int *p);\nint main(int argc, char **argv) {\n  (void)argv;\n  return lib_parse(argc > 5 ? &argc : 0);\n}\n',
  link: [`-L${libDir}`, '-lpmcrash', `-Wl,-rpath,${libDir}`],
};

const exes = await buildPrograms(dir, programs);
const exe = (name: string): string => exes[name] ?? '';
const crashes = await crashAll(dir, {
  segv: { exe: exe('segv') },
  assert: { exe: exe('assert') },
  threads: { exe: exe('threads') },
  overflow: { exe: exe('overflow') },
  fpe: { exe: exe('fpe') },
  cxx: { exe: exe('cxx') },
  groupO0: { exe: exe('groupO0'), args: ['header'] },
  groupO1: { exe: exe('groupO1'), args: ['header'] },
  groupExtra: { exe: exe('groupExtra'), args: ['header'] },
  footer: { exe: exe('groupO0'), args: ['footer'] },
  gone: { exe: exe('gone') },
  uselib: { exe: exe('uselib') },
});
const crashOf = (name: string) => {
  const crash = crashes[name];
  if (!crash) throw new Error(`no crash ${name}`);
  return crash;
};

const libBuildId = (await buildIdOf(join(libDir, 'libpmcrash.so'))) ?? '';
const modulesDir = join(dir, 'modules');
await mkdir(join(modulesDir, '.build-id', libBuildId.slice(0, 2)), { recursive: true });
await rename(
  join(libDir, 'libpmcrash.so'),
  join(modulesDir, '.build-id', libBuildId.slice(0, 2), libBuildId.slice(2)),
);

function unwound(t: Test, result: UnwindResult): Unwound {
  if (!result.ok) throw new Error(`unwind failed: ${result.reason}: ${result.message}\n${result.stderr}`);
  t.comment(`unwound ${result.threads.length} thread(s) in ${result.durationMs.toFixed(1)} ms`);
  return result;
}
const unwindCrash = async (t: Test, name: string, params = {}) =>
  unwound(t, await unwindCore({ core: crashOf(name).core, executable: crashOf(name).exe }, params));
const crashingOf = (u: Unwound): StackThread => {
  const first = u.threads[0];
  if (!first) throw new Error('no thread');
  return first;
};

t.test('NULL dereference: SIGSEGV in parse_header at its line', async (t) => {
  t.equal(crashOf('segv').signal, 'SIGSEGV');
  const u = await unwindCrash(t, 'segv');
  const crashing = crashingOf(u);
  t.equal(u.threads.length, 1);
  t.match(crashing, { tid: crashOf('segv').pid, crashing: true, truncated: false });
  t.match(crashing.frames[0], {
    function: 'parse_header',
    module: 'segv',
    build_id: await buildIdOf(exe('segv')),
    file: join(dir, 'segv.c'),
    line: lineOf(sources.segv, 'CRASH'),
  });
  t.equal(crashing.frames[1]?.function, 'main');
  t.equal(
    crashSignature('SIGSEGV', crashing.frames).title,
    `SIGSEGV in parse_header (segv.c:${lineOf(sources.segv, 'CRASH')})`,
  );
});

t.test('assert: SIGABRT; the signature frame is the caller of __assert_fail', async (t) => {
  t.equal(crashOf('assert').signal, 'SIGABRT');
  const crashing = crashingOf(await unwindCrash(t, 'assert'));
  const names = crashing.frames.map((f) => f.function ?? '?');
  const failAt = names.findIndex((n) => n.endsWith('__assert_fail'));
  t.ok(failAt > 0, `__assert_fail beneath the signal machinery: ${names.join(' < ')}`);
  t.match(crashing.frames[failAt + 1], { function: 'main', line: lineOf(sources.assert, 'ASSERT') });
  const s = crashSignature('SIGABRT', crashing.frames);
  t.same(
    s.frames.map((f) => f.function),
    ['main'],
  );
  t.equal(s.title, `SIGABRT in main (assert.c:${lineOf(sources.assert, 'ASSERT')})`);
});

t.test('a crash on a worker thread of 8: that thread first and marked, every thread listed', async (t) => {
  const crash = crashOf('threads');
  t.equal(crash.signal, 'SIGSEGV');
  const tids = [...crash.stdout.matchAll(/^tid (\d+)$/gm)].map((m) => Number(m[1]));
  const crashingTid = Number(/^crashing (\d+)$/m.exec(crash.stdout)?.[1]);
  t.equal(tids.length, 9, 'main and 8 workers reported their tids');
  t.not(crashingTid, crash.pid, 'not the main thread');
  const u = await unwindCrash(t, 'threads');
  t.same(u.threads.map((th) => th.tid).sort(), [...tids].sort(), 'all threads of the process');
  t.equal(u.threads[0]?.tid, crashingTid, 'the thread that got the signal comes first');
  t.same(
    u.threads.map((th) => th.crashing),
    u.threads.map((_, i) => i === 0),
    'and only it is marked crashing',
  );
  t.match(crashingOf(u).frames[0], { function: 'crash_in_worker', line: lineOf(sources.threads, 'CRASH') });
  t.equal(crashingOf(u).frames[1]?.function, 'worker');
  t.ok(
    u.threads.slice(1).every((th) => th.frames.some((f) => f.function === 'main' || f.function === 'worker')),
    'the other threads wait in main or worker',
  );
});

t.test('stack overflow by runaway recursion: bounded frames and bytes, no hang', async (t) => {
  t.equal(crashOf('overflow').signal, 'SIGSEGV');
  const deep = crashingOf(await unwindCrash(t, 'overflow', { maxFramesPerThread: 3000 }));
  t.equal(deep.frames.length, 3000, 'more than 2,000 frames deep');
  t.equal(deep.truncated, true);
  t.ok(
    deep.frames.every((f) => f.function === 'recurse'),
    'every frame is the recursion',
  );
  const byDefault = crashingOf(await unwindCrash(t, 'overflow'));
  t.equal(byDefault.frames.length, 256, 'the default frame limit');
  t.equal(byDefault.truncated, true);
  // Which instruction of recurse first touches the guard page (the prologue, the store into the
  // frame, the call's push) depends on where ASLR put the top of the stack.
  const faulting = byDefault.frames[0];
  t.equal(faulting?.function, 'recurse');
  t.ok(
    faulting?.line !== undefined &&
      faulting.line >= lineOf(sources.overflow, 'int recurse') &&
      faulting.line <= lineOf(sources.overflow, 'RECURSE'),
    `the fault at a line of recurse (${faulting?.line})`,
  );
  t.match(byDefault.frames[1], { function: 'recurse', line: lineOf(sources.overflow, 'RECURSE') });

  const capped = await unwindCrash(t, 'overflow', { maxFramesPerThread: 3000, maxOutputBytes: 64 * 1024 });
  t.equal(capped.outputTruncated, true, '3,000 frames do not fit in 64 KiB of output');
  const kept = crashingOf(capped).frames;
  t.equal(crashingOf(capped).truncated, true);
  t.ok(kept.length > 100 && kept.length < 3000, `${kept.length} whole frames in 64 KiB`);
  t.ok(
    kept.every((f) => f.function === 'recurse' && f.build_id !== undefined && f.line !== undefined),
    'no partial frame kept',
  );
  t.equal(
    crashSignature('SIGSEGV', deep.frames).signature,
    crashSignature('SIGSEGV', byDefault.frames).signature,
  );
});

t.test('the runaway recursion without a frame limit: stopped at the deadline', async (t) => {
  const { core, exe: executable } = crashOf('overflow');
  // eu-stack collects a thread's frames before it prints any, so no byte cap can stop this one.
  const result = await unwindCore({ core, executable }, { maxFramesPerThread: 0, deadlineMs: 2000 });
  t.match(result, { ok: false, reason: 'timeout' });
});

t.test('integer division by zero: SIGFPE in divide', async (t) => {
  t.equal(crashOf('fpe').signal, 'SIGFPE');
  const crashing = crashingOf(await unwindCrash(t, 'fpe'));
  t.match(crashing.frames[0], { function: 'divide', line: lineOf(sources.fpe, 'DIVIDE') });
  t.equal(
    crashSignature('SIGFPE', crashing.frames).title,
    `SIGFPE in divide (fpe.c:${lineOf(sources.fpe, 'DIVIDE')})`,
  );
});

t.test('C++: the mangled function is shown demangled', async (t) => {
  const { stdout } = await run('nm', [exe('cxx')]);
  t.match(stdout, /_ZN3net6Parser5parseEPKc/, 'the symbol is mangled in the binary');
  const crashing = crashingOf(await unwindCrash(t, 'cxx'));
  t.match(crashing.frames[0], {
    function: 'net::Parser::parse(char const*)',
    file: join(dir, 'cxx.cpp'),
    line: lineOf(sources.cxx, 'CRASH'),
  });
  t.equal(crashing.frames[1]?.function, 'main');
});

t.test('grouping: one bug built three ways has one signature; two bugs have two', async (t) => {
  const top = async (name: string) => crashingOf(await unwindCrash(t, name)).frames;
  const o0 = await top('groupO0');
  const o1 = await top('groupO1');
  const extra = await top('groupExtra');
  const footer = await top('footer');
  const crashLine = lineOf(groupSource(''), 'CRASH');
  for (const frames of [o0, o1]) t.match(frames[0], { function: 'parse_header', line: crashLine });
  t.match(extra[0], { function: 'parse_header', line: lineOf(groupSource(unrelated), 'CRASH') });
  t.not(o0[0]?.offset, o1[0]?.offset, '-O1 moved the code');
  t.not(o0[0]?.offset, extra[0]?.offset, 'the extra function moved the code');
  t.not(o0[0]?.build_id, o1[0]?.build_id, 'different binaries');
  const signature = (frames: typeof o0) => crashSignature('SIGSEGV', frames).signature;
  t.equal(signature(o1), signature(o0));
  t.equal(signature(extra), signature(o0));
  t.match(footer[0], { function: 'write_footer', line: lineOf(groupSource(''), 'FOOTER') });
  t.not(signature(footer), signature(o0), 'another bug in the same binary');
});

t.test('a module found only in the folder of captured modules, by build id', async (t) => {
  const crash = crashOf('uselib');
  const blind = crashingOf(await unwindCrash(t, 'uselib'));
  t.match(blind.frames[0], { module: 'libpmcrash.so', build_id: libBuildId });
  t.equal(blind.frames[0]?.function, undefined, 'unsymbolized without the module file');
  t.equal(crashSignature('SIGSEGV', blind.frames).title, 'SIGSEGV in main (uselib.c:4)');
  const seen = crashingOf(
    unwound(
      t,
      await unwindCore({
        core: crash.core,
        executable: crash.exe,
        debuginfoDirs: [modulesDir, '/usr/lib/debug'],
      }),
    ),
  );
  t.match(seen.frames[0], {
    function: 'lib_parse',
    module: 'libpmcrash.so',
    file: join(dir, 'lib.c'),
    line: lineOf(libSource, 'LIB'),
  });
});

t.test("the event's analysis part from an unwind is valid by the contract", async (t) => {
  const u = await unwindCrash(t, 'threads');
  const analysis = analysisOf('SIGSEGV', u.threads);
  t.match(analysis, { title: `SIGSEGV in crash_in_worker (threads.c:${lineOf(sources.threads, 'CRASH')})` });
  t.equal(analysis?.frames?.[0]?.function, 'crash_in_worker');
  const [example] = validExamples();
  if (!example) throw new Error('no example event');
  const checked = validateCrashEvent({ ...example.event, analysis });
  t.same(checked.ok ? [] : checked.errors, []);
});

t.test('bad input: typed failures with the reason', async (t) => {
  const good = crashOf('segv');
  const core = await readFile(good.core);

  const truncated = join(dir, 'truncated.core');
  await writeFile(truncated, core.subarray(0, 4096));
  const cut = await unwindCore({ core: truncated, executable: good.exe });
  t.match(cut, { ok: false, reason: 'unwinder-error', exitCode: 2, message: /dwfl/ });

  const garbage = join(dir, 'garbage.core');
  await writeFile(garbage, randomBytes(256 * 1024));
  t.match(await unwindCore({ core: garbage, executable: good.exe }), { ok: false, reason: 'not-a-core' });

  const headed = join(dir, 'headed.core');
  await writeFile(headed, Buffer.concat([core.subarray(0, 64), randomBytes(256 * 1024)]));
  t.match(
    await unwindCore({ core: headed, executable: good.exe }),
    { ok: false, reason: 'unwinder-error', exitCode: 2 },
    'a core header over garbage reaches eu-stack, which refuses it',
  );

  t.match(await unwindCore({ core: join(dir, 'absent.core'), executable: good.exe }), {
    ok: false,
    reason: 'core-unreadable',
    message: /ENOENT/,
  });

  const gone = crashOf('gone');
  await unlink(gone.exe);
  t.match(await unwindCore({ core: gone.core, executable: gone.exe }), {
    ok: false,
    reason: 'executable-missing',
    message: /ENOENT/,
  });
});

/** A stand-in for eu-stack: a bash script of `body`. */
async function fakeUnwinder(name: string, body: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `#!/bin/bash\n${body}\n`);
  await chmod(path, 0o755);
  return path;
}

/** Whether a process is gone: no /proc entry, or a zombie waiting for its reaper. */
async function gone(pid: number): Promise<boolean> {
  try {
    const statLine = await readFile(`/proc/${pid}/stat`, 'utf8');
    return statLine.slice(statLine.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

t.test('an unwinder past its deadline: the whole process group killed, a timeout failure', async (t) => {
  const pidFile = join(dir, 'sleeper.pid');
  const command = await fakeUnwinder('slow-unwinder', `sleep 600 & echo $! > ${pidFile}\nwait`);
  const { core, exe: executable } = crashOf('segv');
  const result = await unwindCore({ core, executable }, { command, deadlineMs: 1000 });
  t.match(result, { ok: false, reason: 'timeout', message: /1000 ms/ });
  const sleeper = Number(await readFile(pidFile, 'utf8'));
  await until(`the unwinder's child ${sleeper} to be killed`, () => gone(sleeper), 10_000);
  t.pass(`its child process ${sleeper} is gone too`);
});

t.test('an unwind cancelled by its signal: the whole process group killed, an aborted failure', async (t) => {
  const pidFile = join(dir, 'cancelled.pid');
  const command = await fakeUnwinder('hanging-unwinder', `sleep 600 & echo $! > ${pidFile}\nwait`);
  const { core, exe: executable } = crashOf('segv');
  const abort = new AbortController();
  const unwinding = unwindCore({ core, executable }, { command, signal: abort.signal });
  const sleeper = await until('the unwinder to start its child', async () => {
    const text = await readFile(pidFile, 'utf8').catch(() => '');
    return text.trim() === '' ? undefined : Number(text);
  });
  abort.abort();
  t.match(await unwinding, { ok: false, reason: 'aborted' });
  await until(`the unwinder's child ${sleeper} to be killed`, () => gone(sleeper), 10_000);
  t.pass(`its child process ${sleeper} is gone too`);
  t.match(
    await unwindCore({ core, executable }, { command, signal: abort.signal }),
    {
      ok: false,
      reason: 'aborted',
    },
    'a signal aborted already: the unwinder is stopped at once',
  );
});

t.test('an unwinder that dies of a signal, prints nothing, or cannot start', async (t) => {
  const { core, exe: executable } = crashOf('segv');
  const crasher = await fakeUnwinder('crashing-unwinder', 'kill -SEGV $$');
  t.match(await unwindCore({ core, executable }, { command: crasher }), {
    ok: false,
    reason: 'killed',
    signal: 'SIGSEGV',
  });
  const silent = await fakeUnwinder('silent-unwinder', 'exit 0');
  t.match(await unwindCore({ core, executable }, { command: silent }), { ok: false, reason: 'no-threads' });
  t.match(await unwindCore({ core, executable }, { command: join(dir, 'no-such-unwinder') }), {
    ok: false,
    reason: 'unwinder-error',
    exitCode: 127,
    message: /no-such-unwinder/,
  });
  t.match(await unwindCore({ core, executable }, { prlimitCommand: join(dir, 'no-such-prlimit') }), {
    ok: false,
    reason: 'spawn-failed',
    message: /ENOENT/,
  });
});

t.test('the address-space limit is in force', async (t) => {
  const { core, exe: executable } = crashOf('segv');
  const result = await unwindCore({ core, executable }, { addressSpaceBytes: 3 * 1024 ** 2 });
  t.match(result, { ok: false, reason: 'unwinder-error', stderr: /failed to map|cannot allocate|memory/i });
  const limits = await fakeUnwinder(
    'limits-unwinder',
    'grep "Max address space" /proc/self/limits >&2; exit 2',
  );
  const shown = await unwindCore(
    { core, executable },
    { command: limits, addressSpaceBytes: 512 * 1024 ** 2 },
  );
  t.match(shown, {
    ok: false,
    stderr: new RegExp(`Max address space\\s+${512 * 1024 ** 2}\\s+${512 * 1024 ** 2}`),
  });
});

t.test('the injected clock measures the run', async (t) => {
  let now = 1000;
  const clock = () => (now += 5);
  const { core, exe: executable } = crashOf('segv');
  const result = await unwindCore({ core, executable }, { clock });
  t.equal(result.ok, true);
  t.equal(result.durationMs, 5, 'one reading at the start and one at the end');
});
