import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import type { FastifyRequest } from 'fastify';
import type { App } from './route-deps.ts';

// One server span per request, named by the route pattern, continuing the caller's trace when a
// W3C traceparent header comes with the request.

const spans = new WeakMap<FastifyRequest, Span>();

const traceparentRe = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The remote parent of a W3C traceparent header, or the root context. */
export function parentContext(traceparent: string | string[] | undefined): Context {
  const m = typeof traceparent === 'string' ? traceparentRe.exec(traceparent.trim()) : null;
  if (!m?.[1] || !m[2] || !m[3] || /^0+$/.test(m[1]) || /^0+$/.test(m[2])) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: m[1],
    spanId: m[2],
    traceFlags: Number.parseInt(m[3], 16) & TraceFlags.SAMPLED,
    isRemote: true,
  });
}

export function requestTracing(app: App, tracer: Tracer): void {
  app.addHook('onRequest', (request, reply, done) => {
    const route = request.routeOptions.url;
    const span = tracer.startSpan(
      `${request.method} ${route ?? 'unmatched'}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': request.method,
          'url.path': request.url.split('?')[0] ?? '',
          ...(route ? { 'http.route': route } : {}),
        },
      },
      parentContext(request.headers.traceparent),
    );
    spans.set(request, span);
    const ctx = span.spanContext();
    reply.header('traceresponse', `00-${ctx.traceId}-${ctx.spanId}-0${ctx.traceFlags & 1}`);
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    const span = spans.get(request);
    if (span) {
      span.setAttribute('http.response.status_code', reply.statusCode);
      if (request.caller) span.setAttribute('enduser.id', request.caller.username);
      if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
      spans.delete(request);
    }
    done();
  });
}
