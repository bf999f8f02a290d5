import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants, createZstdCompress } from 'node:zlib';

// Streams a core from the kernel's pipe into a spool file, compressed, in constant memory: the
// kept bytes flow through sha256 and zstd into the file with backpressure, so at most a few
// buffers are held whatever the core's size. Past the size limit (or when free space runs short)
// bytes are still read and counted but dropped, so the kernel is never left blocked on a full
// pipe and the recorded size is what the kernel sent. At the deadline reading stops: the file keeps
// what arrived, the input is abandoned (the kernel then sees a broken pipe and lets the process go).

export interface CoreInput {
  /** Next chunk of the core, or undefined at its end (or once reading was stopped). */
  next(): Promise<Buffer | undefined>;
  /** Reading was stopped at the deadline (so the end seen is not the core's end). */
  readonly timedOut?: boolean;
  /** Reading failed (so the end seen is not the core's end). */
  readonly error?: Error;
}

/**
 * The core as it comes through a pipe (the kernel's, on stdin). At the deadline the stream is
 * destroyed, which ends a pending read at once (a pipe socket, not a blocking file read), so
 * nothing waits on the kernel any longer. Deliberately no Promise.race against a long-lived
 * deadline promise per chunk: each race would stay attached to it, keeping every chunk alive.
 */
export function pipeInput(stream: Readable, deadline: Promise<void>): CoreInput {
  const chunks = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const state: { timedOut: boolean; error?: Error } = { timedOut: false };
  // A function, not the field itself: the deadline changes it while a read is awaited.
  const timedOut = () => state.timedOut;
  void deadline.then(() => {
    state.timedOut = true;
    stream.destroy();
  });
  return {
    get timedOut() {
      return state.timedOut;
    },
    get error() {
      return state.error;
    },
    async next() {
      if (state.timedOut || state.error) return undefined;
      try {
        const r = await chunks.next();
        return r.done || timedOut() ? undefined : r.value;
      } catch (err) {
        if (!timedOut()) state.error = err instanceof Error ? err : new Error(String(err));
        return undefined;
      }
    },
  };
}

export interface WriteCoreParams {
  input: CoreInput;
  /** The file to create (a temporary spool name); removed again if the write fails. */
  path: string;
  /** Raw bytes to keep; the rest is drained. */
  limitBytes: number;
  compression: 'zstd' | 'none';
  zstdLevel: number;
  /** Called every `spaceCheckBytes` kept bytes: a reason to stop keeping, or undefined. */
  checkSpace?: () => Promise<string | undefined>;
  spaceCheckBytes?: number;
}

export interface WriteCoreResult {
  /** Raw bytes read from the input (all of them unless the deadline came first). */
  sizeBytes: number;
  /** Raw bytes kept in the file. */
  keptBytes: number;
  /** Bytes of the file (compressed). 0 when the write failed and the file was removed. */
  storedBytes: number;
  /** sha256 of the kept raw bytes. */
  sha256: string;
  /** Why not every byte was kept ('limit', 'space: …', 'deadline'), if so. */
  stopped?: string;
  /** The write failed (the file is removed); the input was drained all the same. */
  writeError?: Error;
  /** The input ended (false when the deadline stopped the reading). */
  ended: boolean;
}

export async function writeCore(p: WriteCoreParams): Promise<WriteCoreResult> {
  const hash = createHash('sha256');
  const every = p.spaceCheckBytes ?? 64 * 1024 * 1024;
  // Held in one object: the reading closures below change these, which narrowing cannot see.
  const st: { sizeBytes: number; keptBytes: number; stopped?: string; ended: boolean } = {
    sizeBytes: 0,
    keptBytes: 0,
    ended: false,
  };
  let nextCheck = every;

  const read = async (): Promise<Buffer | undefined> => {
    const r = await p.input.next();
    if (r === undefined) {
      if (p.input.timedOut) st.stopped = 'deadline';
      else if (!p.input.error) st.ended = true;
      return undefined;
    }
    st.sizeBytes += r.length;
    return r;
  };

  async function* kept(): AsyncGenerator<Buffer> {
    for (;;) {
      if (st.keptBytes >= p.limitBytes || st.stopped !== undefined) return;
      const chunk = await read();
      if (chunk === undefined) return;
      const part =
        st.keptBytes + chunk.length > p.limitBytes ? chunk.subarray(0, p.limitBytes - st.keptBytes) : chunk;
      hash.update(part);
      st.keptBytes += part.length;
      if (part.length > 0) yield part;
      if (st.keptBytes >= nextCheck && p.checkSpace) {
        nextCheck = st.keptBytes + every;
        const reason = await p.checkSpace();
        if (reason !== undefined) st.stopped = `space: ${reason}`;
      }
    }
  }

  const out = createWriteStream(p.path, {
    flags: 'wx',
    mode: 0o600,
    flush: true,
    highWaterMark: 1024 * 1024,
  });
  let writeError: Error | undefined;
  try {
    if (p.compression === 'zstd') {
      const zstd = createZstdCompress({
        params: { [constants.ZSTD_c_compressionLevel]: p.zstdLevel, [constants.ZSTD_c_checksumFlag]: 1 },
      });
      await pipeline(kept, zstd, out);
    } else {
      await pipeline(kept, out);
    }
  } catch (err) {
    writeError = err instanceof Error ? err : new Error(String(err));
  }
  // Past the limit, or after a failed write: read the rest so the kernel can finish (until the deadline).
  while (!st.ended && st.stopped !== 'deadline' && !p.input.error) {
    if ((await read()) === undefined) break;
  }
  if (st.stopped === undefined && st.sizeBytes > st.keptBytes && !writeError) st.stopped = 'limit';
  let storedBytes = 0;
  if (writeError) await rm(p.path, { force: true });
  else storedBytes = (await stat(p.path)).size;
  const result: WriteCoreResult = {
    sizeBytes: st.sizeBytes,
    keptBytes: st.keptBytes,
    storedBytes,
    sha256: hash.digest('hex'),
    ended: st.ended,
  };
  if (st.stopped !== undefined) result.stopped = st.stopped;
  if (writeError) result.writeError = writeError;
  return result;
}
