import type { Readable } from 'node:stream';
import { PodmortemError } from '@podmortem/contract/runtime';
import { CoreEndError, FileCoreSource, StreamCoreSource, type CoreSource } from './core-source.ts';
import { buildIdOf } from '../elf-build-id.ts';

// Reads what a Linux ELF core says about the crash, without a debugger: the signal and the thread
// that took it (NT_PRSTATUS, NT_SIGINFO), the command (NT_PRPSINFO), the mapped files (NT_FILE),
// and the GNU build id of the main executable (and optionally of every mapped ELF file), taken
// from the file's first page, which the kernel keeps in the core (coredump_filter bit 4, on by
// default). Cores can be GiB and arrive as a decompressing stream, so it reads only the ELF header,
// the program headers, the note segments and the first bytes of the wanted mappings, in file order,
// keeps no more than one note at a time, and stops as soon as it has what it wants.
//
// Supported: 64-bit little-endian cores (ELFCLASS64, ELFDATA2LSB, ET_CORE). The note layouts read
// here are the common Linux ones shared by x86_64 and aarch64; registers are read for x86_64 only.
// Tested with x86_64 cores from the kernel and from gdb's gcore.

export const CORE_ERRORS = {
  notElf: 'PM_ERR_CORE_NOT_ELF',
  unsupported: 'PM_ERR_CORE_UNSUPPORTED',
  truncated: 'PM_ERR_CORE_TRUNCATED',
  malformed: 'PM_ERR_CORE_MALFORMED',
} as const;
export type CoreErrorCode = (typeof CORE_ERRORS)[keyof typeof CORE_ERRORS];

/** The core cannot be read at all (its header or program headers); the message says why. */
export class CoreNotesError extends PodmortemError {
  constructor(code: CoreErrorCode, message: string, cause?: unknown) {
    super(code, message, cause === undefined ? {} : { cause });
    this.name = 'CoreNotesError';
  }
}

export interface MappedFile {
  /** Start and end of the mapping in the process, hex ('0x55d0c0a00000'). */
  start: string;
  end: string;
  /** Offset of the mapping in the file, in bytes. */
  fileOffset: number;
  path: string;
  /** GNU build id of the file (hex), on the mapping at offset 0 when its first page is in the core. */
  buildId?: string;
}

export interface CoreNotes {
  /** ELF e_machine name: 'x86_64', 'aarch64', or 'machine <n>'. */
  machine: string;
  /** The signal that killed the process (pr_cursig of the crashing thread, else si_signo). */
  signal?: number;
  /** si_code of NT_SIGINFO: > 0 the kernel raised it (a fault), <= 0 a process sent it. */
  sigCode?: number;
  /** Faulting address (hex) for SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP raised by the kernel. */
  faultAddress?: string;
  /** Who sent the signal, when a process did (si_code <= 0): pid and uid as the sender's namespace saw them. */
  sender?: { pid: number; uid: number };
  /** Process id (NT_PRPSINFO pr_pid, else the crashing thread's), as the process's pid namespace saw it. */
  pid?: number;
  /** Thread that took the signal: the first NT_PRSTATUS, which the kernel writes for the dumping thread. */
  tid?: number;
  ppid?: number;
  /** pr_fname: comm, at most 15 bytes. */
  comm?: string;
  /** pr_psargs: the command line, arguments joined by spaces, cut by the kernel at 80 bytes. */
  args?: string;
  uid?: number;
  gid?: number;
  /** Threads in the core (NT_PRSTATUS notes). */
  threads: number;
  /** x86_64 only: instruction and stack pointers of the crashing thread (hex). */
  registers?: { pc: string; sp: string };
  mappedFiles: MappedFile[];
  /** The main executable: the mapped file holding the auxv entry point (else the hint, else the first file). */
  exePath?: string;
  buildId?: string;
  /** Things that could not be read, each a sentence; the fields above hold what could. */
  problems: string[];
}

export interface ReadCoreNotesOptions {
  /** The executable's path if known otherwise (kernel %E, /proc/<pid>/exe): used when auxv is missing. */
  exePath?: string;
  /**
   * Also read the build id of every mapped ELF file, not only the executable's. From a stream this
   * usually means reading most of the core (libraries are mapped high, after the heap).
   */
  moduleBuildIds?: boolean;
  /** Largest note kept in memory (NT_FILE grows with the mappings); larger ones are skipped. */
  maxNoteBytes?: number;
}

