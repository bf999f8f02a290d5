import { readFileSync } from 'node:fs';
import SwaggerParser from '@apidevtools/swagger-parser';
import t from 'tap';
import { routesOf } from '../query-api/src/app.ts';
import { OPENAPI_FILE } from '../query-api/src/openapi.ts';
import { createTracerProvider } from '../query-api/src/telemetry.ts';
import { documentApp, generateOpenapi } from '../query-api/src/openapi-app.ts';
import { OtlpReceiver } from './support/otlp-receiver.ts';
import { addUser, bearer, harness, makeCrash } from './support/query-api.ts';
import { metricValue } from './support/metrics.ts';

// The OpenAPI document: the committed copy is what the routes generate, it validates as
// OpenAPI 3.1, and every route is in it. Then the service's own surface: health, readiness,
// metrics, request spans continuing the caller's trace, and the per-caller rate limit.

t.test('the committed openapi.json is what the routes generate', async (t) => {
  const generated = await generateOpenapi();
  t.equal(
    readFileSync(OPENAPI_FILE, 'utf8'),
    generated,
    'run `npm run generate -w query-api` after a change',
  );
  const doc = JSON.parse(generated) as Record<string, unknown>;
  t.match(doc['x-generated'], /Generated from the route schemas/);
});

t.test('the document validates and names every route', async (t) => {
  const doc = JSON.parse(readFileSync(OPENAPI_FILE, 'utf8')) as {
    openapi: string;
    paths: Record<string, Record<string, unknown>>;
  };
  const validated = (await SwaggerParser.validate(structuredClone(doc) as never)) as { openapi: string };
  t.equal(validated.openapi, '3.1.0');

  const app = await documentApp();
  t.teardown(() => app.close());
  const routes = routesOf(app).filter(
    (r) => r.method !== 'HEAD' && !r.url.startsWith('/docs') && r.url !== '/openapi.json',
  );
  t.ok(routes.length >= 9);
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z_]+)/g, '{$1}');
    t.ok(doc.paths[path]?.[r.method.toLowerCase()], `${r.method} ${r.url} is in the document`);
  }
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const method of Object.keys(methods)) {
      const url = path.replace(/\{([A-Za-z_]+)\}/g, ':$1');
      t.ok(
        routes.some((r) => r.url === url && r.method.toLowerCase() === method),
        `${method} ${path} of the document is served`,
      );
    }
  }
  const res = await app.inject('/openapi.json');
  t.equal(res.statusCode, 200);
  t.same(Object.keys(res.json<{ paths: object }>().paths).sort(), Object.keys(doc.paths).sort());
  const ui = await app.inject('/docs/');
  t.equal(ui.statusCode, 200, 'the browsable UI');
  t.match(ui.body, /swagger/i);
});

t.test('health, readiness and metrics', async (t) => {
  // /metrics is served by main.ts's ops server on a port of its own (the CLI test reads it there):
  // the app counts into the registry, and the API port tells nothing of it.
  const h = await harness();
  t.teardown(() => h.close());
  t.same((await h.app.inject('/healthz')).json(), { status: 'ok' });
  const ready = await h.app.inject('/readyz');
  t.equal(ready.statusCode, 200);
  t.same(ready.json(), { ready: true, elasticsearch: true, storage: true });
  await h.app.inject({ url: '/v1/crashes?namespace=team-a', headers: bearer('nobody') });
  t.equal((await h.app.inject('/metrics')).statusCode, 404, 'no /metrics on the API port');
  const metrics = { body: await h.telemetry.registry.metrics() };
  t.equal(
    metricValue(metrics.body, 'podmortem_api_requests_total', {
      route: '/v1/crashes',
      method: 'GET',
      status: '401',
    }),
    1,
  );
  t.equal(metricValue(metrics.body, 'podmortem_api_authentications_total', { result: 'rejected' }), 1);
  const unknown = await h.app.inject('/v2/nothing');
  t.equal(unknown.statusCode, 404);
  t.same(unknown.json(), {
    statusCode: 404,
    code: 'PM_ERR_ROUTE_NOT_FOUND',
    error: 'Not Found',
    message: 'no route GET /v2/nothing',
  });

  for (const [method, url, allow] of [
    ['DELETE', '/v1/crashes', 'GET, HEAD'],
    ['PUT', '/v1/crashes/0190a5a0-0000-7000-8000-000000000000/dump', 'DELETE, GET'],
    ['GET', '/v1/crashes/0190a5a0-0000-7000-8000-000000000000/analysis', 'POST'],
    ['POST', '/healthz', 'GET, HEAD'],
    // A method with a body and no content type, on no route: not a 400 about its content type.
    ['QUERY', '/v1/crashes', 'GET, HEAD'],
    ['TRACE', '/readyz', 'GET, HEAD'],
  ] as const) {
    // inject() types the common methods only; the server takes any token as a method.
    const r = await h.app.inject({ method: method as 'GET', url });
    t.equal(r.statusCode, 405, `${method} ${url}: 405`);
    t.equal(r.headers.allow, allow, 'Allow names the methods the route takes');
    t.match(r.json(), { statusCode: 405, code: 'PM_ERR_METHOD_NOT_ALLOWED', error: 'Method Not Allowed' });
  }
  t.equal(
    (await h.app.inject({ method: 'DELETE', url: '/v1/nothing' })).statusCode,
    404,
    'no such path: 404',
  );

  const broken = await harness({ storageRoot: '/nonexistent/podmortem' });
  t.teardown(() => broken.close());
  const notReady = await broken.app.inject('/readyz');
  t.equal(notReady.statusCode, 503);
  t.same(notReady.json(), { ready: false, elasticsearch: true, storage: false });
});

