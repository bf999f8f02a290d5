import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { buildIdOf, buildPrograms, crashAll, lineOf } from '../../test/support/real-crash.ts';
import { parseStackText } from './stack-text.ts';

// The parser against eu-stack's own text: a two-thread program crashes for real, eu-stack is run
// on its core directly (not through unwinder.ts), and what the parser makes of that text is
// checked against facts from elsewhere: the program's own report of its crashing thread, readelf's
// build id, nm's symbol addresses and the source lines.

const run = promisify(execFile);

const source = `#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
struct hdr { int len; };
static pthread_barrier_t ready;
int parse_header(const struct hdr *h) {
  return h->len; /* CRASH */
}
static void *worker(void *arg) {
  pthread_barrier_wait(&ready);
  printf("crashing tid %d\\n", gettid());
  fflush(stdout);
  return (void *)(long)parse_header(arg); /* CALL */
}
int main(void) {
  pthread_t t;
  pthread_barrier_init(&ready, 0, 2);
  pthread_create(&t, 0, worker, 0);
  pthread_barrier_wait(&ready);
  pthread_join(t, 0); /* JOIN */
  return 0;
}
`;

const dir = await mkdtemp(join(tmpdir(), 'pm-an-text-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const { prog = '' } = await buildPrograms(dir, { prog: { source } });
const { prog: crash } = await crashAll(dir, { prog: { exe: prog } });
if (!crash) throw new Error('no crash');
const euStack = async (...args: string[]) => {
  try {
    const { stdout, stderr } = await run('eu-stack', [
      ...args,
      `--executable=${prog}`,
      `--core=${crash.core}`,
    ]);
    return { stdout, stderr };
  } catch (error) {
    // Exit status 1 (the frame limit was reached): the text is still all there.
    const e = error as { stdout: string; stderr: string };
    return { stdout: e.stdout, stderr: e.stderr };
  }
};
const full = await euStack('-b', '-m', '-s', '-i', '-n', '256');
const crashingTid = Number(/crashing tid (\d+)/.exec(crash.stdout)?.[1]);

/** nm's address and size of a function of the executable. */
async function symbol(name: string): Promise<{ start: number; end: number }> {
  const { stdout } = await run('nm', ['-S', prog]);
  const m = new RegExp(`^([0-9a-f]+) ([0-9a-f]+) [Tt] ${name}$`, 'm').exec(stdout);
  if (!m) throw new Error(`nm has no ${name}`);
  const start = Number.parseInt(m[1] ?? '', 16);
  return { start, end: start + Number.parseInt(m[2] ?? '', 16) };
}

t.test('the crash is real and the core is there', async (t) => {
  t.equal(crash.signal, 'SIGSEGV');
  t.ok(crashingTid > crash.pid, `the worker thread ${crashingTid} of process ${crash.pid}`);
});

t.test('threads: both, the signalled one first and marked crashing', async (t) => {
  const threads = parseStackText(full.stdout, full.stderr, 256);
  t.same(
    threads.map((th) => [th.tid, th.crashing]),
    [
      [crashingTid, true],
      [crash.pid, false],
    ],
  );
});

t.test('frames: function, module, build id, offset within the symbol, source position', async (t) => {
  const [crashing, main] = parseStackText(full.stdout, full.stderr, 256);
  const buildId = await buildIdOf(prog);
  const [parse, worker] = crashing?.frames ?? [];
  t.match(parse, { function: 'parse_header', module: 'prog', build_id: buildId, file: join(dir, 'prog.c') });
  t.equal(parse?.line, lineOf(source, 'CRASH'));
  t.equal(typeof parse?.column, 'number');
  t.match(worker, { function: 'worker', module: 'prog', line: lineOf(source, 'CALL') });
  const parseSym = await symbol('parse_header');
  const workerSym = await symbol('worker');
  const inside = (offset: number | undefined, sym: { start: number; end: number }) =>
    offset !== undefined && offset >= sym.start && offset < sym.end;
  t.ok(inside(parse?.offset, parseSym), `parse_header offset ${parse?.offset} in nm's range`);
  t.ok(inside(worker?.offset, workerSym), `worker offset ${worker?.offset} in nm's range`);
  // pc - offset is the module's load address; a caller's offset is of its call (pc - 1).
  const base = (f: typeof parse) => BigInt(f?.pc ?? 0) - BigInt(f?.offset ?? 0);
  t.equal(base(parse) + 1n, base(worker), 'one load address');
  // Where main waits (the barrier or the join) depends on how far it got before the crash.
  const mainFrame = main?.frames.find((f) => f.function === 'main');
  t.ok(
    mainFrame?.line !== undefined &&
      mainFrame.line > lineOf(source, 'int main') &&
      mainFrame.line <= lineOf(source, 'JOIN'),
    `the main thread waits in main's body (line ${mainFrame?.line})`,
  );
  t.ok(
    crashing?.frames.some((f) => f.module === 'libc.so.6' && f.build_id !== undefined),
    'frames in libc carry its module and build id',
  );
});

t.test('the frame limit: frames kept, the thread marked truncated from eu-stack stderr', async (t) => {
  const cut = await euStack('-b', '-m', '-s', '-i', '-n', '2');
  const threads = parseStackText(cut.stdout, cut.stderr, 2);
  t.same(
    threads.map((th) => [th.frames.length, th.truncated]),
    [
      [2, true],
      [2, true],
    ],
  );
  const again = parseStackText(full.stdout, full.stderr, 1);
  t.same(
    again.map((th) => [th.frames.length, th.truncated]),
    [
      [1, true],
      [1, true],
    ],
    'the parser holds the limit itself when the unwinder printed more',
  );
});

t.test('unsymbolized frames: the pc, the module and its offset, no function', async (t) => {
  const quiet = await euStack('-q', '-b', '-m', '-n', '256');
  const named = parseStackText(full.stdout, full.stderr, 256)[0]?.frames[0];
  const bare = parseStackText(quiet.stdout, quiet.stderr, 256)[0]?.frames[0];
  t.equal(bare?.function, undefined);
  t.match(bare, { pc: named?.pc, module: 'prog', offset: named?.offset, build_id: named?.build_id });
});
