import type { FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import type { CrashEvent } from '@podmortem/contract';
import { PM_ERR_CRASH_NOT_FOUND, PM_ERR_FORBIDDEN } from './errors.ts';
import type { Caller } from './kube-reviews.ts';
import type { RouteDeps } from './route-deps.ts';
import { CrashEventRef, CrashIdParams, errorResponses } from './schemas.ts';

// GET /v1/crashes/{id}: one crash's event. A crash the caller may not `get` answers exactly as
// a crash that does not exist.

/** The crash, when it exists and the caller may get it; otherwise the same 404 either way. */
export async function readableCrash(deps: RouteDeps, caller: Caller, id: string): Promise<CrashEvent> {
  const event = await deps.crashes.get(id);
  if (!event || !(await deps.access.mayRead(caller, event.kubernetes?.namespace)))
    throw PM_ERR_CRASH_NOT_FOUND(id);
  return event;
}

/** For downloads: `get` on the dump subresource as well (403: the caller knows the crash). */
export async function downloadableCrash(deps: RouteDeps, caller: Caller, id: string): Promise<CrashEvent> {
  const event = await readableCrash(deps, caller, id);
  const namespace = event.kubernetes?.namespace;
  if (!(await deps.access.mayRead(caller, namespace, 'dump')))
    throw PM_ERR_FORBIDDEN(
      `${caller.username} may not get coredumps/dump ${namespace ? `in namespace ${namespace}` : 'cluster-wide'}`,
    );
  return event;
}

export function callerOf(request: { caller?: Caller | undefined }): Caller {
  if (!request.caller) throw new Error('authentication hook did not run');
  return request.caller;
}

export const crashGetRoutes: FastifyPluginCallbackTypebox<RouteDeps> = (app, deps, done) => {
  app.get(
    '/crashes/:id',
    {
      schema: {
        tags: ['crashes'],
        summary: 'One crash event',
        params: CrashIdParams,
        response: { 200: CrashEventRef, ...errorResponses(404) },
      },
    },
    async (request) => readableCrash(deps, callerOf(request), request.params.id),
  );
  done();
};
