import { readFileSync } from 'node:fs';
import type { Client } from '@elastic/elasticsearch';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { TracerProvider } from '@opentelemetry/api';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyReply,
  type FastifyRequest,
  type FastifySchemaValidationError,
} from 'fastify';
import type { Logger } from 'pino';
import { kafkaSecurity } from '@podmortem/contract/runtime';
import type { Store } from '@podmortem/contract/store';
import { AnalysisRequests } from './analysis-requests.ts';
import { Access } from './auth.ts';
import { CONFIG_PREFIX, logsFieldsOf, type Config } from './config.ts';
import { CrashStore } from './crash-store.ts';
import { crashContextRoutes } from './crash-context.ts';
import { crashDeleteRoutes } from './crash-delete.ts';
import { crashDumpRoutes } from './crash-dump.ts';
import { crashGetRoutes } from './crash-get.ts';
import { crashReanalysisRoutes } from './crash-reanalysis.ts';
import { crashesSearchRoutes } from './crashes-search.ts';
import { debuginfodRoutes } from './debuginfod.ts';
import { DumpDeletions } from './dump-deletions.ts';
import { ApiError, PM_ERR_METHOD_NOT_ALLOWED, PM_ERR_ROUTE_NOT_FOUND, errorBody } from './errors.ts';
import { groupsRoutes } from './groups.ts';
import { healthRoutes } from './health.ts';
import type { KubeReviews } from './kube-reviews.ts';
import { LoginLimiter } from './login-limiter.ts';
import { openapiOptions } from './openapi.ts';
import { podArchiveRoutes } from './pod-archive.ts';
import type { PrometheusClient } from './prometheus-client.ts';
import type { App, RouteDeps } from './route-deps.ts';
import { CrashEventComponent, ErrorResponse, PartialCrashEventComponent } from './schemas.ts';
import { statsRoutes } from './stats.ts';
import type { StorageReader } from './storage-reader.ts';
import { createTelemetry, type Telemetry } from './telemetry.ts';
import { requestTracing } from './request-tracing.ts';

// The query API as a Fastify instance built from its dependencies (a params object, no module
// singletons), so tests build one with inject() or listen() and two can run side by side.

export const VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

// The test helpers type the apps they build with it.
export type { App };

export interface AppParams {
  config: Config;
  es: Client;
  kube: KubeReviews;
  prometheus: PrometheusClient;
  storage: StorageReader;
  /** Writable, for users' dump deletions only; every read goes through `storage`. */
  store: Store;
  logger: Logger;
  telemetry?: Telemetry;
  tracerProvider?: TracerProvider;
}

/** Validation errors name the parameter: `querystring/limit must be <= 500`. */
function formatValidation(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const e = errors[0];
  if (!e) return new Error(`${dataVar} is invalid`);
  const params = e.params;
  let path = dataVar + e.instancePath;
  let message: string;
  switch (e.keyword) {
    case 'additionalProperties':
      path = `${path}/${String(params.additionalProperty)}`;
      message = 'is not a parameter of this route';
      break;
    case 'required':
      path = `${path}/${String(params.missingProperty)}`;
      message = 'is required';
      break;
    case 'format':
      message = `must be ${params.format === 'date-time' ? 'an RFC 3339 date-time' : `a ${String(params.format)}`}`;
      break;
    case 'pattern':
      message = 'has characters or a form that is not allowed';
      break;
    default:
      message = e.message ?? 'is invalid';
  }
  return new Error(`${path} ${message}`);
}

const routeLists = new WeakMap<object, { method: string; url: string }[]>();

/** Every route an app built here serves (method and URL pattern), for the OpenAPI test. */
export function routesOf(app: App): { method: string; url: string }[] {
  return [...(routeLists.get(app) ?? [])];
}

/** The methods some route serves `path` with (Fastify's `:param` segments match one segment). */
function methodsServing(routes: readonly { method: string; url: string }[], path: string): string[] {
  const segments = path.split('/');
  const methods = new Set<string>();
  for (const r of routes) {
    const pattern = r.url.split('/');
    if (
      pattern.length === segments.length &&
      pattern.every((p, i) => (p.startsWith(':') ? (segments[i] ?? '') !== '' : p === segments[i]))
    )
      methods.add(r.method);
  }
  return [...methods].sort();
}

/** The validator's message, with the allowed values when a parameter is not one of them. */
function validationMessage(err: FastifyError): string {
  const allowed = err.validation?.find((v) => v.keyword === 'enum')?.params.allowedValues;
  return Array.isArray(allowed) ? `${err.message}: ${allowed.map(String).join(', ')}` : err.message;
}

