import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream';
import { createZstdCompress } from 'node:zlib';

// A core as the spool (a local folder) holds it, read for storage: the stored dump is always
// zstd, as its name says, whatever the handler wrote.

export interface SpooledCore {
  path: string;
  /** What the spool file holds. */
  compression: 'zstd' | 'none';
}

/** Bytes of the spool file: what storing it is counted as, before any compression. */
export async function spooledBytes(core: SpooledCore): Promise<number> {
  return (await stat(core.path)).size;
}

/**
 * The core as zstd, compressed on the way when the spool holds it raw. The file is opened when
 * the first chunk is asked for and closed when the consumer stops, so a store that fails before
 * reading leaves nothing open.
 */
export async function* zstdChunksOf(core: SpooledCore): AsyncGenerator<Buffer> {
  const file = createReadStream(core.path);
  // The callback only silences the pipeline: its errors reach the reader through the returned stream.
  yield* core.compression === 'zstd' ? file : pipeline(file, createZstdCompress(), () => undefined);
}
