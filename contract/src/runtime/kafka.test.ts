import t from 'tap';
import { Writable } from 'node:stream';
import { logLevel } from 'kafkajs';
import { createLogger } from './logger.ts';
import { createIdempotentProducer, createKafka, idempotentProducerConfig, kafkaLogCreator } from './kafka.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean))
        lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger('test', { level: 'debug' }, stream), lines };
}

t.test('kafkajs lines become pino lines at their level, without the fields pino has already', async (t) => {
  const { logger, lines } = capture();
  const log = kafkaLogCreator(logger)(logLevel.DEBUG);
  const at = (level: logLevel) =>
    log({
      namespace: 'Connection',
      level,
      label: 'x',
      log: { message: `at ${level}`, timestamp: 'then', logger: 'kafkajs', broker: 'b:9092' },
    });
  at(logLevel.ERROR);
  at(logLevel.WARN);
  at(logLevel.INFO);
  at(logLevel.DEBUG);
  t.same(
    lines.map((l) => l.level),
    [50, 40, 30, 20],
  );
  t.match(lines[0], { msg: `at ${logLevel.ERROR}`, kafkajs: 'Connection', broker: 'b:9092' });
  t.notOk('timestamp' in (lines[0] ?? {}) || lines[0]?.logger !== undefined, 'no second timestamp or logger');
});

t.test('a client that cannot reach its broker says so in the service log, as kafkajs', async (t) => {
  const { logger, lines } = capture();
  const kafka = createKafka({
    brokers: ['127.0.0.1:1'],
    clientId: 'test',
    logger,
    connectionTimeoutMs: 200,
    retry: { retries: 1, initialRetryTime: 10, maxRetryTime: 20 },
  });
  const producer = createIdempotentProducer(kafka);
  await t.rejects(producer.connect());
  const line = lines.find((l) => l.level === 50);
  t.match(line, { component: 'kafkajs', kafkajs: String });
});

t.test('the producer settings: idempotent, one request in flight, no topic made by a send', async (t) => {
  t.match(idempotentProducerConfig, {
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
  });
  t.ok(Object.isFrozen(idempotentProducerConfig));
});
