import { pipeline, Readable } from 'node:stream';
import { createZstdDecompress } from 'node:zlib';
import { Type, type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger, FastifyReply } from 'fastify';
import { dumpRelPath, isRemovedDumpStatus, type CrashEvent } from '@podmortem/contract';
import type { ByteRange, ObjectRead, StoredObject } from '@podmortem/contract/store';
import { auditDownload, ByteCounter } from './audit.ts';
import { byteSlice, parseRange, type RangeResult } from './byte-range.ts';
import { callerOf, downloadableCrash } from './crash-get.ts';
import {
  ApiError,
  PM_ERR_DUMP_GONE,
  PM_ERR_DUMP_REMOVED,
  PM_ERR_DUMP_UNREADABLE,
  PM_ERR_NO_DUMP,
  PM_ERR_RANGE_NOT_SATISFIABLE,
} from './errors.ts';
import type { RouteDeps } from './route-deps.ts';
import { CrashIdParams, errorResponses } from './schemas.ts';
import { StorageError } from './storage-reader.ts';

// GET /v1/crashes/{id}/dump: the stored core, as stored (zstd) or decompressed (?format=raw),
// with Content-Length, a strong ETag from the core's sha256, Content-Disposition and single
// byte ranges. The file is found by the contract's layout from the event, never from a path a
// request carries, and read through the storage reader's checks.

const Format = Type.Unsafe<'zstd' | 'raw'>({
  type: 'string',
  enum: ['zstd', 'raw'],
  default: 'zstd',
  description: 'zstd: the stored file; raw: the core decompressed',
});

const Binary = (description: string) => ({
  description,
  content: {
    'application/zstd': { schema: { type: 'string', format: 'binary' } },
    'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
  },
});

interface Representation {
  decompress: boolean;
  /** Unknown for a decompressed core whose raw size the event does not vouch for. */
  size: number | undefined;
  contentType: string;
  filename: string;
  etag: string;
}

/** The bytes to send: start..end inclusive, the end unknown when the size is. */
interface Span {
  start: number;
  end: number | undefined;
  partial: boolean;
}

/** The dump's key, from the event by the layout; an event naming any other file is refused. */
function dumpKeyOf(event: CrashEvent, log: FastifyBaseLogger): string {
  const { dump } = event;
  const id = event.crash.id;
  if (isRemovedDumpStatus(dump.status)) throw PM_ERR_DUMP_REMOVED(id, dump);
  if (dump.status !== 'stored' && dump.status !== 'truncated')
    throw PM_ERR_NO_DUMP(id, dump.status, dump.reason);
  let key: string;
  try {
    key = dumpRelPath(event);
  } catch (err) {
    log.warn({ err, crash_id: id }, 'crash event names an unsafe storage path');
    throw PM_ERR_DUMP_UNREADABLE(id);
  }
  if (dump.path !== undefined && dump.path !== key) {
    // An event pointing at a file outside its own pod's folder is refused, never followed.
    log.warn({ crash_id: id, path: dump.path, expected: key }, 'dump.path off the storage layout');
    throw PM_ERR_DUMP_UNREADABLE(id);
  }
  return key;
}

/** A storage read for crash `id`: gone is a 410, refused a 404, a failing backend counted. */
async function fromStorage<T>(
  deps: RouteDeps,
  id: string,
  log: FastifyBaseLogger,
  read: () => Promise<T>,
): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (err instanceof StorageError && err.problem === 'missing') throw PM_ERR_DUMP_GONE(id);
    if (err instanceof StorageError) {
      log.warn({ err, crash_id: id }, 'dump refused by the storage reader');
      throw PM_ERR_DUMP_UNREADABLE(id);
    }
    deps.telemetry.backendErrors.inc({ backend: 'storage' });
    throw err;
  }
}