type Processor = NonNullable<Parameters<typeof createTracerProvider>[0]['spanProcessors']>[number];
type Ended = Parameters<Processor['onEnd']>[0];

t.test('a span per request, continuing the caller’s trace', async (t) => {
  const ended: Ended[] = [];
  const collector: Processor = {
    onStart: () => undefined,
    onEnd: (span) => void ended.push(span),
    forceFlush: () => Promise.resolve(),
    shutdown: () => Promise.resolve(),
  };
  const tracerProvider = createTracerProvider({
    otlpEndpoint: '',
    version: 'test',
    spanProcessors: [collector],
  });
  const h = await harness({}, { tracerProvider });
  t.teardown(() => h.close());
  const alice = addUser(h.kube, 'alice', ['team-a']);
  const crash = makeCrash({ namespace: 'team-a', at: Date.now() - 60_000 });
  await h.index.add([crash.event]);
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const parent = '00f067aa0ba902b7';
  const res = await h.app.inject({
    url: `/v1/crashes/${crash.event.crash.id}`,
    headers: { ...bearer(alice), traceparent: `00-${traceId}-${parent}-01` },
  });
  t.equal(res.statusCode, 200);
  await h.app.inject('/healthz');
  const spans = ended;
  t.equal(spans.length, 2);
  const [get, health] = spans;
  t.equal(get?.name, 'GET /v1/crashes/:id');
  t.equal(get?.spanContext().traceId, traceId, 'the caller’s trace');
  t.equal(get?.parentSpanContext?.spanId, parent);
  t.match(get?.attributes, {
    'http.route': '/v1/crashes/:id',
    'http.response.status_code': 200,
    'enduser.id': 'alice',
  });
  t.equal(health?.name, 'GET /healthz');
  t.not(health?.spanContext().traceId, traceId, 'a new trace without traceparent');
  t.match(String(res.headers.traceresponse), new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
});

t.test('spans are exported over OTLP/HTTP, with the service named', async (t) => {
  const receiver = await OtlpReceiver.start();
  t.teardown(() => receiver.close());
  const tracerProvider = createTracerProvider({ otlpEndpoint: receiver.tracesUrl, version: 'test' });
  const h = await harness({}, { tracerProvider });
  t.teardown(() => h.close());
  const alice = addUser(h.kube, 'alice', ['team-a']);
  const traceId = '0af7651916cd43dd8448eb211c80319c';
  const res = await h.app.inject({
    url: '/v1/crashes?namespace=team-a',
    headers: { ...bearer(alice), traceparent: `00-${traceId}-b7ad6b7169203331-01` },
  });
  t.equal(res.statusCode, 200);
  await tracerProvider.forceFlush();
  t.same(receiver.rejected, [], 'the receiver decoded every export');
  const search = receiver.spans.find((s) => s.traceId === traceId);
  if (!search) throw new Error(`no span of trace ${traceId} among ${receiver.spans.length}`);
  t.equal(search.name, 'GET /v1/crashes');
  t.equal(search.parentSpanId, 'b7ad6b7169203331');
  t.equal(search.kind, 2, 'SPAN_KIND_SERVER');
  t.match(search.attributes, {
    'http.route': '/v1/crashes',
    'http.response.status_code': 200,
    'enduser.id': 'alice',
  });
  t.match(search.resource, { 'service.name': 'podmortem-query-api', 'service.version': 'test' });
});

t.test('the rate limit is per caller', async (t) => {
  const h = await harness({ rateLimitMax: 3 });
  t.teardown(() => h.close());
  const alice = addUser(h.kube, 'alice', ['team-a']);
  const bob = addUser(h.kube, 'bob', ['team-a']);
  for (let i = 0; i < 3; i++)
    t.equal(
      (await h.app.inject({ url: '/v1/crashes?namespace=team-a', headers: bearer(alice) })).statusCode,
      200,
    );
  const limited = await h.app.inject({ url: '/v1/crashes?namespace=team-a', headers: bearer(alice) });
  t.equal(limited.statusCode, 429);
  t.match(limited.json(), {
    statusCode: 429,
    code: 'PM_ERR_RATE_LIMITED',
    error: 'Too Many Requests',
    message: /^rate limit exceeded, retry in \d+/,
  });
  t.ok(limited.headers['retry-after']);
  t.equal(
    (await h.app.inject({ url: '/v1/crashes?namespace=team-a', headers: bearer(bob) })).statusCode,
    200,
    'bob is not limited',
  );
});
