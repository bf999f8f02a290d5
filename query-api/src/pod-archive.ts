import { pipeline } from 'node:stream/promises';
import { pipeline as pipelineCb } from 'node:stream';
import { createGzip } from 'node:zlib';
import { Type, type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import tar from 'tar-stream';
import { auditDownload, ByteCounter } from './audit.ts';
import { callerOf } from './crash-get.ts';
import { PM_ERR_FORBIDDEN, PM_ERR_POD_NOT_FOUND } from './errors.ts';
import { ContainerName, Namespace, PodName, PodUid, errorResponses } from './schemas.ts';
import type { RouteDeps } from './route-deps.ts';
import { StorageError, type PodFile } from './storage-reader.ts';

// GET /v1/namespaces/{namespace}/pods/{pod}/dumps.tar.gz: every dump of a pod (or of one of its
// containers) with each event's JSON beside its core, streamed as tar.gz. The files are found in
// the storage layout (<namespace>/<pod-uid>/<container>/), so with `uid` the dumps of a pod that
// is gone — even from the index — are still found; without it, every incarnation of the pod
// name the index knows is included.

const MAX_EVENT_BYTES = 4 * 1024 * 1024;

interface PodIncarnation {
  uid: string;
  files: PodFile[];
}

async function readEventJson(deps: RouteDeps, relPath: string): Promise<unknown> {
  const bytes = await deps.storage.readSmall(relPath, MAX_EVENT_BYTES);
  try {
    return bytes === undefined ? undefined : (JSON.parse(bytes.toString('utf8')) as unknown);
  } catch {
    return undefined;
  }
}

interface StoredPod {
  namespace?: unknown;
  pod?: { name?: unknown; uid?: unknown };
}

/** Whether a stored event is a crash of this pod: its namespace, pod name and pod uid all match. */
function isCrashOf(event: unknown, namespace: string, pod: string, uid: string): boolean {
  const k8s = (event as { kubernetes?: StoredPod } | undefined)?.kubernetes;
  return k8s?.namespace === namespace && k8s.pod?.name === pod && k8s.pod.uid === uid;
}

export const podArchiveRoutes: FastifyPluginCallbackTypebox<RouteDeps> = (app, deps, done) => {
  app.get(
    '/namespaces/:namespace/pods/:pod/dumps.tar.gz',
    {
      exposeHeadRoute: false,
      schema: {
        tags: ['dumps'],
        summary: 'Every dump of a pod as tar.gz, each event’s JSON beside its core',
        description:
          'Needs `get` on `coredumps/dump` in the namespace. Entries are `<pod-uid>/<container>/<crash-id>.json` ' +
          'and `.core.zst`. With `uid`, the dumps of that pod incarnation are found in storage even after the pod ' +
          'was deleted.',
        params: Type.Object({ namespace: Namespace, pod: PodName }, { additionalProperties: false }),
        querystring: Type.Object(
          { container: Type.Optional(ContainerName), uid: Type.Optional(PodUid) },
          { additionalProperties: false },
        ),
        response: {
          200: {
            description: 'A gzip-compressed tar archive',
            content: { 'application/gzip': { schema: { type: 'string', format: 'binary' } } },
          },
          ...errorResponses(403, 404),
        },
      },
    },
    async (request, reply) => {
      const { namespace, pod } = request.params;
      const { container, uid } = request.query;
      const caller = callerOf(request);
      if (!(await deps.access.mayRead(caller, namespace))) throw PM_ERR_POD_NOT_FOUND(namespace, pod);
      if (!(await deps.access.mayRead(caller, namespace, 'dump')))
        throw PM_ERR_FORBIDDEN(`${caller.username} may not get coredumps/dump in namespace ${namespace}`);

      const uids =
        uid !== undefined
          ? [uid]
          : await deps.crashes.distinct('kubernetes.pod.uid', {
              bool: {
                filter: [
                  { term: { 'kubernetes.namespace': namespace } },
                  { term: { 'kubernetes.pod.name': pod } },
                  ...(container === undefined ? [] : [{ term: { 'kubernetes.container.name': container } }]),
                ],
              },
            });
      const incarnations: PodIncarnation[] = [];
      for (const u of uids.sort()) {
        const files = await deps.storage.listPod(namespace, u, container);
        const kept: PodFile[] = [];
        for (const f of files) {
          const event = f.event
            ? await readEventJson(deps, f.event.relPath).catch(() => undefined)
            : undefined;
          // Selected by what the stored event says, not by where the file lies: a core without
          // its event, or an event of another namespace, pod or uid, is not this pod's.
          if (!isCrashOf(event, namespace, pod, u)) continue;
          kept.push(f);
        }
        if (kept.length > 0) incarnations.push({ uid: u, files: kept });
      }
      if (incarnations.length === 0) throw PM_ERR_POD_NOT_FOUND(namespace, pod);

      const pack = tar.pack();
      const counter = new ByteCounter();
      pipelineCb(pack, createGzip(), counter, (err) => {
        if (err && (err as { code?: string }).code !== 'ERR_STREAM_PREMATURE_CLOSE')
          request.log.warn({ err }, 'archive stream failed');
      });
      const files = incarnations.reduce((n, i) => n + i.files.length, 0);
      auditDownload(
        deps,
        request,
        reply,
        { kind: 'archive', namespace, pod, podUids: incarnations.map((i) => i.uid), files },
        counter,
      );

      const write = async () => {
        for (const inc of incarnations) {
          for (const f of inc.files) {
            for (const part of [f.event, f.dump]) {
              if (!part) continue;
              let opened;
              try {
                opened = await deps.storage.read(part.relPath);
              } catch (err) {
                // Removed since it was listed (retention): left out of the archive.
                if (err instanceof StorageError) continue;
                throw err;
              }
              const name = `${inc.uid}/${part.relPath.split('/').slice(2).join('/')}`;
              const entry = pack.entry({ name, size: opened.size, mtime: opened.mtime, mode: 0o600 });
              await pipeline(opened.body, entry);
            }
          }
        }
        pack.finalize();
      };
      write().catch((err: unknown) => {
        request.log.warn({ err }, 'archive aborted');
        pack.destroy(err instanceof Error ? err : new Error(String(err)));
      });

      const filename = `${namespace}_${pod}${container ? `_${container}` : ''}_dumps.tar.gz`;
      return reply
        .type('application/gzip')
        .header('content-disposition', `attachment; filename="${filename}"`)
        .header('cache-control', 'private, no-store')
        .send(counter);
    },
  );
  done();
};