function representation(event: CrashEvent, file: StoredObject, format: 'zstd' | 'raw'): Representation {
  const { dump } = event;
  const id = event.crash.id;
  const sha = dump.sha256;
  const compressed = (dump.compression ?? 'zstd') === 'zstd';
  const weak = `W/"${file.etag}"`;
  if (format === 'zstd' && compressed) {
    return {
      decompress: false,
      size: file.size,
      contentType: 'application/zstd',
      filename: `${id}.core.zst`,
      etag: sha ? `"${sha}.zst"` : weak,
    };
  }
  const rawSize = !compressed ? file.size : dump.status === 'stored' ? dump.size_bytes : undefined;
  return {
    decompress: compressed,
    size: rawSize,
    contentType: 'application/octet-stream',
    filename: `${id}.core`,
    etag: sha ? `"${sha}"` : weak,
  };
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const strong = etag.replace(/^W\//, '');
  return header.split(',').some((t) => t.trim() === '*' || t.trim().replace(/^W\//, '') === strong);
}

/** The headers every answer about the dump carries (200, 206, 304, 416). */
function describe(reply: FastifyReply, rep: Representation, sha256: string | undefined): void {
  reply.header('etag', rep.etag);
  reply.header('cache-control', 'private, no-store');
  reply.header('content-disposition', `attachment; filename="${rep.filename}"`);
  if (sha256) reply.header('x-podmortem-sha256', sha256);
}

/** The Range asked for, honoured only while If-Range (when sent) still names this representation. */
function requestedRange(
  headers: { range?: string | undefined; 'if-range'?: string | undefined },
  rep: Representation,
): RangeResult {
  if (rep.size === undefined) return { kind: 'full' };
  const ifRange = headers['if-range'];
  return ifRange === undefined || ifRange === rep.etag
    ? parseRange(headers.range, rep.size)
    : { kind: 'full' };
}

function spanOf(range: RangeResult, rep: Representation): Span {
  if (range.kind === 'partial') return { start: range.start, end: range.end, partial: true };
  return { start: 0, end: rep.size === undefined ? undefined : rep.size - 1, partial: false };
}

/** The status and length headers of the body about to be sent. */
function describeSpan(reply: FastifyReply, rep: Representation, span: Span): void {
  if (rep.size === undefined) return;
  reply.header('accept-ranges', 'bytes');
  if (span.partial) {
    reply.code(206);
    reply.header('content-range', `bytes ${span.start}-${span.end ?? 0}/${rep.size}`);
  }
  reply.header('content-length', String((span.end ?? 0) - span.start + 1));
}

/** The 416 for a range outside the `size` bytes of the representation. */
function unsatisfiable(reply: FastifyReply, rangeHeader: string | undefined, size: number): ApiError {
  reply.header('accept-ranges', 'bytes');
  return PM_ERR_RANGE_NOT_SATISFIABLE(rangeHeader ?? '', size);
}

/** Logs a body stream's failure; a download the client gave up on is no failure. */
function streamFailureLog(log: FastifyBaseLogger, id: string) {
  return (err: Error | null | undefined) => {
    if (err && err.name !== 'AbortError' && (err as { code?: string }).code !== 'ERR_STREAM_PREMATURE_CLOSE')
      log.warn({ err, crash_id: id }, 'dump stream failed');
  };
}

/**
 * The span of the dump, read with `open`, decompressed when the representation says so, through
 * a byte counter (what the audit record counts). Stream failures go to `failed`.
 */
async function dumpBody(
  open: (range?: ByteRange) => Promise<ObjectRead>,
  rep: Representation,
  span: Span,
  failed: (err: Error | null | undefined) => void,
): Promise<ByteCounter> {
  const counter = new ByteCounter();
  const { start, end } = span;
  if (!rep.decompress) {
    const file = await open(end === undefined || end < start ? { start } : { start, end });
    pipeline(file.body, counter, failed);
    return counter;
  }
  const file = await open();
  if (end !== undefined && (start > 0 || end < (rep.size ?? 0) - 1)) {
    // The slice ends before the decompressor does: it is then destroyed (its premature
    // close is expected), while the sliced body ends normally.
    const decompressed = createZstdDecompress();
    pipeline(file.body, decompressed, failed);
    pipeline(Readable.from(byteSlice(decompressed, start, end)), counter, failed);
  } else {
    pipeline(file.body, createZstdDecompress(), counter, failed);
  }
  return counter;
}

export const crashDumpRoutes: FastifyPluginCallbackTypebox<RouteDeps> = (app, deps, done) => {
  app.get(
    '/crashes/:id/dump',
    {
      exposeHeadRoute: false,
      schema: {
        tags: ['dumps'],
        summary: 'Download the core dump (Range requests supported)',
        description:
          'Needs `get` on `coredumps/dump` in the crash’s namespace. The ETag is the sha256 of the raw core ' +
          '(with `.zst` for the stored form); `X-Podmortem-Sha256` carries it too. A dump removed by retention ' +
          'or deleted by a user answers 410, its message saying when, by whom and why.',
        params: CrashIdParams,
        querystring: Type.Object({ format: Type.Optional(Format) }, { additionalProperties: false }),
        response: {
          200: Binary('The whole dump'),
          206: Binary('The requested byte range'),
          304: { description: 'Not modified (If-None-Match)', type: 'null' },
          ...errorResponses(403, 404, 410, 416),
        },
      },
    },
    async (request, reply) => {
      const id = request.params.id;
      const format = request.query.format ?? 'zstd';
      const log = request.log;
      const read = <T>(call: () => Promise<T>) => fromStorage(deps, id, log, call);
      const event = await downloadableCrash(deps, callerOf(request), id);
      const key = dumpKeyOf(event, log);
      const rep = representation(event, await read(() => deps.storage.stat(key)), format);

      if (etagMatches(request.headers['if-none-match'], rep.etag)) {
        describe(reply, rep, event.dump.sha256);
        return reply.code(304).send();
      }
      const range = requestedRange(request.headers, rep);
      if (range.kind === 'unsatisfiable') {
        describe(reply, rep, event.dump.sha256);
        throw unsatisfiable(reply, request.headers.range, rep.size ?? 0);
      }
      const span = spanOf(range, rep);
      const open = (part?: ByteRange) => read(() => deps.storage.read(key, part));
      const body = await dumpBody(open, rep, span, streamFailureLog(log, id));
      describe(reply, rep, event.dump.sha256);
      describeSpan(reply, rep, span);
      auditDownload(
        deps,
        request,
        reply,
        {
          kind: 'dump',
          namespace: event.kubernetes?.namespace,
          pod: event.kubernetes?.pod.name,
          crashId: id,
          format,
          ...(request.headers.range === undefined ? {} : { range: request.headers.range }),
        },
        body,
      );
      return reply.type(rep.contentType).send(body);
    },
  );
  done();
};
