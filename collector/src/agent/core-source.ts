import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';

// Byte access to a core for the ELF note reader. A core can be GiB and the spool keeps it zstd
// compressed, so the reader must work from a decompressing stream: forward only, never holding
// more than the bytes asked for. A plain file also allows going back (random access), which
// matters for cores whose notes come after the memory (gdb's gcore writes them last).

export class CoreEndError extends Error {
  readonly offset: number;
  /** Bytes the source holds in all (known once its end was reached). */
  readonly size: number;
  constructor(offset: number, length: number, size: number) {
    super(`the core ends at byte ${size}, before bytes ${offset}..${offset + length}`);
    this.name = 'CoreEndError';
    this.offset = offset;
    this.size = size;
  }
}

export interface CoreSource {
  /** Whether read() may go back before earlier reads (a file) or only forward (a stream). */
  readonly random: boolean;
  /** Exactly `length` bytes at `offset`; CoreEndError when the core is shorter. */
  read(offset: number, length: number): Promise<Buffer>;
  /** Stops reading (a stream is destroyed: the reader stops early). Safe twice. */
  close(): Promise<void>;
}

export class FileCoreSource implements CoreSource {
  readonly random = true;
  readonly #handle: FileHandle;
  #closed = false;

  private constructor(handle: FileHandle) {
    this.#handle = handle;
  }

  static async open(path: string): Promise<FileCoreSource> {
    return new FileCoreSource(await open(path, 'r'));
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.#handle.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) throw new CoreEndError(offset, length, offset + got);
      got += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#handle.close();
  }
}

/** A forward-only view of a readable stream: skipped bytes are read and dropped, never kept. */
export class StreamCoreSource implements CoreSource {
  readonly random = false;
  readonly #stream: Readable;
  readonly #chunks: AsyncIterator<Buffer>;
  #pending: Buffer | undefined;
  #position = 0;
  #ended = false;
  #closed = false;

  constructor(stream: Readable) {
    this.#stream = stream;
    this.#chunks = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  get position(): number {
    return this.#position;
  }

  async #next(): Promise<Buffer | undefined> {
    if (this.#pending) {
      const p = this.#pending;
      this.#pending = undefined;
      return p;
    }
    if (this.#ended) return undefined;
    const r = await this.#chunks.next();
    if (r.done) {
      this.#ended = true;
      return undefined;
    }
    return Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (offset < this.#position)
      throw new RangeError(`stream core source: byte ${offset} was already passed (at ${this.#position})`);
    while (this.#position < offset) {
      const chunk = await this.#next();
      if (!chunk) throw new CoreEndError(offset, length, this.#position);
      const drop = Math.min(chunk.length, offset - this.#position);
      this.#position += drop;
      if (drop < chunk.length) this.#pending = chunk.subarray(drop);
    }
    const out = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const chunk = await this.#next();
      if (!chunk) throw new CoreEndError(offset, length, this.#position);
      const take = Math.min(chunk.length, length - got);
      chunk.copy(out, got, 0, take);
      got += take;
      this.#position += take;
      if (take < chunk.length) this.#pending = chunk.subarray(take);
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#pending = undefined;
    this.#stream.destroy();
    await this.#chunks.return?.();
  }
}
