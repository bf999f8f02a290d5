import { pipeline, Readable } from 'node:stream';
import { createZstdDecompress } from 'node:zlib';
import { Type, type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { dumpRelPath, type CrashEvent } from '@podmortem/contract';
import type { RouteDeps } from './app.ts';
import { auditDownload, ByteCounter } from './audit.ts';
import { parseRange } from './byte-range.ts';
import { callerOf, downloadableCrash } from './crash-get.ts';
import {
  ApiError,
  PM_ERR_DUMP_GONE,
  PM_ERR_DUMP_UNREADABLE,
  PM_ERR_NO_DUMP,
  PM_ERR_RANGE_NOT_SATISFIABLE,
} from './errors.ts';
import { CrashIdParams, errorResponses } from './schemas.ts';
import { StorageError, type OpenedFile } from './storage-reader.ts';

// GET /v1/crashes/{id}/dump: the stored core, as stored (zstd) or decompressed (?format=raw),
// with Content-Length, a strong ETag from the core's sha256, Content-Disposition and single
// byte ranges. The file is found by the contract's layout from the event, never from a path a
// request carries, and read through the storage reader's checks.

/** Dumps are large: 1 MiB reads rather than the default 64 KiB mean fewer reads and chunks per download. */
const READ_CHUNK = 1 << 20;

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

/** Bytes start..end (inclusive) of a stream. */
export async function* byteSlice(source: AsyncIterable<Buffer>, start: number, end: number) {
  let pos = 0;
  for await (const chunk of source) {
    const next = pos + chunk.length;
    if (next > start) {
      const from = Math.max(0, start - pos);
      const to = Math.min(chunk.length, end + 1 - pos);
      if (to > from) yield chunk.subarray(from, to);
    }
    pos = next;
    if (pos > end) return;
  }
}

interface Representation {
  decompress: boolean;
  /** Unknown for a decompressed core whose raw size the event does not vouch for. */
  size: number | undefined;
  contentType: string;
  filename: string;
  etag: string;
}

function representation(event: CrashEvent, file: OpenedFile, format: 'zstd' | 'raw'): Representation {
  const { dump } = event;
  const id = event.crash.id;
  const sha = dump.sha256;
  const compressed = (dump.compression ?? 'zstd') === 'zstd';
  const weak = `W/"${file.size.toString(16)}-${file.mtime.getTime().toString(16)}"`;
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
          'answers 410.',
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
      const event = await downloadableCrash(deps, callerOf(request), id);
      const { dump } = event;
      if (dump.status !== 'stored' && dump.status !== 'truncated')
        throw PM_ERR_NO_DUMP(id, dump.status, dump.reason);
      let relPath: string;
      try {
        relPath = dumpRelPath(event);
      } catch (err) {
        request.log.warn({ err, crash_id: id }, 'crash event names an unsafe storage path');
        throw PM_ERR_DUMP_UNREADABLE(id);
      }
      if (dump.path !== undefined && dump.path !== relPath) {
        // An event pointing at a file outside its own pod's folder is refused, never followed.
        request.log.warn(
          { crash_id: id, path: dump.path, expected: relPath },
          'dump.path off the storage layout',
        );
        throw PM_ERR_DUMP_UNREADABLE(id);
      }
      let file: OpenedFile;
      try {
        file = await deps.storage.open(relPath);
      } catch (err) {
        if (err instanceof StorageError && err.problem === 'missing') throw PM_ERR_DUMP_GONE(id);
        if (err instanceof StorageError) {
          request.log.warn({ err, crash_id: id }, 'dump refused by the storage reader');
          throw PM_ERR_DUMP_UNREADABLE(id);
        }
        deps.telemetry.backendErrors.inc({ backend: 'storage' });
        throw err;
      }

      const rep = representation(event, file, format);
      reply.header('etag', rep.etag);
      reply.header('cache-control', 'private, no-store');
      reply.header('content-disposition', `attachment; filename="${rep.filename}"`);
      if (dump.sha256) reply.header('x-podmortem-sha256', dump.sha256);
      if (etagMatches(request.headers['if-none-match'], rep.etag)) {
        await file.handle.close();
        return reply.code(304).send();
      }

      let start = 0;
      let end = rep.size === undefined ? undefined : rep.size - 1;
      const rangeHeader = request.headers.range;
      const ifRange = request.headers['if-range'];
      if (rep.size !== undefined) {
        reply.header('accept-ranges', 'bytes');
        const range =
          ifRange === undefined || ifRange === rep.etag
            ? parseRange(rangeHeader, rep.size)
            : { kind: 'full' as const };
        if (range.kind === 'unsatisfiable') {
          await file.handle.close();
          const err = PM_ERR_RANGE_NOT_SATISFIABLE(rangeHeader ?? '', rep.size);
          throw new ApiError(err.code, err.message, 416, {
            headers: { 'content-range': `bytes */${rep.size}` },
          });
        }
        if (range.kind === 'partial') {
          start = range.start;
          end = range.end;
          reply.code(206);
          reply.header('content-range', `bytes ${start}-${end}/${rep.size}`);
        }
        reply.header('content-length', String((end ?? 0) - start + 1));
      }

      const counter = new ByteCounter();
      const done = (err: Error | null | undefined) => {
        if (
          err &&
          err.name !== 'AbortError' &&
          (err as { code?: string }).code !== 'ERR_STREAM_PREMATURE_CLOSE'
        )
          request.log.warn({ err, crash_id: id }, 'dump stream failed');
      };
      if (rep.decompress) {
        const source = file.handle.createReadStream({ highWaterMark: READ_CHUNK });
        if (end !== undefined && (start > 0 || end < (rep.size ?? 0) - 1)) {
          // The slice ends before the decompressor does: it is then destroyed (its premature
          // close is expected), while the sliced body ends normally.
          const decompressed = createZstdDecompress();
          pipeline(source, decompressed, done);
          pipeline(Readable.from(byteSlice(decompressed, start, end)), counter, done);
        } else {
          pipeline(source, createZstdDecompress(), counter, done);
        }
      } else {
        pipeline(
          file.handle.createReadStream({
            start,
            highWaterMark: READ_CHUNK,
            ...(end === undefined || end < start ? {} : { end }),
          }),
          counter,
          done,
        );
      }
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
          ...(rangeHeader === undefined ? {} : { range: rangeHeader }),
        },
        counter,
      );
      return reply.type(rep.contentType).send(counter);
    },
  );
  done();
};
