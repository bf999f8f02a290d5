import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readdir, rm, truncate, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createZstdCompress, createZstdDecompress } from 'node:zlib';

import t from 'tap';
import {
  auxv,
  elfHead,
  note,
  ntFile,
  prpsinfo,
  prstatus,
  siginfo,
  syntheticCore,
  syntheticCoreStream,
} from '../../../test/support/synthetic-core.ts';
import { CORE_ERRORS, readCoreNotes } from './elf-notes.ts';

// Real cores come from gdb's gcore on a live test process (no core_pattern change needed); the
// signal fields of a real kernel core are checked in test/collector-handler-kernel.test.ts.
// Synthetic cores (kernel layout) pin down signal codes, fault addresses and broken input.

const program = `
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static void *idle(void *a) { for (;;) pause(); return a; }
int main(int argc, char **argv) {
  pthread_t t[3];
  for (int i = 0; i < 3; i++) pthread_create(&t[i], 0, idle, 0);
  printf("ready\\n");
  fflush(stdout);
  for (;;) pause();
}
`;

function buildIdOfFile(path: string): string {
  const out = execFileSync('readelf', ['-n', path], { encoding: 'utf8' });
  const m = /Build ID: ([0-9a-f]+)/.exec(out);
  if (!m?.[1]) throw new Error(`no build id in ${path}`);
  return m[1];
}

