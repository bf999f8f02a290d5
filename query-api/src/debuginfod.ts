import { pipeline } from 'node:stream';
import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { estypes } from '@elastic/elasticsearch';
import { moduleKey } from '@podmortem/contract';
import type { ObjectRead } from '@podmortem/contract/store';
import { auditDownload, auditRefusal, ByteCounter, type AuditSubject } from './audit.ts';
import { callerOf } from './crash-get.ts';
import { ApiError, PM_ERR_MODULE_NOT_FOUND } from './errors.ts';
import type { Caller } from './kube-reviews.ts';
import type { RouteDeps } from './route-deps.ts';
import { errorResponses } from './schemas.ts';
import { StorageError } from './storage-reader.ts';

// GET /buildid/{buildid}/executable and /debuginfo: the modules kept in the store by GNU build
// id, on the paths of the debuginfod protocol, so that gdb (libdebuginfod) can use this API as a
// debuginfod server with the caller's bearer token (DEBUGINFOD_HEADERS_FILE). A module is served
// only to a caller who may read at least one crash whose process mapped it; to anyone else it
// answers exactly as a build id no crash knows, or a file that is not stored: 404.

export const BUILD_ID_PATTERN = '^[0-9a-f]{2,128}$';

export const BuildIdParams = Type.Object(
  {
    buildid: Type.String({
      pattern: BUILD_ID_PATTERN,
      maxLength: 128,
      description: 'GNU build id, lower-case hex',
    }),
  },
  { additionalProperties: false },
);

export type ModuleKind = 'executable' | 'debuginfo';

/** The crash fields that carry the build ids of the modules a crashed process mapped. */
export const BUILD_ID_FIELDS = ['analysis.build_id', 'analysis.modules.build_id'] as const;

function referencing(buildId: string): estypes.QueryDslQueryContainer {
  return {
    bool: {
      should: BUILD_ID_FIELDS.map((field) => ({ term: { [field]: buildId } })),
      minimum_should_match: 1,
    },
  };
}

interface Buckets {
  namespaces?: { buckets?: { key: string }[] };
  host?: { doc_count?: number };
}

/**
 * The namespace of a crash referencing `buildId` that the caller may read (`namespace`
 * undefined: a host process), or undefined when there is none.
 */
export async function grantingCrash(
  deps: RouteDeps,
  caller: Caller,
  buildId: string,
): Promise<{ namespace: string | undefined } | undefined> {
  const { total, aggregations } = await deps.crashes.aggregate(referencing(buildId), {
    namespaces: { terms: { field: 'kubernetes.namespace', size: 10_000 } },
    host: { missing: { field: 'kubernetes.namespace' } },
  });
  if (total === 0) return undefined;
  const aggs = aggregations as Buckets;
  const candidates: (string | undefined)[] = (aggs.namespaces?.buckets ?? []).map((b) => b.key);
  if ((aggs.host?.doc_count ?? 0) > 0) candidates.push(undefined);
  // A few reviews at a time, stopping at the first namespace that grants it.
  for (let i = 0; i < candidates.length; i += 16) {
    const batch = candidates.slice(i, i + 16);
    const answers = await Promise.all(batch.map((ns) => deps.access.mayRead(caller, ns)));
    const j = answers.indexOf(true);
    if (j >= 0) return { namespace: batch[j] };
  }
  return undefined;
}

/** The stored module; absent or refused by the store alike: the same 404 as an unknown build id. */
async function openModule(
  deps: RouteDeps,
  buildId: string,
  kind: ModuleKind,
  log: { warn: (obj: object, msg: string) => void },
): Promise<ObjectRead> {
  try {
    return await deps.storage.read(moduleKey(buildId, kind));
  } catch (err) {
    if (err instanceof StorageError) {
      if (err.problem === 'unsafe')
        log.warn({ err, build_id: buildId }, 'module refused by the storage reader');
      throw PM_ERR_MODULE_NOT_FOUND(buildId, kind);
    }
    deps.telemetry.backendErrors.inc({ backend: 'storage' });
    throw err;
  }
}

const descriptions: Record<ModuleKind, string> = {
  executable: 'The executable or shared library with this build id, as the collector captured it',
  debuginfo: 'The separate debug file (DWARF) of this build id, as the analyzer fetched it',
};

export const debuginfodRoutes: FastifyPluginCallbackTypebox<RouteDeps> = (app, deps, done) => {
  for (const kind of ['executable', 'debuginfo'] as const) {
    app.get(
      `/buildid/:buildid/${kind}`,
      {
        exposeHeadRoute: false,
        schema: {
          tags: ['debuginfod'],
          summary: `The ${kind} of a build id (debuginfod protocol)`,
          description:
            `${descriptions[kind]}. Served to a caller who may \`get\` coredumps in the namespace of at ` +
            'least one crash whose process mapped the module; to anyone else, and for a file that is not ' +
            'stored, 404. At the root (not under /v1): debuginfod clients append `/buildid/…` to the ' +
            'server address, so `DEBUGINFOD_URLS=<API address>` with the bearer token in a ' +
            '`DEBUGINFOD_HEADERS_FILE` makes the API a debuginfod server (`podmortem debug` does so).',
          params: BuildIdParams,
          response: {
            200: {
              description: descriptions[kind],
              content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
            },
            ...errorResponses(404),
          },
        },
      },
      async (request, reply) => {
        const buildId = request.params.buildid;
        const caller = callerOf(request);
        const subject: AuditSubject = { kind, namespace: undefined, buildId };
        let file: ObjectRead;
        try {
          const granted = await grantingCrash(deps, caller, buildId);
          if (!granted) throw PM_ERR_MODULE_NOT_FOUND(buildId, kind);
          subject.namespace = granted.namespace;
          file = await openModule(deps, buildId, kind, request.log);
        } catch (err) {
          if (err instanceof ApiError && err.statusCode === 404) auditRefusal(deps, request, subject, 404);
          throw err;
        }
        const counter = new ByteCounter();
        pipeline(file.body, counter, (err) => {
          if (
            err &&
            err.name !== 'AbortError' &&
            (err as { code?: string }).code !== 'ERR_STREAM_PREMATURE_CLOSE'
          )
            request.log.warn({ err, build_id: buildId }, 'module stream failed');
        });
        reply.header('content-length', String(file.size));
        reply.header('x-debuginfod-size', String(file.size));
        reply.header('cache-control', 'private, no-store');
        auditDownload(deps, request, reply, subject, counter);
        return reply.type('application/octet-stream').send(counter);
      },
    );
  }
  done();
};
