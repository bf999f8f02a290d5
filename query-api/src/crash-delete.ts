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
// its namespace gets a 403. The crash itself stays, its dump marked deleted with who and when,
// and a later download says so (410). Every request is audited, whatever its outcome.

export const DumpDeletionResponse = Type.Object({
  crash_id: Type.String(),
  dump: Type.Unsafe<CrashEvent['dump']>(
    structuredClone({ ...CrashEventSchema.properties.dump, description: 'The dump as the crash now has it' }),
  ),
  changed: Type.Boolean({
    description: 'False when the dump had been removed before: the first removal (its who and when) stands',
  }),
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
          'Deletes the core from storage, marks the stored event and the indexed crash deleted (who, when) and ' +
          'answers the dump as it now is; deleting again answers the first deletion. 503 while Kafka or the ' +
          'storage is unavailable (calling again completes the deletion).',
        params: CrashIdParams,
        response: { 200: DumpDeletionResponse, ...errorResponses(403, 404) },
      },
    },
    async (request) => {
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
        const removed = await deps.dumpRemovals.delete(event, caller.username, at);
        changed = removed.changed;
        return { crash_id: id, dump: removed.event.dump, changed };
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