const ELF_MAGIC = 0x464c457f; // "\x7fELF" read little-endian
const ET_CORE = 4;
const PT_LOAD = 1;
const PT_NOTE = 4;
const PN_XNUM = 0xffff;
const NT_PRSTATUS = 1;
const NT_PRPSINFO = 3;
const NT_AUXV = 6;
const NT_SIGINFO = 0x53494749;
const NT_FILE = 0x46494c45;
const AT_ENTRY = 9n;
const EM_X86_64 = 62;
const EM_AARCH64 = 183;
const FAULT_SIGNALS = new Set([4, 5, 7, 8, 11]); // SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV
/** Bytes of a mapped file's start read for its build id: the kernel dumps one page; allow larger pages. */
const HEAD_BYTES = 16 * 1024;
const MAX_NAME = 256;
const MAX_FILES = 1 << 20;

interface Segment {
  type: number;
  offset: number;
  vaddr: bigint;
  filesz: number;
  memsz: bigint;
}

const hex = (v: bigint) => '0x' + v.toString(16);

function machineName(m: number): string {
  if (m === EM_X86_64) return 'x86_64';
  if (m === EM_AARCH64) return 'aarch64';
  return `machine ${m}`;
}

function safeNumber(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new CoreNotesError(CORE_ERRORS.malformed, `${what} is absurd (${hex(v)})`);
  return Number(v);
}

