import { Readable } from 'node:stream';

// Builds ELF64 little-endian x86_64 cores laid out as the kernel writes them (header, program
// headers, one PT_NOTE, then the PT_LOAD contents), with chosen note contents. For what a real
// core cannot be made to show on demand: exact signal codes and fault addresses, broken or absurd
// notes, and cores of any size produced lazily (a large load segment is never held in memory).

export interface SyntheticFile {
  start: bigint;
  end: bigint;
  /** Offset in the file, in pages of 4096 bytes. */
  pageOffset: bigint;
  path: string;
}

export interface SyntheticLoad {
  vaddr: bigint;
  /** Contents (small), or a size whose bytes come from `fill` (large, produced lazily). */
  data?: Buffer;
  size?: number;
}

export interface SyntheticNote {
  name: string;
  type: number;
  desc: Buffer;
  /** Overrides the descsz field (to lie about the size). */
  descsz?: number;
}

export interface SyntheticCoreSpec {
  notes: SyntheticNote[];
  loads?: SyntheticLoad[];
  /** Overrides the PT_NOTE segment's p_filesz. */
  noteSegmentSize?: bigint;
  /** Fills a lazily produced load: the bytes at [offset, offset+length) of that load. */
  fill?: (offset: number, length: number) => Buffer;
}

const align4 = (n: number) => Math.ceil(n / 4) * 4;

export function note(name: string, type: number, desc: Buffer, descsz?: number): SyntheticNote {
  return descsz === undefined ? { name, type, desc } : { name, type, desc, descsz };
}

function encodeNote(n: SyntheticNote): Buffer {
  const name = Buffer.from(n.name + '\0');
  const h = Buffer.alloc(12);
  h.writeUInt32LE(name.length, 0);
  h.writeUInt32LE(n.descsz ?? n.desc.length, 4);
  h.writeUInt32LE(n.type, 8);
  return Buffer.concat([
    h,
    name,
    Buffer.alloc(align4(name.length) - name.length),
    n.desc,
    Buffer.alloc(align4(n.desc.length) - n.desc.length),
  ]);
}

export function prstatus(p: {
  signal: number;
  pid: number;
  ppid?: number;
  rip?: bigint;
  rsp?: bigint;
}): Buffer {
  const d = Buffer.alloc(336);
  d.writeInt32LE(p.signal, 0);
  d.writeInt16LE(p.signal, 12);
  d.writeInt32LE(p.pid, 32);
  d.writeInt32LE(p.ppid ?? 1, 36);
  d.writeBigUInt64LE(p.rip ?? 0x401000n, 112 + 16 * 8);
  d.writeBigUInt64LE(p.rsp ?? 0x7ffc0000n, 112 + 19 * 8);
  return d;
}

export function prpsinfo(p: {
  pid: number;
  ppid?: number;
  uid: number;
  gid: number;
  comm: string;
  args: string;
}): Buffer {
  const d = Buffer.alloc(136);
  d.writeUInt32LE(p.uid, 16);
  d.writeUInt32LE(p.gid, 20);
  d.writeInt32LE(p.pid, 24);
  d.writeInt32LE(p.ppid ?? 1, 28);
  d.write(p.comm.slice(0, 15), 40);
  d.write(p.args.slice(0, 79), 56);
  return d;
}

export function siginfo(p: {
  signo: number;
  code: number;
  addr?: bigint;
  senderPid?: number;
  senderUid?: number;
}): Buffer {
  const d = Buffer.alloc(128);
  d.writeInt32LE(p.signo, 0);
  d.writeInt32LE(p.code, 8);
  if (p.addr !== undefined) d.writeBigUInt64LE(p.addr, 16);
  if (p.senderPid !== undefined) {
    d.writeInt32LE(p.senderPid, 16);
    d.writeUInt32LE(p.senderUid ?? 0, 20);
  }
  return d;
}

export function auxv(entry: bigint): Buffer {
  const d = Buffer.alloc(48);
  d.writeBigUInt64LE(6n, 0); // AT_PAGESZ
  d.writeBigUInt64LE(4096n, 8);
  d.writeBigUInt64LE(9n, 16); // AT_ENTRY
  d.writeBigUInt64LE(entry, 24);
  return d; // then AT_NULL
}

export function ntFile(files: SyntheticFile[], count?: bigint): Buffer {
  const head = Buffer.alloc(16 + files.length * 24);
  head.writeBigUInt64LE(count ?? BigInt(files.length), 0);
  head.writeBigUInt64LE(4096n, 8);
  files.forEach((f, i) => {
    head.writeBigUInt64LE(f.start, 16 + i * 24);
    head.writeBigUInt64LE(f.end, 24 + i * 24);
    head.writeBigUInt64LE(f.pageOffset, 32 + i * 24);
  });
  return Buffer.concat([head, ...files.map((f) => Buffer.from(f.path + '\0'))]);
}

