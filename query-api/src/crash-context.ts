import { Type, type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import type { CrashEvent } from '@podmortem/contract';
import { messageOf } from '@podmortem/contract/runtime';
import { callerOf, readableCrash } from './crash-get.ts';
import { grafanaLink, kibanaDiscoverLink } from './links.ts';
import { lastLogLines, type LogLine } from './logs-query.ts';
import { fillPromql, type RangeSeries } from './prometheus-client.ts';
import type { RouteDeps } from './route-deps.ts';
import { ContextResponse, CrashIdParams, errorResponses } from './schemas.ts';

// GET /v1/crashes/{id}/context: what happened around a crash in the same pod — the pod's
// metrics from Prometheus, its container's last log lines from Elasticsearch, the pod's other
// crashes, and links to Grafana and Kibana. A backend that fails leaves its part empty and says
// so in `errors`; the rest is still answered.

const OTHER_CRASHES = 20;
const otherCrashFields = [
  'crash.id',
  '@timestamp',
  'kubernetes.namespace',
  'kubernetes.pod.name',
  'kubernetes.container.name',
  'kubernetes.pod.uid',
  'signal',
  'process.executable',
  'dump.status',
  'analysis.signature',
];

/** A step giving at most ~250 points over the window, never under 15 s. */
export function stepFor(windowS: number): number {
  return Math.max(15, Math.ceil(windowS / 250));
}

export const crashContextRoutes: FastifyPluginCallbackTypebox<RouteDeps> = (app, deps, done) => {
  const { config } = deps;
  const queries: [string, string][] = [
    ['memory', config.promqlMemory],
    ['cpu', config.promqlCpu],
    ['restarts', config.promqlRestarts],
    ['oom_kills', config.promqlOomKills],
  ];

  app.get(
    '/crashes/:id/context',
    {
      schema: {
        tags: ['context'],
        summary: 'Metrics, logs and other crashes of the same pod around a crash',
        params: CrashIdParams,
        querystring: Type.Object(
          {
            before: Type.Optional(
              Type.Integer({
                minimum: 60,
                maximum: 7 * 86_400,
                default: config.contextBeforeS,
                description: 'Seconds of context before the crash',
              }),
            ),
            after: Type.Optional(
              Type.Integer({
                minimum: 0,
                maximum: 86_400,
                default: config.contextAfterS,
                description: 'Seconds of context after the crash',
              }),
            ),
            log_lines: Type.Optional(
              Type.Integer({
                minimum: 1,
                maximum: 1000,
                default: config.contextLogLines,
                description: 'The most log lines to return (the last ones of the window)',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: ContextResponse, ...errorResponses(404) },
      },
    },
    async (request) => {
      const {
        before = config.contextBeforeS,
        after = config.contextAfterS,
        log_lines = config.contextLogLines,
      } = request.query;
      const event: CrashEvent = await readableCrash(deps, callerOf(request), request.params.id);
      const at = Date.parse(event['@timestamp']);
      const fromMs = at - before * 1000;
      const toMs = at + after * 1000;
      const step = stepFor(before + after);
      const k8s = event.kubernetes;
      const errors: { source: string; message: string }[] = [];
      const base = {
        crash: {
          id: event.crash.id,
          timestamp: event['@timestamp'],
          ...(k8s
            ? {
                namespace: k8s.namespace,
                pod: k8s.pod.name,
                pod_uid: k8s.pod.uid,
                container: k8s.container.name,
                node: k8s.node.name,
              }
            : { node: event.collector.node }),
        },
        window: {
          from: new Date(fromMs).toISOString(),
          to: new Date(toMs).toISOString(),
          step_seconds: step,
        },
      };
      if (!k8s) {
        // A host process has no pod: nothing of a pod to relate it to.
        return {
          ...base,
          metrics: [],
          logs: { index: config.logsIndex, lines: [] },
          other_crashes: [],
          links: {},
          errors: [{ source: 'context', message: 'the crash is of a host process, outside any pod' }],
        };
      }
      const values = { namespace: k8s.namespace, pod: k8s.pod.name, container: k8s.container.name };

      const metricsP = Promise.all(
        queries.map(async ([name, template]) => {
          const query = fillPromql(template, values);
          let series: RangeSeries[] = [];
          try {
            series = await deps.prometheus.queryRange(query, fromMs / 1000, toMs / 1000, step);
          } catch (err) {
            deps.telemetry.backendErrors.inc({ backend: 'prometheus' });
            errors.push({ source: `prometheus:${name}`, message: messageOf(err) });
          }
          return { name, query, series };
        }),
      );
      const logsP = lastLogLines(deps.es, config.logsIndex, deps.logsFields, {
        ...values,
        fromMs,
        toMs,
        limit: log_lines,
      }).catch((err: unknown): LogLine[] => {
        deps.telemetry.backendErrors.inc({ backend: 'elasticsearch' });
        errors.push({ source: 'logs', message: messageOf(err) });
        return [];
      });
      const othersP = deps.crashes
        .find(
          {
            bool: {
              filter: [
                { term: { 'kubernetes.namespace': k8s.namespace } },
                { term: { 'kubernetes.pod.name': k8s.pod.name } },
              ],
              must_not: [{ ids: { values: [event.crash.id] } }],
            },
          },
          OTHER_CRASHES,
          otherCrashFields,
        )
        .catch((err: unknown): CrashEvent[] => {
          errors.push({ source: 'crashes', message: messageOf(err) });
          return [];
        });
      const [metrics, lines, others] = await Promise.all([metricsP, logsP, othersP]);
      const target = { ...values, fromMs, toMs };
      const grafana = grafanaLink(config.grafanaUrl, config.grafanaDashboardUid, target);
      const kibana = kibanaDiscoverLink(config.kibanaUrl, config.kibanaDataView, deps.logsFields, target);
      return {
        ...base,
        metrics,
        logs: { index: config.logsIndex, lines },
        other_crashes: others,
        links: { ...(grafana ? { grafana } : {}), ...(kibana ? { kibana } : {}) },
        errors,
      };
    },
  );
  done();
};
