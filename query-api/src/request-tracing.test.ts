import { ROOT_CONTEXT, trace } from '@opentelemetry/api';
import t from 'tap';
import { parentContext } from './request-tracing.ts';

t.test('a W3C traceparent becomes the remote parent', async (t) => {
  const ctx = parentContext('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
  t.match(trace.getSpanContext(ctx), {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
    traceFlags: 1,
    isRemote: true,
  });
});

t.test('anything else starts a new trace', async (t) => {
  for (const bad of [
    undefined,
    '',
    'garbage',
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
    '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    ['a', 'b'],
  ]) {
    t.equal(parentContext(bad), ROOT_CONTEXT, JSON.stringify(bad));
  }
});
