import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { createZstdDecompress } from 'node:zlib';
import { bytes } from './format.ts';
import { CliError, EXIT, type ApiClient } from './client.ts';

// `podmortem dump`: downloads a crash's core to a file, verifying the sha256 the crash event
// records for the raw core (hashed as it arrives for ?format=raw; for the stored zstd form, by
// decompressing the file afterwards). The file appears under its name only once verified.
// `podmortem debug` downloads modules by build id with downloadFile, whole or not at all too.

export interface DownloadOptions {
  format: 'raw' | 'zstd';
  /** The sha256 of the raw core, from the crash event; undefined: nothing to verify against. */
  expectedSha256: string | undefined;
  progress: NodeJS.WritableStream | undefined;
}

export interface DownloadResult {
  bytes: number;
  sha256: string | undefined;
  verified: boolean;
}

class Progress extends Transform {
  private done = 0;
  private last = 0;
  private readonly total: number | undefined;
  private readonly out: NodeJS.WritableStream | undefined;
  private readonly started = Date.now();

  constructor(total: number | undefined, out: NodeJS.WritableStream | undefined) {
    super();
    this.total = total;
    this.out = out;
  }

  get bytes(): number {
    return this.done;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err: null, chunk: Buffer) => void): void {
    this.done += chunk.length;
    const now = Date.now();
    if (now - this.last >= 250) {
      this.last = now;
      this.report(false);
    }
    cb(null, chunk);
  }

  override _flush(cb: () => void): void {
    this.report(true);
    cb();
  }

  private report(final: boolean): void {
    if (!this.out) return;
    const secs = Math.max((Date.now() - this.started) / 1000, 0.001);
    const pct = this.total ? ` ${Math.floor((this.done / this.total) * 100)}%` : '';
    const of = this.total ? ` of ${bytes(this.total)}` : '';
    this.out.write(`\r${bytes(this.done)}${of}${pct}  ${bytes(this.done / secs)}/s${final ? '\n' : ''}`);
  }
}

function hashSink(hash: ReturnType<typeof createHash>): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb();
    },
  });
}

export async function downloadDump(
  api: ApiClient,
  id: string,
  file: string,
  options: DownloadOptions,
): Promise<DownloadResult> {
  const res = await api.fetch(`/v1/crashes/${encodeURIComponent(id)}/dump`, { format: options.format });
  if (!res.body) throw new CliError(EXIT.error, 'the API sent no body');
  const length = Number(res.headers.get('content-length') ?? Number.NaN);
  const progress = new Progress(Number.isFinite(length) ? length : undefined, options.progress);
  const partial = `${file}.part`;
  const hash = createHash('sha256');
  const tee = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (options.format === 'raw') hash.update(chunk);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(
      Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
      progress,
      tee,
      createWriteStream(partial, { mode: 0o600 }),
    );
    if (Number.isFinite(length) && progress.bytes !== length)
      throw new CliError(EXIT.error, `download cut short: ${progress.bytes} of ${length} bytes`);
    if (options.format === 'zstd')
      await pipeline(createReadStream(partial), createZstdDecompress(), hashSink(hash));
  } catch (err) {
    await rm(partial, { force: true });
    if (err instanceof CliError) throw err;
    throw new CliError(EXIT.error, `download failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  const sha256 = hash.digest('hex');
  if (options.expectedSha256 !== undefined && sha256 !== options.expectedSha256) {
    await rm(partial, { force: true });
    throw new CliError(
      EXIT.verification,
      `sha256 mismatch: the core is ${sha256}, the crash event records ${options.expectedSha256}; nothing kept`,
    );
  }
  await rename(partial, file);
  return { bytes: progress.bytes, sha256, verified: options.expectedSha256 !== undefined };
}

/**
 * What the API serves at `path` (a module by build id) into `file`, which appears only once all
 * of the announced Content-Length has arrived. Returns the number of bytes.
 */
export async function downloadFile(
  api: ApiClient,
  path: string,
  file: string,
  mode = 0o600,
): Promise<number> {
  const res = await api.fetch(path);
  if (!res.body) throw new CliError(EXIT.error, 'the API sent no body');
  const length = Number(res.headers.get('content-length') ?? Number.NaN);
  const counter = new Progress(Number.isFinite(length) ? length : undefined, undefined);
  const partial = `${file}.part`;
  try {
    await pipeline(
      Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
      counter,
      createWriteStream(partial, { mode }),
    );
    if (Number.isFinite(length) && counter.bytes !== length)
      throw new CliError(EXIT.error, `download of ${path} cut short: ${counter.bytes} of ${length} bytes`);
  } catch (err) {
    await rm(partial, { force: true });
    if (err instanceof CliError) throw err;
    throw new CliError(
      EXIT.error,
      `download of ${path} failed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  await rename(partial, file);
  return counter.bytes;
}
