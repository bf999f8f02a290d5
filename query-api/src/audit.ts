import { Transform } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Telemetry } from './telemetry.ts';

// Every download leaves an audit record: one JSON log line with `audit: true` (who, which crash,
// pod or build id, when, how many bytes, whether it completed) and the download counters. A module
// asked for by build id and refused leaves one too (status 404, no bytes): build ids probed. Every
// dump deletion asked for leaves one as well, refused or not.

export interface AuditSubject {
  kind: 'dump' | 'archive' | 'executable' | 'debuginfo';
  namespace: string | undefined;
  buildId?: string;
  crashId?: string;
  pod?: string;
  podUids?: string[];
  format?: string;
  range?: string;
  files?: number;
}

/** A pass-through that counts the bytes it lets by. */
export class ByteCounter extends Transform {
  bytes = 0;
  constructor() {
    super({ highWaterMark: 1 << 20 });
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (err: null, chunk: Buffer) => void): void {
    this.bytes += chunk.length;
    done(null, chunk);
  }
}

export function auditDownload(
  deps: { logger: Logger; telemetry: Telemetry },
  request: FastifyRequest,
  reply: FastifyReply,
  subject: AuditSubject,
  counter: ByteCounter,
): void {
  const started = new Date();
  let finished = false;
  reply.raw.once('finish', () => (finished = true));
  reply.raw.once('close', () => {
    const complete = finished || reply.raw.writableFinished;
    const namespace = subject.namespace ?? '_host';
    deps.telemetry.downloads.inc({
      kind: subject.kind,
      namespace,
      outcome: complete ? 'complete' : 'aborted',
    });
    deps.telemetry.downloadBytes.inc({ kind: subject.kind, namespace }, counter.bytes);
    deps.logger.info(
      {
        audit: true,
        action: `download.${subject.kind}`,
        user: request.caller?.username,
        groups: request.caller?.groups,
        at: started.toISOString(),
        namespace: subject.namespace,
        pod: subject.pod,
        pod_uids: subject.podUids,
        crash_id: subject.crashId,
        build_id: subject.buildId,
        format: subject.format,
        range: subject.range,
        files: subject.files,
        status: reply.statusCode,
        bytes: counter.bytes,
        complete,
        remote_address: request.ip,
        request_id: request.id,
      },
      `${request.caller?.username ?? '?'} downloaded ${subject.kind} ${subject.crashId ?? subject.buildId ?? `${namespace}/${subject.pod ?? ''}`}`,
    );
  });
}

/** The audit record of a download refused before any byte was sent. */
export function auditRefusal(
  deps: { logger: Logger },
  request: FastifyRequest,
  subject: AuditSubject,
  status: number,
): void {
  deps.logger.info(
    {
      audit: true,
      action: `download.${subject.kind}`,
      user: request.caller?.username,
      groups: request.caller?.groups,
      at: new Date().toISOString(),
      namespace: subject.namespace,
      crash_id: subject.crashId,
      build_id: subject.buildId,
      status,
      bytes: 0,
      complete: false,
      remote_address: request.ip,
      request_id: request.id,
    },
    `${request.caller?.username ?? '?'} was refused ${subject.kind} ${subject.crashId ?? subject.buildId ?? ''} (${status})`,
  );
}

/** The audit record of a dump deletion, allowed or not: who, when, which crash, the outcome. */
export function auditDeletion(
  deps: { logger: Logger },
  request: FastifyRequest,
  subject: { crashId: string; namespace: string | undefined; at: string; status: number; changed?: boolean },
): void {
  deps.logger.info(
    {
      audit: true,
      action: 'delete-dump',
      user: request.caller?.username,
      groups: request.caller?.groups,
      at: subject.at,
      namespace: subject.namespace,
      crash_id: subject.crashId,
      status: subject.status,
      ...(subject.changed === undefined ? {} : { changed: subject.changed }),
      remote_address: request.ip,
      request_id: request.id,
    },
    `${request.caller?.username ?? '?'} ${subject.status < 400 ? 'deleted' : 'was refused deleting'} the dump of crash ${subject.crashId} (${subject.status})`,
  );
}
