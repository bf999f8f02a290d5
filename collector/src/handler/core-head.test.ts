import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import t from 'tap';
import { readCoreNotes } from '../agent/elf-notes.ts';
import { CoreHead } from './core-head.ts';
import { note, prstatus, siginfo, syntheticCore } from '../../../test/support/synthetic-core.ts';

// The handler keeps a core's headers and notes while the core streams by: exactly the bytes
// through the last note segment, whatever the chunking, so the agent reads the same notes from
// them as from the whole core.

const core = syntheticCore({
  notes: [
    note('CORE', 1, prstatus({ signal: 11, pid: 4242, rip: 0x55d0c0a01139n, rsp: 0x7ffd1234n })),
    note('CORE', 0x53494749, siginfo({ signo: 11, code: 1, addr: 0n })),
  ],
  loads: [{ vaddr: 0x400000n, data: randomBytes(64 * 1024) }],
});
// Where the synthetic core's single note segment ends: e_phoff 64, the PT_NOTE header first.
const noteEnd = Number(core.readBigUInt64LE(64 + 8) + core.readBigUInt64LE(64 + 32));

function fed(bytes: Buffer, chunk: number, maxBytes = 1024 ** 2): Buffer {
  const head = new CoreHead(maxBytes);
  for (let at = 0; at < bytes.length && head.wanting; at += chunk) head.add(bytes.subarray(at, at + chunk));
  return head.bytes();
}

t.test('keeps the bytes through the notes, whatever the chunks', async (t) => {
  for (const chunk of [1, 7, 64, 4096, core.length]) {
    t.same(fed(core, chunk), core.subarray(0, noteEnd), `chunks of ${chunk} bytes`);
  }
  t.ok(noteEnd < core.length - 60_000, 'none of the memory after them');
});

t.test('the agent reads the crash from the head alone', async (t) => {
  const notes = await readCoreNotes(Readable.from([fed(core, 4096)]));
  t.match(notes, {
    signal: 11,
    sigCode: 1,
    faultAddress: '0x0',
    tid: 4242,
    registers: { pc: '0x55d0c0a01139', sp: '0x7ffd1234' },
  });
});

t.test('a core cut before its notes end: what came', async (t) => {
  t.same(fed(core.subarray(0, 100), 30), core.subarray(0, 100));
});

t.test('notes larger than the cap: the first maxBytes', async (t) => {
  t.same(fed(core, 512, 200), core.subarray(0, 200));
});

t.test('not an ELF core: nothing kept', async (t) => {
  t.same(fed(randomBytes(8192), 1000), Buffer.alloc(0), 'garbage');
  const exe = Buffer.from(core);
  exe.writeUInt16LE(3, 16); // ET_DYN: an ELF file, not a core
  t.same(fed(exe, 1000), Buffer.alloc(0), 'an ELF file that is no core');
  t.same(fed(Buffer.alloc(0), 1), Buffer.alloc(0), 'an empty core');
});
