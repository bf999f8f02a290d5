import t from 'tap';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { createLogger, logProcessWarnings } from './logger.ts';

function capture(): { stream: Writable; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean))
        lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { stream, lines };
}

t.test('secrets are censored wherever the redacted paths name them', async (t) => {
  const { stream, lines } = capture();
  const logger = createLogger('test', {}, stream);
  logger.info({ token: 'abc', headers: { authorization: 'Bearer xyz' }, user: { password: 'p' } }, 'hi');
  t.same(lines[0]?.token, '[redacted]');
  t.same(lines[0]?.headers, { authorization: '[redacted]' });
  t.same(lines[0]?.user, { password: '[redacted]' });
});

t.test("Node's process warnings become JSON log lines", async (t) => {
  const { stream, lines } = capture();
  const listeners = process.listeners('warning');
  t.teardown(() => {
    process.removeAllListeners('warning');
    for (const l of listeners) process.on('warning', l);
  });
  logProcessWarnings(createLogger('test', {}, stream));
  t.equal(process.listenerCount('warning'), 1, "Node's own printer is replaced");
  const warned = once(process, 'warning');
  // The warning kafkajs 2.2.4 caused under Node 24 before patches/kafkajs+2.2.4.patch.
  setTimeout(() => undefined, -5).unref();
  await warned;
  t.match(lines, [{ level: 40, warning: 'TimeoutNegativeWarning', msg: /-5 is a negative number/ }]);
});
