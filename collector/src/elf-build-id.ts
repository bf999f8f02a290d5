// The GNU build id of an ELF file (NT_GNU_BUILD_ID in a PT_NOTE segment), read without any
// dependency: shared by the handler (modules read through /proc/<pid>/map_files while the kernel
// holds the crashing process) and the agent (the first page of each mapping kept in the core).
// 64-bit little-endian ELF only, as everything podmortem reads.

const ELF_MAGIC = 0x464c457f; // "\x7fELF" read little-endian
const PT_NOTE = 4;
const NT_GNU_BUILD_ID = 3;
/** A note segment larger than this is no build-id note segment worth reading whole. */
const MAX_NOTE_SEGMENT = 64 * 1024;
/** More program headers than this is no executable or library. */
const MAX_PHNUM = 4096;

const align = (n: number, a: number) => Math.ceil(n / a) * a;

/** True when `head` starts like a 64-bit little-endian ELF file. */
export function isElf64Le(head: Buffer): boolean {
  return head.length >= 64 && head.readUInt32LE(0) === ELF_MAGIC && head[4] === 2 && head[5] === 1;
}

/** The build id among the notes of one PT_NOTE segment, if any. */
function buildIdInNotes(notes: Buffer, alignment: number): string | undefined {
  let p = 0;
  while (p + 12 <= notes.length) {
    const namesz = notes.readUInt32LE(p);
    const descsz = notes.readUInt32LE(p + 4);
    const type = notes.readUInt32LE(p + 8);
    const nameAt = p + 12;
    const descAt = nameAt + align(namesz, alignment);
    const next = descAt + align(descsz, alignment);
    if (next > notes.length) return undefined;
    if (
      type === NT_GNU_BUILD_ID &&
      namesz === 4 &&
      notes.toString('latin1', nameAt, nameAt + 3) === 'GNU' &&
      descsz > 0
    )
      return notes.toString('hex', descAt, descAt + descsz);
    p = next;
  }
  return undefined;
}

interface NoteSegment {
  offset: number;
  size: number;
  alignment: number;
}

function noteSegments(ph: Buffer, phentsize: number, phnum: number): NoteSegment[] {
  const out: NoteSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = i * phentsize;
    if (at + 56 > ph.length) break;
    if (ph.readUInt32LE(at) !== PT_NOTE) continue;
    const offset = ph.readBigUInt64LE(at + 8);
    const size = ph.readBigUInt64LE(at + 32);
    if (size > BigInt(MAX_NOTE_SEGMENT) || offset > BigInt(Number.MAX_SAFE_INTEGER)) continue;
    out.push({
      offset: Number(offset),
      size: Number(size),
      alignment: ph.readBigUInt64LE(at + 48) === 8n ? 8 : 4,
    });
  }
  return out;
}

function programHeaders(eh: Buffer): { phoff: number; phentsize: number; phnum: number } | undefined {
  const phoff = eh.readBigUInt64LE(32);
  const phentsize = eh.readUInt16LE(54);
  const phnum = eh.readUInt16LE(56);
  if (phentsize < 56 || phnum === 0 || phnum > MAX_PHNUM || phoff > BigInt(Number.MAX_SAFE_INTEGER))
    return undefined;
  return { phoff: Number(phoff), phentsize, phnum };
}

/** The GNU build id of an ELF file whose first bytes are `head`, if its notes lie within them. */
export function buildIdOf(head: Buffer): string | undefined {
  if (!isElf64Le(head)) return undefined;
  const h = programHeaders(head);
  if (!h || h.phoff + h.phnum * h.phentsize > head.length) return undefined;
  const ph = head.subarray(h.phoff, h.phoff + h.phnum * h.phentsize);
  for (const seg of noteSegments(ph, h.phentsize, h.phnum)) {
    if (seg.offset + seg.size > head.length) continue;
    const id = buildIdInNotes(head.subarray(seg.offset, seg.offset + seg.size), seg.alignment);
    if (id !== undefined) return id;
  }
  return undefined;
}

/** Reads `length` bytes at `offset` (fewer only at the end of the file). */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/**
 * The GNU build id of a whole ELF file read through `read`: its header, program headers and
 * note segments only, wherever they lie. undefined when it is no ELF file or has no build id.
 */
export async function readElfBuildId(read: ReadAt): Promise<string | undefined> {
  const eh = await read(0, 64);
  if (!isElf64Le(eh)) return undefined;
  const h = programHeaders(eh);
  if (!h) return undefined;
  const ph = await read(h.phoff, h.phnum * h.phentsize);
  for (const seg of noteSegments(ph, h.phentsize, h.phnum)) {
    const notes = await read(seg.offset, seg.size);
    const id = buildIdInNotes(notes, seg.alignment);
    if (id !== undefined) return id;
  }
  return undefined;
}