function cString(buf: Buffer, start: number, max: number): string {
  const slice = buf.subarray(start, start + max);
  const nul = slice.indexOf(0);
  return slice.subarray(0, nul === -1 ? slice.length : nul).toString('utf8');
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;

/** Reads the notes of a core from a file path, a readable stream of the raw core, or a CoreSource. */
export async function readCoreNotes(
  input: string | Readable | CoreSource,
  options: ReadCoreNotesOptions = {},
): Promise<CoreNotes> {
  const source =
    typeof input === 'string'
      ? await FileCoreSource.open(input)
      : 'read' in input && 'random' in input
        ? input
        : new StreamCoreSource(input);
  try {
    return await new NoteReader(source, options).run();
  } finally {
    await source.close();
  }
}

class NoteReader {
  readonly #src: CoreSource;
  readonly #opts: ReadCoreNotesOptions;
  readonly #maxNote: number;
  readonly #notes: CoreNotes = { machine: '', threads: 0, mappedFiles: [], problems: [] };
  #machine = 0;
  #entry: bigint | undefined;
  /** Build ids found at the start of loaded segments, by the segment's address. */
  readonly #headIds = new Map<bigint, string>();
  #notesRead = false;
  #truncated = false;

  constructor(src: CoreSource, opts: ReadCoreNotesOptions) {
    this.#src = src;
    this.#opts = opts;
    this.#maxNote = opts.maxNoteBytes ?? 16 * 1024 * 1024;
  }

  async #read(offset: number, length: number, what: string): Promise<Buffer> {
    try {
      return await this.#src.read(offset, length);
    } catch (err) {
      if (err instanceof CoreEndError)
        throw new CoreNotesError(
          CORE_ERRORS.truncated,
          `the core ends at byte ${err.size}, inside ${what}`,
          err,
        );
      throw err;
    }
  }

  async run(): Promise<CoreNotes> {
    const segments = await this.#headers();
    const notes = segments.filter((s) => s.type === PT_NOTE);
    const loads = segments.filter((s) => s.type === PT_LOAD && s.filesz > 0);
    if (notes.length === 0) this.#notes.problems.push('the core has no note segment');

    if (this.#src.random) {
      for (const seg of notes) await this.#noteSegment(seg);
      this.#afterNotes();
      for (const seg of this.#wantedLoads(loads)) {
        await this.#loadHead(seg);
        if (this.#truncated) break;
      }
    } else {
      // Forward only: visit the notes and the segment heads in file order. Heads met before the
      // notes are examined blindly (any ELF header found is remembered by address); after the notes,
      // only the mappings wanted.
      const lastNote = notes.reduce((m, s) => Math.max(m, s.offset), -1);
      const regions = [...notes, ...loads].sort((a, b) => a.offset - b.offset);
      let wanted: Set<Segment> | undefined;
      for (const seg of regions) {
        if (seg.type === PT_NOTE) {
          await this.#noteSegment(seg);
          if (seg.offset === lastNote) this.#afterNotes();
          continue;
        }
        if (this.#notesRead) {
          wanted ??= new Set(this.#wantedLoads(loads));
          if (wanted.size === 0) break;
          if (!wanted.has(seg)) continue;
          wanted.delete(seg);
        }
        await this.#loadHead(seg);
        if (this.#truncated) break;
      }
    }
    this.#resolveBuildIds();
    return this.#notes;
  }

  async #headers(): Promise<Segment[]> {
    let eh: Buffer;
    try {
      eh = await this.#src.read(0, 64);
    } catch (err) {
      if (err instanceof CoreEndError)
        throw new CoreNotesError(
          err.size === 0 ? CORE_ERRORS.notElf : CORE_ERRORS.truncated,
          err.size === 0 ? 'not an ELF core: the file is empty' : `not an ELF core: only ${err.size} bytes`,
          err,
        );
      throw err;
    }
    if (eh.readUInt32LE(0) !== ELF_MAGIC)
      throw new CoreNotesError(
        CORE_ERRORS.notElf,
        `not an ELF core: the file starts with ${eh.subarray(0, 4).toString('hex')}, not 7f454c46`,
      );
    const cls = eh[4];
    const data = eh[5];
    if (cls !== 2)
      throw new CoreNotesError(
        CORE_ERRORS.unsupported,
        `unsupported ELF core: ${cls === 1 ? '32-bit (ELFCLASS32)' : `class ${cls}`}; only 64-bit cores are read`,
      );
    if (data !== 1)
      throw new CoreNotesError(
        CORE_ERRORS.unsupported,
        `unsupported ELF core: ${data === 2 ? 'big-endian (ELFDATA2MSB)' : `data encoding ${data}`}; only little-endian cores are read`,
      );
    const type = eh.readUInt16LE(16);
    if (type !== ET_CORE)
      throw new CoreNotesError(CORE_ERRORS.notElf, `not an ELF core: ELF type ${type}, not ET_CORE (4)`);
    this.#machine = eh.readUInt16LE(18);
    this.#notes.machine = machineName(this.#machine);
    const phoff = safeNumber(eh.readBigUInt64LE(32), 'e_phoff');
    const phentsize = eh.readUInt16LE(54);
    let phnum = eh.readUInt16LE(56);
    if (phentsize < 56)
      throw new CoreNotesError(
        CORE_ERRORS.malformed,
        `program header entries of ${phentsize} bytes (expected 56)`,
      );
    if (phnum === PN_XNUM) {
      // More than 65534 segments: the real count is in section header 0, at the end of the core.
      if (!this.#src.random)
        throw new CoreNotesError(
          CORE_ERRORS.unsupported,
          'the core has more than 65534 segments (PN_XNUM), which can only be read from a file, not a stream',
        );
      const shoff = safeNumber(eh.readBigUInt64LE(40), 'e_shoff');
      const sh0 = await this.#read(shoff, 64, 'section header 0');
      phnum = sh0.readUInt32LE(44);
    }
    if (phnum === 0) throw new CoreNotesError(CORE_ERRORS.malformed, 'the core has no program headers');
    const ph = await this.#read(phoff, phnum * phentsize, 'the program headers');
    const segments: Segment[] = [];
    for (let i = 0; i < phnum; i++) {
      const at = i * phentsize;
      segments.push({
        type: ph.readUInt32LE(at),
        offset: safeNumber(ph.readBigUInt64LE(at + 8), `segment ${i} offset`),
        vaddr: ph.readBigUInt64LE(at + 16),
        filesz: safeNumber(ph.readBigUInt64LE(at + 32), `segment ${i} size`),
        memsz: ph.readBigUInt64LE(at + 40),
      });
    }
    return segments;
  }

  async #noteSegment(seg: Segment): Promise<void> {
    let at = 0;
    try {
      while (at + 12 <= seg.filesz) {
        const h = await this.#read(seg.offset + at, 12, 'a note header');
        const namesz = h.readUInt32LE(0);
        const descsz = h.readUInt32LE(4);
        const type = h.readUInt32LE(8);
        const nameLen = align(namesz, 4);
        const descLen = align(descsz, 4);
        if (at + 12 + nameLen + descLen > seg.filesz) {
          this.#notes.problems.push(
            `a note at byte ${seg.offset + at} claims ${namesz}+${descsz} bytes, past the end of its segment; the rest of the segment is ignored`,
          );
          return;
        }
        at += 12;
        let name = '';
        if (namesz <= MAX_NAME) {
          name = cString(await this.#read(seg.offset + at, nameLen, 'a note name'), 0, namesz);
        }
        at += nameLen;
        if (this.#wantsNote(name, type)) {
          if (descsz > this.#maxNote) {
            this.#notes.problems.push(
              `note type ${type} of ${descsz} bytes is larger than ${this.#maxNote} bytes: skipped`,
            );
          } else {
            this.#note(type, await this.#read(seg.offset + at, descsz, `note type ${type}`));
          }
        }
        at += descLen;
      }
    } catch (err) {
      if (!(err instanceof CoreNotesError) || err.code !== CORE_ERRORS.truncated) throw err;
      if (this.#notes.threads === 0) throw err;
      this.#notes.problems.push(`the core is truncated inside its notes: ${err.message}`);
    }
  }

  #wantsNote(name: string, type: number): boolean {
    if (name !== 'CORE') return false;
    return [NT_PRSTATUS, NT_PRPSINFO, NT_AUXV, NT_SIGINFO, NT_FILE].includes(type);
  }

  #note(type: number, d: Buffer): void {
    const n = this.#notes;
    const short = (size: number, what: string) => {
      if (d.length >= size) return false;
      n.problems.push(`${what} note of ${d.length} bytes is shorter than ${size}: skipped`);
      return true;
    };
    switch (type) {
      case NT_PRSTATUS: {
        if (short(112, 'NT_PRSTATUS')) return;
        n.threads++;
        if (n.threads > 1) return;
        // struct elf_prstatus: pr_info {si_signo, si_code, si_errno} at 0, pr_cursig at 12, pr_pid at 32.
        const cursig = d.readInt16LE(12);
        const signo = d.readInt32LE(0);
        n.signal = cursig !== 0 ? cursig : signo !== 0 ? signo : (n.signal ?? 0);
        n.tid = d.readInt32LE(32);
        n.pid ??= n.tid;
        n.ppid ??= d.readInt32LE(36);
        if (this.#machine === EM_X86_64 && d.length >= 112 + 27 * 8) {
          // pr_reg (user_regs_struct) at 112: rip is register 16, rsp register 19.
          n.registers = {
            pc: hex(d.readBigUInt64LE(112 + 16 * 8)),
            sp: hex(d.readBigUInt64LE(112 + 19 * 8)),
          };
        }
        return;
      }
      case NT_PRPSINFO: {
        if (short(136, 'NT_PRPSINFO')) return;
        // struct elf_prpsinfo: pr_uid 16, pr_gid 20, pr_pid 24, pr_ppid 28, pr_fname[16] 40, pr_psargs[80] 56.
        n.uid = d.readUInt32LE(16);
        n.gid = d.readUInt32LE(20);
        n.pid = d.readInt32LE(24);
        n.ppid = d.readInt32LE(28);
        n.comm = cString(d, 40, 16);
        n.args = cString(d, 56, 80).trimEnd();
        return;
      }
      case NT_SIGINFO: {
        if (short(24, 'NT_SIGINFO')) return;
        // siginfo_t: si_signo 0, si_errno 4, si_code 8, then the union at 16 (si_addr, or si_pid/si_uid).
        const signo = d.readInt32LE(0);
        const code = d.readInt32LE(8);
        if (n.signal === undefined || n.signal === 0) n.signal = signo;
        n.sigCode = code;
        if (code > 0 && FAULT_SIGNALS.has(signo)) n.faultAddress = hex(d.readBigUInt64LE(16));
        else if (code <= 0) n.sender = { pid: d.readInt32LE(16), uid: d.readUInt32LE(20) };
        return;
      }
      case NT_AUXV: {
        for (let at = 0; at + 16 <= d.length; at += 16) {
          const key = d.readBigUInt64LE(at);
          if (key === 0n) break;
          if (key === AT_ENTRY) this.#entry = d.readBigUInt64LE(at + 8);
        }
        return;
      }
      case NT_FILE: {
        this.#fileNote(d);
        return;
      }
    }
  }

  #fileNote(d: Buffer): void {
    // long count; long page_size; {long start, end, file_ofs (pages)}[count]; char names[count][] (NUL-separated)
    if (d.length < 16) {
      this.#notes.problems.push('NT_FILE note shorter than its header: skipped');
      return;
    }
    const count = d.readBigUInt64LE(0);
    const pageSize = d.readBigUInt64LE(8);
    if (count > BigInt(MAX_FILES) || 16n + count * 24n > BigInt(d.length)) {
      this.#notes.problems.push(
        `NT_FILE note claims ${count} files, more than its ${d.length} bytes hold: skipped`,
      );
      return;
    }
    const files: MappedFile[] = [];
    let name = 16 + Number(count) * 24;
    for (let i = 0; i < Number(count); i++) {
      const at = 16 + i * 24;
      const end = d.indexOf(0, name);
      if (end === -1) {
        this.#notes.problems.push(
          `NT_FILE note: the name of file ${i} runs past the note; the rest are skipped`,
        );
        break;
      }
      const offset = d.readBigUInt64LE(at + 16) * pageSize;
      files.push({
        start: hex(d.readBigUInt64LE(at)),
        end: hex(d.readBigUInt64LE(at + 8)),
        fileOffset: offset > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(offset),
        path: d.toString('utf8', name, end),
      });
      name = end + 1;
    }
    this.#notes.mappedFiles = files;
  }

  /** Once every note is read (auxv may come after NT_FILE): which mapped file is the executable. */
  #afterNotes(): void {
    this.#notesRead = true;
    const exe = this.#exePath(this.#notes.mappedFiles);
    if (exe !== undefined) this.#notes.exePath = exe;
  }

  #exePath(files: MappedFile[]): string | undefined {
    const entry = this.#entry;
    if (entry !== undefined) {
      const f = files.find((f) => BigInt(f.start) <= entry && entry < BigInt(f.end));
      if (f) return f.path;
    }
    const hint = this.#opts.exePath;
    if (hint !== undefined) {
      const f = files.find((f) => f.path === hint || f.path === hint.replace(/ \(deleted\)$/, ''));
      if (f) return f.path;
    }
    return files[0]?.path;
  }

  /** The loaded segments holding the start (offset 0) of the wanted files. */
  #wantedLoads(loads: Segment[]): Segment[] {
    const n = this.#notes;
    const wantedPaths = this.#opts.moduleBuildIds
      ? undefined
      : new Set(n.exePath === undefined ? [] : [n.exePath]);
    const starts = new Set<bigint>();
    for (const f of n.mappedFiles) {
      if (f.fileOffset !== 0) continue;
      if (wantedPaths && !wantedPaths.has(f.path)) continue;
      const start = BigInt(f.start);
      if (this.#headIds.has(start)) continue;
      starts.add(start);
    }
    return loads.filter((s) => starts.has(s.vaddr));
  }

  async #loadHead(seg: Segment): Promise<void> {
    const size = Math.min(seg.filesz, HEAD_BYTES);
    if (size < 64) return;
    try {
      const start = await this.#read(seg.offset, 64, 'the start of a mapped file');
      if (start.readUInt32LE(0) !== ELF_MAGIC) return;
      const rest = await this.#read(seg.offset + 64, size - 64, 'the start of a mapped file');
      const id = buildIdOf(Buffer.concat([start, rest]));
      if (id !== undefined) this.#headIds.set(seg.vaddr, id);
    } catch (err) {
      if (!(err instanceof CoreNotesError) || err.code !== CORE_ERRORS.truncated || !this.#notesRead)
        throw err;
      this.#notes.problems.push(`the core is truncated: ${err.message}`);
      this.#truncated = true;
    }
  }

  #resolveBuildIds(): void {
    const n = this.#notes;
    for (const f of n.mappedFiles) {
      // The same answer from a file and a stream: a stream met every head before late notes.
      if (f.fileOffset !== 0 || (!this.#opts.moduleBuildIds && f.path !== n.exePath)) continue;
      const id = this.#headIds.get(BigInt(f.start));
      if (id !== undefined) f.buildId = id;
    }
    if (n.exePath === undefined) {
      if (n.mappedFiles.length === 0)
        n.problems.push('no mapped files (NT_FILE) in the core: no executable build id');
      return;
    }
    const exe = n.mappedFiles.find((f) => f.path === n.exePath && f.fileOffset === 0);
    if (exe?.buildId !== undefined) {
      n.buildId = exe.buildId;
      return;
    }
    n.problems.push(
      exe === undefined
        ? `the executable ${n.exePath} has no mapping at file offset 0: no build id`
        : `no GNU build id found at the start of ${n.exePath} in the core (its first page was not dumped, or it has none)`,
    );
  }
}
