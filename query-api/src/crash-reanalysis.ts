import { Type, type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { ApiError } from './errors.ts';
import { callerOf, readableCrash } from './crash-get.ts';
import type { RouteDeps } from './route-deps.ts';
import { CrashIdParams, errorResponses } from './schemas.ts';

// POST /v1/crashes/{id}/analysis: analyse a crash again (after an analyzer upgrade, or once its
// modules are there). The caller needs what reading the crash needs; the crash event goes to the
// analyzer through Kafka, and the newer analysis replaces the old one in the crash's document.
// Every request leaves an audit record, whether Kafka took it or not.

export const ReanalysisResponse = Type.Object({
  crash_id: Type.String(),
  requested_at: Type.String({ description: 'When the request was published' }),
  message: Type.String(),
});

export const crashReanalysisRoutes: FastifyPluginCallbackTypebox<RouteDeps> = (app, deps, done) => {
  app.post(
    '/crashes/:id/analysis',
    {
      schema: {
        tags: ['crashes'],
        summary: 'Analyse a crash again',
        description:
          'Publishes the crash event on the analysis-request topic; the analyzer analyses it again and ' +
          'the new analysis (a newer analyzed_at) replaces the one in the crash. 503 while Kafka is unavailable.',
        params: CrashIdParams,
        response: { 202: ReanalysisResponse, ...errorResponses(404, 422) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const event = await readableCrash(deps, caller, request.params.id);
      const requestedAt = new Date().toISOString();
      let status = 202;
      try {
        await deps.analysisRequests.request(event);
      } catch (err) {
        status = err instanceof ApiError ? err.statusCode : 500;
        throw err;
      } finally {
        deps.logger.info(
          {
            audit: true,
            action: 'crash.reanalyze',
            user: caller.username,
            groups: caller.groups,
            at: requestedAt,
            namespace: event.kubernetes?.namespace,
            crash_id: event.crash.id,
            status,
            remote_address: request.ip,
            request_id: request.id,
          },
          `${caller.username} requested a new analysis of crash ${event.crash.id}`,
        );
      }
      return reply.code(202).send({
        crash_id: event.crash.id,
        requested_at: requestedAt,
        message: 'the crash will be analysed again; GET /v1/crashes/{id} shows the new analysis once done',
      });
    },
  );
  done();
};