export async function buildApp(params: AppParams): Promise<App> {
  const { config, es, kube, prometheus, storage, store, logger } = params;
  const telemetry = params.telemetry ?? createTelemetry(undefined, false);
  const crashes = new CrashStore({ es, index: config.crashIndex, telemetry });
  const access = new Access({
    reviews: kube,
    telemetry,
    logger,
    ttlMs: config.authCacheTtlMs,
    namespaceTtlMs: config.namespaceCacheTtlMs,
    indexNamespaces: () => crashes.namespaces(),
    logins: new LoginLimiter({ max: config.authFailureMax, windowMs: config.authFailureWindowMs }),
  });
  const security = kafkaSecurity(config, CONFIG_PREFIX);
  const analysisRequests = new AnalysisRequests({
    brokers: config.kafkaBrokers,
    clientId: config.kafkaClientId,
    topic: config.requestTopic,
    timeoutMs: config.kafkaTimeoutMs,
    security,
    logger,
    telemetry,
  });
  // Same brokers and timeout as the re-analysis requests; a producer of its own, on its own topic.
  const dumpDeletions = new DumpDeletions({
    store,
    brokers: config.kafkaBrokers,
    clientId: config.kafkaClientId,
    topic: config.dumpDeletionTopic,
    timeoutMs: config.kafkaTimeoutMs,
    security,
    logger,
    telemetry,
  });
  const deps: RouteDeps = {
    config,
    es,
    crashes,
    access,
    storage,
    prometheus,
    telemetry,
    logsFields: logsFieldsOf(config),
    logger,
    analysisRequests,
    dumpDeletions,
  };

  // Typed as Fastify's base logger so the instance is the plain App type the plugins expect.
  const fastifyLogger: FastifyBaseLogger = logger;
  const app = Fastify({
    loggerInstance: fastifyLogger,
    bodyLimit: config.bodyLimitBytes,
    // Only named proxies: a client that could set X-Forwarded-For itself would escape the limits.
    ...(config.trustProxy.length > 0 ? { trustProxy: config.trustProxy } : {}),
    // Long enough for the longest signature a group route takes (its own schema says how long).
    routerOptions: { maxParamLength: 4096 },
    return503OnClosing: true,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } },
    schemaErrorFormatter: formatValidation,
  }).withTypeProvider<TypeBoxTypeProvider>();

  const routes: { method: string; url: string }[] = [];
  routeLists.set(app, routes);
  app.addHook('onClose', () => analysisRequests.close());
  app.addHook('onClose', () => dumpDeletions.close());
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url });
  });

  app.addSchema(ErrorResponse);
  app.addSchema(CrashEventComponent);
  app.addSchema(PartialCrashEventComponent);

  await app.register(fastifySwagger, openapiOptions(VERSION));
  if (config.docs) await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());

  if (params.tracerProvider)
    requestTracing(app, params.tracerProvider.getTracer('podmortem-query-api', VERSION));

  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    telemetry.requests.inc({ route, method: request.method, status: String(reply.statusCode) });
    telemetry.requestSeconds.observe({ route }, reply.elapsedTime / 1000);
    done();
  });

  app.setErrorHandler((err: FastifyError | ApiError, request, reply) => {
    // A method with a body (QUERY, PROPFIND…) on no route fails on its content type before the
    // not-found handler runs: it is still a method the path does not take.
    if (request.is404) return unrouted(request, reply);
    if (err instanceof ApiError) {
      if (err.statusCode >= 500) request.log.warn({ err, detail: err.detail }, 'request failed');
      return reply
        .code(err.statusCode)
        .headers(err.headers)
        .send(errorBody(err.statusCode, err.code, err.message));
    }
    if ('validation' in err && err.validation) {
      return reply.code(400).send(errorBody(400, 'PM_ERR_VALIDATION', validationMessage(err)));
    }
    const status = 'statusCode' in err && typeof err.statusCode === 'number' ? err.statusCode : 500;
    if (status >= 400 && status < 500) {
      // Fastify's own client errors (body too large, bad content type, rate limit).
      const code = typeof err.code === 'string' && err.code !== '' ? err.code : 'PM_ERR_BAD_REQUEST';
      return reply.code(status).send(errorBody(status, code, err.message));
    }
    request.log.error({ err }, 'request failed');
    return reply.code(500).send(errorBody(500, 'PM_ERR_INTERNAL', 'internal error (logged)'));
  });
  // No route for this method and path: 405 with Allow when the path takes other methods, else 404.
  const unrouted = (request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split('?')[0] ?? '';
    const allowed = methodsServing(routes, path);
    if (allowed.length > 0) {
      const err = PM_ERR_METHOD_NOT_ALLOWED(request.method, path, allowed);
      return reply
        .code(405)
        .header('allow', allowed.join(', '))
        .send(errorBody(405, err.code, err.message));
    }
    const err = PM_ERR_ROUTE_NOT_FOUND(request.method, path);
    return reply.code(404).send(errorBody(404, err.code, err.message));
  };
  app.setNotFoundHandler(unrouted);

  await app.register(healthRoutes, { crashes, storage });

  // Every route but health and the document: authenticated, then rate limited. The /v1
  // routes, and the debuginfod paths at the root (clients append /buildid/... to the address).
  await app.register(async (authenticated) => {
    // Authentication first (its TokenReviews limited per client address); the rate limit then
    // counts per authenticated user.
    authenticated.addHook('onRequest', async (request) => {
      request.caller = await access.authenticate(request.headers.authorization, request.ip);
    });
    await authenticated.register(fastifyRateLimit, {
      max: config.rateLimitMax,
      timeWindow: config.rateLimitWindowMs,
      hook: 'preHandler',
      keyGenerator: (request) => `user:${request.caller?.username ?? request.ip}`,
      errorResponseBuilder: (_request, context) => ({
        ...errorBody(429, 'PM_ERR_RATE_LIMITED', `rate limit exceeded, retry in ${context.after}`),
      }),
    });
    await authenticated.register(
      async (v1) => {
        await v1.register(crashesSearchRoutes, deps);
        await v1.register(crashGetRoutes, deps);
        await v1.register(crashDumpRoutes, deps);
        await v1.register(crashDeleteRoutes, deps);
        await v1.register(crashContextRoutes, deps);
        await v1.register(podArchiveRoutes, deps);
        await v1.register(statsRoutes, deps);
        await v1.register(groupsRoutes, deps);
        await v1.register(crashReanalysisRoutes, deps);
      },
      { prefix: '/v1' },
    );
    await authenticated.register(debuginfodRoutes, deps);
  });

  return app;
}
