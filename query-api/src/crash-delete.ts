import { Type, type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { CrashEventSchema, isRemovedDumpStatus, type CrashEvent } from '@podmortem/contract';
import { auditDeletion } from './audit.ts';
import { callerOf, readableCrash } from './crash-get.ts';
import { ApiError, PM_ERR_FORBIDDEN, PM_ERR_NO_DUMP } from './errors.ts';
import type { RouteDeps } from './route-deps.ts';
import { CrashIdParams, errorResponses } from './schemas.ts';

// DELETE /v1/crashes/{id}/dump: a user takes a crash's stored core away (it holds the process's
// memory: secrets, customer data). A crash the caller may not read is a 404 like every other
// route's, so a refusal never tells that it exists; a reader without `delete` on coredumps/dump in
// its namespace gets a 403. An allowed deletion is a request on Kafka that the retention service
// performs (202): the API itself never writes the store. The crash stays, its dump marked deleted
// with who and when, and a later download says so (410). Every request is audited, whatever its
// outcome.

export const DumpDeletionResponse = Type.Object({
  crash_id: Type.String(),
  dump: Type.Unsafe<CrashEvent['dump']>(
    structuredClone({
      ...CrashEventSchema.properties.dump,
      description: 'The dump as the crash has it now (on a 202: before the deletion is done)',
    }),
  ),
  changed: Type.Boolean({
    description:
      'True: a deletion was requested (202); false: the dump had been removed before, and the first removal (its who and when) stands (200)',
  }),
  requested_at: Type.Optional(
    Type.String({ format: 'date-time', description: 'On a 202: when it was asked' }),
  ),
  requested_by: Type.Optional(Type.String({ description: 'On a 202: who asked (the caller)' })),
});

export const crashDeleteRoutes: FastifyPluginCallbackTypebox<RouteDeps> = (app, deps, done) => {
  app.delete(
    '/crashes/:id/dump',
    {
      schema: {
        tags: ['dumps'],
        summary: 'Delete the core dump of a crash',
        description:
          'Needs `delete` on `coredumps/dump` in the crash’s namespace (and `get` on `coredumps` to see the crash). ' +
          'Answers 202 once the deletion request is on Kafka: the retention service then deletes the core from ' +
          'storage and marks the stored event and the indexed crash deleted (who, when), usually within seconds ' +
          '(`GET /v1/crashes/{id}` shows `dump.status: deleted`). A dump removed before answers 200 with the first ' +
          'removal. 503 while Kafka or the storage is unavailable (nothing was requested; call again).',
        params: CrashIdParams,
        response: {
          200: DumpDeletionResponse,
          202: DumpDeletionResponse,
          ...errorResponses(403, 404),
        },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const id = request.params.id;
      const at = new Date();
      let namespace: string | undefined;
      let status = 200;
      let changed: boolean | undefined;
      try {
        const event = await readableCrash(deps, caller, id);
        namespace = event.kubernetes?.namespace;
        if (!(await deps.access.mayDeleteDump(caller, namespace)))
          throw PM_ERR_FORBIDDEN(
            `${caller.username} may not delete coredumps/dump ${namespace ? `in namespace ${namespace}` : 'cluster-wide'}`,
          );
        const { dump } = event;
        // Nothing was stored (skipped, failed…): there is nothing to delete, as there is nothing to download.
        if (!isRemovedDumpStatus(dump.status) && dump.status !== 'stored' && dump.status !== 'truncated')
          throw PM_ERR_NO_DUMP(id, dump.status, dump.reason);
        const outcome = await deps.dumpDeletions.request(event, caller.username, at);
        if (outcome.kind === 'removed') {
          changed = false;
          return { crash_id: id, dump: outcome.dump, changed };
        }
        changed = true;
        status = 202;
        reply.code(202);
        return {
          crash_id: id,
          dump: outcome.dump,
          changed,
          requested_at: outcome.requestedAt.toISOString(),
          requested_by: caller.username,
        };
      } catch (err) {
        status = err instanceof ApiError ? err.statusCode : 500;
        throw err;
      } finally {
        auditDeletion(deps, request, {
          crashId: id,
          namespace,
          at: at.toISOString(),
          status,
          ...(changed === undefined ? {} : { changed }),
        });
      }
    },
  );
  done();
};