const dir = await mkdtemp(join(tmpdir(), 'pm-elf-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const exe = join(dir, 'threads-demo');
await writeFile(join(dir, 'p.c'), program);
execFileSync('gcc', ['-O0', '-pthread', '-o', exe, join(dir, 'p.c')]);

const child = spawn(exe, ['first-arg', 'second arg'], { stdio: ['ignore', 'pipe', 'inherit'] });
await once(child.stdout, 'data');
const pid = child.pid ?? 0;
execFileSync('gcore', ['-o', join(dir, 'core'), String(pid)], { stdio: 'ignore' });
child.kill('SIGKILL');
const core = join(dir, `core.${pid}`);
const exeBuildId = buildIdOfFile(exe);
const uid = process.getuid?.() ?? 0;
const gid = process.getgid?.() ?? 0;

t.test(
  'a real multi-threaded core (gcore) gives pid, command, threads, mapped files and the build id',
  async (t) => {
    const n = await readCoreNotes(core);
    t.equal(n.machine, 'x86_64');
    t.equal(n.pid, pid);
    t.equal(n.tid, pid, 'gcore writes the main thread first');
    t.equal(n.comm, 'threads-demo');
    t.match(n.args, /^.*threads-demo/);
    t.equal(n.uid, uid);
    t.equal(n.gid, gid);
    t.equal(n.threads, 4, 'main thread + 3');
    t.equal(n.exePath, exe);
    t.equal(n.buildId, exeBuildId, 'the build id readelf reads from the executable file');
    t.ok(
      n.mappedFiles.some((f) => f.path.endsWith('/libc.so.6')),
      'libc is among the mapped files',
    );
    const exeMap = n.mappedFiles.find((f) => f.path === exe && f.fileOffset === 0);
    t.match(exeMap, { start: /^0x[0-9a-f]+$/, end: /^0x[0-9a-f]+$/, buildId: exeBuildId });
    t.match(n.registers, { pc: /^0x[0-9a-f]+$/, sp: /^0x[0-9a-f]+$/ });
    t.same(n.problems, []);
  },
);

t.test('the same core read from a zstd-decompressing stream gives the same answer', async (t) => {
  const zst = core + '.zst';
  await pipeline(createReadStream(core), createZstdCompress(), createWriteStream(zst));
  const fromStream = await readCoreNotes(createReadStream(zst).pipe(createZstdDecompress()));
  t.same(fromStream, await readCoreNotes(core));
});

t.test(
  'with moduleBuildIds every mapped library gets its build id, from a file and from a stream',
  async (t) => {
    const fromFile = await readCoreNotes(core, { moduleBuildIds: true });
    const fromStream = await readCoreNotes(createReadStream(core), { moduleBuildIds: true });
    const libc = fromFile.mappedFiles.find((f) => f.path.endsWith('/libc.so.6') && f.fileOffset === 0);
    t.ok(libc, 'libc mapped at offset 0');
    t.equal(libc?.buildId, buildIdOfFile(libc?.path ?? ''));
    t.same(fromStream.mappedFiles, fromFile.mappedFiles);
  },
);

const EXE_ID = '0123456789abcdef0123456789abcdef01234567';
const exeFile = { start: 0x400000n, end: 0x401000n, pageOffset: 0n, path: '/app/server' };
const textFile = { start: 0x401000n, end: 0x402000n, pageOffset: 1n, path: '/app/server' };

function kernelLikeNotes(sig: Buffer, threads = 1) {
  return [
    note('CORE', 1, prstatus({ signal: 11, pid: 4242, rip: 0x401234n, rsp: 0x7ffd1000n })),
    note('CORE', 3, prpsinfo({ pid: 4240, uid: 1000, gid: 2000, comm: 'server', args: 'server --port 80' })),
    note('CORE', 0x53494749, sig),
    note('CORE', 6, auxv(0x401100n)),
    note('CORE', 0x46494c45, ntFile([exeFile, textFile])),
    note('LINUX', 0x202, Buffer.alloc(64)),
    ...Array.from({ length: threads - 1 }, (_, i) => note('CORE', 1, prstatus({ signal: 0, pid: 4243 + i }))),
  ];
}

t.test('a fault: signal, si_code, fault address, crashing thread and process id', async (t) => {
  const buf = syntheticCore({
    notes: kernelLikeNotes(siginfo({ signo: 11, code: 1, addr: 0xdead000n }), 3),
    loads: [{ vaddr: 0x400000n, data: elfHead(EXE_ID) }],
  });
  const n = await readCoreNotes(Readable.from([buf]));
  t.match(n, {
    signal: 11,
    sigCode: 1,
    faultAddress: '0xdead000',
    tid: 4242,
    pid: 4240,
    comm: 'server',
    args: 'server --port 80',
    uid: 1000,
    gid: 2000,
    threads: 3,
    exePath: '/app/server',
    buildId: EXE_ID,
    registers: { pc: '0x401234', sp: '0x7ffd1000' },
  });
  t.equal(n.sender, undefined);
});

t.test('a signal sent by a process (SIGABRT via tgkill): the sender, no fault address', async (t) => {
  const buf = syntheticCore({
    notes: kernelLikeNotes(siginfo({ signo: 6, code: -6, senderPid: 4240, senderUid: 1000 })).map((n) =>
      n.type === 1 ? note('CORE', 1, prstatus({ signal: 6, pid: 4240 })) : n,
    ),
    loads: [{ vaddr: 0x400000n, data: elfHead(EXE_ID) }],
  });
  const n = await readCoreNotes(Readable.from([buf]));
  t.match(n, { signal: 6, sigCode: -6, sender: { pid: 4240, uid: 1000 } });
  t.equal(n.faultAddress, undefined);
});

t.test(
  'from a stream it stops after what it needs: a 4 GiB core is read only to the executable page',
  async (t) => {
    const { stream, size, served } = syntheticCoreStream({
      notes: kernelLikeNotes(siginfo({ signo: 11, code: 2, addr: 0x10n })),
      loads: [
        { vaddr: 0x400000n, data: elfHead(EXE_ID) },
        { vaddr: 0x7f0000000000n, size: 4 * 1024 ** 3 },
      ],
    });
    const n = await readCoreNotes(stream);
    t.equal(n.buildId, EXE_ID);
    t.ok(served() < 4 * 1024 * 1024, `read ${served()} of ${size} bytes`);
    t.ok(stream.destroyed, 'the stream is destroyed once done');
  },
);

t.test('the executable is found by the auxv entry point, else by the hint, else first file', async (t) => {
  const lib = { start: 0x100000n, end: 0x101000n, pageOffset: 0n, path: '/lib/libfirst.so' };
  const files = ntFile([lib, exeFile, textFile]);
  const base = [note('CORE', 1, prstatus({ signal: 11, pid: 7 })), note('CORE', 0x46494c45, files)];
  const withAuxv = await readCoreNotes(
    Readable.from([syntheticCore({ notes: [...base, note('CORE', 6, auxv(0x401100n))] })]),
  );
  t.equal(withAuxv.exePath, '/app/server');
  const withHint = await readCoreNotes(Readable.from([syntheticCore({ notes: base })]), {
    exePath: '/app/server',
  });
  t.equal(withHint.exePath, '/app/server');
  const none = await readCoreNotes(Readable.from([syntheticCore({ notes: base })]));
  t.equal(none.exePath, '/lib/libfirst.so');
  t.match(none.problems, [/no GNU build id found at the start of \/lib\/libfirst.so/]);
});

async function errorOf(input: Buffer | string): Promise<unknown> {
  return readCoreNotes(typeof input === 'string' ? input : Readable.from([input])).then(
    () => undefined,
    (e: unknown) => e,
  );
}

t.test('bad input gets a clear error, never a crash', async (t) => {
  const good = syntheticCore({ notes: kernelLikeNotes(siginfo({ signo: 11, code: 1, addr: 1n })) });
  t.match(await errorOf(Buffer.alloc(0)), {
    name: 'CoreNotesError',
    code: CORE_ERRORS.notElf,
    message: /not an ELF core: the file is empty/,
  });
  t.match(await errorOf(Buffer.from('this is not a core dump at all, just text\n'.repeat(10))), {
    name: 'CoreNotesError',
    code: CORE_ERRORS.notElf,
    message: /starts with 74686973/,
  });
  t.match(await errorOf(good.subarray(0, 30)), {
    name: 'CoreNotesError',
    code: CORE_ERRORS.truncated,
    message: /only 30 bytes/,
  });
  const c32 = Buffer.from(good);
  c32[4] = 1;
  t.match(await errorOf(c32), { name: 'CoreNotesError', code: CORE_ERRORS.unsupported, message: /32-bit/ });
  const be = Buffer.from(good);
  be[5] = 2;
  t.match(await errorOf(be), {
    name: 'CoreNotesError',
    code: CORE_ERRORS.unsupported,
    message: /big-endian/,
  });
  const exec = Buffer.from(good);
  exec.writeUInt16LE(2, 16);
  t.match(await errorOf(exec), {
    name: 'CoreNotesError',
    code: CORE_ERRORS.notElf,
    message: /ET_EXEC|type 2/,
  });
  const farPh = Buffer.from(good);
  farPh.writeBigUInt64LE(1n << 62n, 32);
  t.match(await errorOf(farPh), {
    name: 'CoreNotesError',
    code: CORE_ERRORS.malformed,
    message: /e_phoff is absurd/,
  });
  const manyPh = Buffer.from(good);
  manyPh.writeUInt16LE(60000, 56);
  t.match(await errorOf(manyPh), {
    name: 'CoreNotesError',
    code: CORE_ERRORS.truncated,
    message: /program headers/,
  });
  const file = join(dir, 'truncated.core');
  await copyFile(core, file);
  await truncate(file, 1000);
  t.match(await errorOf(file), {
    name: 'CoreNotesError',
    code: CORE_ERRORS.truncated,
    message: /the core ends at byte 1000/,
  });
});

t.test('a core cut inside its notes keeps what was read and says where it ends', async (t) => {
  const full = syntheticCore({ notes: kernelLikeNotes(siginfo({ signo: 11, code: 1, addr: 1n })) });
  const n = await readCoreNotes(Readable.from([full.subarray(0, 64 + 56 + 400)]));
  t.equal(n.signal, 11);
  t.equal(n.tid, 4242);
  t.match(n.problems, [/truncated inside its notes/]);
});

t.test('absurd note sizes are skipped without allocating them', async (t) => {
  const before = process.memoryUsage().arrayBuffers;
  const hugeDesc = syntheticCore({
    notes: [
      note('CORE', 1, prstatus({ signal: 11, pid: 9 })),
      note('CORE', 0x46494c45, Buffer.alloc(16), 0xfffffff0),
    ],
  });
  const a = await readCoreNotes(Readable.from([hugeDesc]));
  t.equal(a.signal, 11);
  t.match(a.problems, [/claims 5\+4294967280 bytes, past the end of its segment/]);

  const hugeSegment = syntheticCore({
    notes: [
      note('CORE', 1, prstatus({ signal: 11, pid: 9 })),
      note('CORE', 0x46494c45, Buffer.alloc(16), 0xfffffff0),
    ],
    noteSegmentSize: 1n << 50n,
  });
  const b = await readCoreNotes(Readable.from([hugeSegment]));
  t.equal(b.signal, 11);
  t.match(b.problems, [/larger than 16777216 bytes: skipped/, /truncated inside its notes/]);

  const hugeCount = syntheticCore({
    notes: [
      note('CORE', 1, prstatus({ signal: 11, pid: 9 })),
      note('CORE', 0x46494c45, ntFile([exeFile], 1n << 40n)),
    ],
  });
  const c = await readCoreNotes(Readable.from([hugeCount]));
  t.match(c.problems, [/NT_FILE note claims 1099511627776 files/]);
  t.same(c.mappedFiles, []);
  t.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024, 'no large buffer was made');
});

t.test('gcore cores put the notes last: a stream reader still finds them', async (t) => {
  const names = await readdir(dir);
  t.ok(names.includes(`core.${pid}`));
  const n = await readCoreNotes(createReadStream(core));
  t.equal(n.buildId, exeBuildId);
  t.equal(n.threads, 4);
});