/** The first page of an ELF executable whose PT_NOTE holds a GNU build id. */
export function elfHead(buildIdHex: string, pageSize = 4096): Buffer {
  const page = Buffer.alloc(pageSize);
  page.writeUInt32LE(0x464c457f, 0);
  page[4] = 2;
  page[5] = 1;
  page[6] = 1;
  page.writeUInt16LE(3, 16); // ET_DYN
  page.writeUInt16LE(62, 18);
  page.writeBigUInt64LE(64n, 32); // e_phoff
  page.writeUInt16LE(56, 54);
  page.writeUInt16LE(1, 56);
  const id = Buffer.from(buildIdHex, 'hex');
  const n = encodeNote({ name: 'GNU', type: 3, desc: id });
  page.writeUInt32LE(4, 64); // PT_NOTE
  page.writeBigUInt64LE(0x200n, 64 + 8);
  page.writeBigUInt64LE(BigInt(n.length), 64 + 32);
  page.writeBigUInt64LE(4n, 64 + 48);
  n.copy(page, 0x200);
  return page;
}

interface Layout {
  head: Buffer;
  loads: { offset: number; size: number; data?: Buffer }[];
  total: number;
}

function layout(spec: SyntheticCoreSpec): Layout {
  const loads = spec.loads ?? [];
  const phnum = 1 + loads.length;
  const notes = Buffer.concat(spec.notes.map(encodeNote));
  const eh = Buffer.alloc(64);
  eh.writeUInt32LE(0x464c457f, 0);
  eh[4] = 2;
  eh[5] = 1;
  eh[6] = 1;
  eh.writeUInt16LE(4, 16); // ET_CORE
  eh.writeUInt16LE(62, 18);
  eh.writeUInt32LE(1, 20);
  eh.writeBigUInt64LE(64n, 32);
  eh.writeUInt16LE(64, 52);
  eh.writeUInt16LE(56, 54);
  eh.writeUInt16LE(phnum, 56);
  const ph = Buffer.alloc(56 * phnum);
  const notesAt = 64 + ph.length;
  ph.writeUInt32LE(4, 0);
  ph.writeBigUInt64LE(BigInt(notesAt), 8);
  ph.writeBigUInt64LE(spec.noteSegmentSize ?? BigInt(notes.length), 32);
  ph.writeBigUInt64LE(4n, 48);
  let offset = Math.ceil((notesAt + notes.length) / 4096) * 4096;
  const placed: Layout['loads'] = [];
  loads.forEach((l, i) => {
    const size = l.data?.length ?? l.size ?? 0;
    const at = 56 * (i + 1);
    ph.writeUInt32LE(1, at);
    ph.writeBigUInt64LE(BigInt(offset), at + 8);
    ph.writeBigUInt64LE(l.vaddr, at + 16);
    ph.writeBigUInt64LE(BigInt(size), at + 32);
    ph.writeBigUInt64LE(BigInt(size), at + 40);
    ph.writeBigUInt64LE(4096n, at + 48);
    placed.push(l.data ? { offset, size, data: l.data } : { offset, size });
    offset += size;
  });
  const head = Buffer.concat([eh, ph, notes]);
  return { head, loads: placed, total: offset };
}

/** A whole small core in memory. */
export function syntheticCore(spec: SyntheticCoreSpec): Buffer {
  const { head, loads, total } = layout(spec);
  const out = Buffer.alloc(total);
  head.copy(out, 0);
  for (const l of loads) (l.data ?? spec.fill?.(0, l.size) ?? Buffer.alloc(l.size)).copy(out, l.offset);
  return out;
}

/** A core of any size as a stream made on demand; `served()` says how many bytes were read from it. */
export function syntheticCoreStream(
  spec: SyntheticCoreSpec,
  chunk = 1024 * 1024,
): { stream: Readable; size: number; served: () => number } {
  const { head, loads, total } = layout(spec);
  let served = 0;
  function* parts(): Generator<Buffer> {
    let at = 0;
    const pad = (to: number) => {
      const gap = to - at;
      at = to;
      return Buffer.alloc(gap);
    };
    yield head;
    at = head.length;
    for (const l of loads) {
      if (l.offset > at) yield pad(l.offset);
      if (l.data) {
        yield l.data;
        at += l.data.length;
        continue;
      }
      for (let o = 0; o < l.size; o += chunk) {
        const n = Math.min(chunk, l.size - o);
        yield spec.fill ? spec.fill(o, n) : Buffer.alloc(n);
        at += n;
      }
    }
  }
  const it = parts();
  const stream = new Readable({
    read() {
      const r = it.next();
      if (r.done) this.push(null);
      else {
        served += r.value.length;
        this.push(r.value);
      }
    },
  });
  return { stream, size: total, served: () => served };
}

/**
 * The handler's kernel arguments (core_pattern's specifiers, in order) for a SIGSEGV of `sleep`
 * with host and namespace pid and tid `pid`, as the kernel would pass them now.
 */
export function sleepCrashArgs(pid: number): string[] {
  const id = String(pid);
  const now = String(Math.floor(Date.now() / 1000));
  return [id, id, id, id, '11', now, '0', 'sleep', '!usr!bin!sleep', 'bench', '0', '0'];
}
