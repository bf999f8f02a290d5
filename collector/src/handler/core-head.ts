import type { CoreInput } from './core-writer.ts';

// The start of a core that says what happened: the ELF header, the program headers and the note
// segments (the kernel writes them before any memory). The handler keeps these bytes in memory
// while the core streams by, so that a crash whose dump is skipped (rate limit, quota, free space),
// cut or lost still gets what its notes say: the signal code, the fault address, the registers of
// the crashing thread, the threads and the mapped files. The agent reads them as it reads a core.
//
// Only 64-bit little-endian ELF cores are recognised (the agent's note reader reads no other). A
// core with more than 65534 segments names its program header count at its end (PN_XNUM), so
// where its notes end is not known up front: the first `maxBytes` are kept and the reader takes
// what it can.

const ELF_HEADER_BYTES = 64;
const ELF_MAGIC = 0x464c457f; // "\x7fELF" read little-endian
const ET_CORE = 4;
const PT_NOTE = 4;
const PN_XNUM = 0xffff;

export class CoreHead {
  readonly #maxBytes: number;
  readonly #chunks: Buffer[] = [];
  #bytes = 0;
  /** Bytes wanted in all: unknown until the program headers are in, 0 when not a core we read. */
  #wanted: number | undefined;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** Whether more bytes are still wanted. */
  get wanting(): boolean {
    return this.#wanted === undefined ? this.#bytes < this.#maxBytes : this.#bytes < this.#wanted;
  }

  /** Takes a copy of what it still wants of the next chunk of the core. */
  add(chunk: Buffer): void {
    if (!this.wanting) return;
    const limit = this.#wanted ?? this.#maxBytes;
    const part = chunk.subarray(0, limit - this.#bytes);
    this.#chunks.push(Buffer.from(part));
    this.#bytes += part.length;
    if (this.#wanted === undefined) this.#wanted = this.#noteEnd();
  }

  /** The bytes kept: the headers and notes, fewer if the core ended (or was cut) before them. */
  bytes(): Buffer {
    const all = Buffer.concat(this.#chunks, this.#bytes);
    return all.subarray(0, this.#wanted ?? all.length);
  }

  /** Where the last note segment ends (at most maxBytes), 0 for no core we read, or not known yet. */
  #noteEnd(): number | undefined {
    const head = Buffer.concat(this.#chunks, this.#bytes);
    this.#chunks.splice(0, this.#chunks.length, head);
    if (head.length < ELF_HEADER_BYTES) return undefined;
    if (head.readUInt32LE(0) !== ELF_MAGIC || head[4] !== 2 || head[5] !== 1) return 0;
    if (head.readUInt16LE(16) !== ET_CORE) return 0;
    const phoff = head.readBigUInt64LE(32);
    const phentsize = head.readUInt16LE(54);
    const phnum = head.readUInt16LE(56);
    if (phnum === PN_XNUM) return this.#maxBytes;
    const tableEnd = phoff + BigInt(phentsize * phnum);
    if (phentsize < 56 || tableEnd > BigInt(this.#maxBytes)) return this.#maxBytes;
    if (head.length < Number(tableEnd)) return undefined;
    let end = Number(tableEnd);
    for (let i = 0; i < phnum; i++) {
      const at = Number(phoff) + i * phentsize;
      if (head.readUInt32LE(at) !== PT_NOTE) continue;
      const segmentEnd = head.readBigUInt64LE(at + 8) + head.readBigUInt64LE(at + 32);
      end = Math.max(end, segmentEnd > BigInt(this.#maxBytes) ? this.#maxBytes : Number(segmentEnd));
    }
    return end;
  }
}

/** The same input, keeping the core's head on the way. */
export function keepingHead(input: CoreInput, head: CoreHead): CoreInput {
  return {
    async next() {
      const chunk = await input.next();
      if (chunk && head.wanting) head.add(chunk);
      return chunk;
    },
    get timedOut() {
      return input.timedOut;
    },
    get error() {
      return input.error;
    },
  };
}
