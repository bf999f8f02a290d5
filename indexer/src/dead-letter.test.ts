import { createHash } from 'node:crypto';
import t from 'tap';
import { DLQ_HEADERS } from '@podmortem/contract';
import type { KafkaMessage } from 'kafkajs';
import { batchBytes, cutDeadLetterMessage, deadLetterMessage, refusalOf } from './dead-letter.ts';

t.test('a dead letter keeps the original bytes, key, headers and timestamp, and says why', async (t) => {
  const original = {
    key: Buffer.from('payments/uid'),
    value: Buffer.from([0xff, 0x00, 0x7b]),
    timestamp: '1700000000000',
    attributes: 0,
    offset: '41',
    headers: { traceparent: Buffer.from('00-abc-def-01'), multi: ['a', 'b'] },
  } as KafkaMessage;
  const m = deadLetterMessage({
    topic: 'podmortem.crashes',
    partition: 3,
    message: original,
    code: 'PM_ERR_RECORD_INVALID',
    error: 'data.process.pid: must be integer',
  });
  t.equal(m.key, original.key);
  t.equal(m.value, original.value, 'the very bytes');
  t.equal(m.timestamp, original.timestamp);
  t.same(m.headers, {
    traceparent: Buffer.from('00-abc-def-01'),
    multi: ['a', 'b'],
    [DLQ_HEADERS.error]: 'data.process.pid: must be integer',
    [DLQ_HEADERS.errorCode]: 'PM_ERR_RECORD_INVALID',
    [DLQ_HEADERS.sourceTopic]: 'podmortem.crashes',
    [DLQ_HEADERS.sourcePartition]: '3',
    [DLQ_HEADERS.sourceOffset]: '41',
  });
});

t.test('a null key and value stay null', async (t) => {
  const m = deadLetterMessage({
    topic: 't',
    partition: 0,
    message: {
      key: null,
      value: null,
      timestamp: '1',
      attributes: 0,
      offset: '0',
      headers: {},
    },
    code: 'PM_ERR_RECORD_NOT_JSON',
    error: '(record): value is empty',
  });
  t.equal(m.key, null);
  t.equal(m.value, null);
});

t.test(
  'a letter cut to fit keeps the head of the value, the reason, sha256 and size of the original',
  async (t) => {
    const value = Buffer.alloc(10_000, 0x61);
    const letter = {
      topic: 'src',
      partition: 1,
      message: {
        key: Buffer.from('k'.repeat(1000)),
        value,
        timestamp: '1700000000000',
        attributes: 0,
        offset: '7',
        headers: { origin: 'x' },
      } as KafkaMessage,
      code: 'PM_ERR_RECORD_NOT_JSON' as const,
      error: '(record): not JSON',
    };
    t.ok(batchBytes(deadLetterMessage(letter)) > 10_000, 'the whole letter is over 10,000 bytes');
    const cut = cutDeadLetterMessage(letter, 4096, 'over the limit');
    t.ok(batchBytes(cut) <= 4096, `the cut letter fits (${batchBytes(cut)} bytes)`);
    const head = cut.value as Buffer;
    t.ok(head.length > 0 && value.subarray(0, head.length).equals(head), 'a head of the value');
    t.equal(cut.headers?.origin, 'x', 'small original headers kept');
    t.equal(cut.timestamp, '1700000000000');
    t.equal(cut.headers?.[DLQ_HEADERS.originalSha256], createHash('sha256').update(value).digest('hex'));
    t.equal(cut.headers?.[DLQ_HEADERS.originalBytes], '10000');
    t.match(cut.headers?.[DLQ_HEADERS.truncated], /^over the limit: value cut to \d+ of 10000 bytes$/);
    t.equal(cut.headers?.[DLQ_HEADERS.sourceOffset], '7');

    const bare = cutDeadLetterMessage(letter, 4096, 'refused', true);
    t.equal((bare.value as Buffer).length, 0, 'bare: no value');
    t.equal((bare.key as Buffer).length, 256, 'a short key');
    t.equal(bare.headers?.origin, undefined, 'no original header');
    t.equal(bare.timestamp, undefined, "the producer's time");
    t.match(bare.headers?.[DLQ_HEADERS.truncated], /original headers dropped, key cut to 256 bytes/);
  },
);

t.test('the Kafka errors that refuse the records themselves, and only those', async (t) => {
  t.equal(refusalOf({ type: 'MESSAGE_TOO_LARGE' }), 'MESSAGE_TOO_LARGE');
  t.equal(
    refusalOf({ name: 'KafkaJSNonRetriableError', cause: { type: 'INVALID_RECORD' } }),
    'INVALID_RECORD',
  );
  t.equal(refusalOf({ type: 'INVALID_TIMESTAMP' }), 'INVALID_TIMESTAMP');
  for (const other of [
    { type: 'NOT_LEADER_OR_FOLLOWER' },
    { type: 'TOPIC_AUTHORIZATION_FAILED' },
    new Error('ECONNREFUSED'),
    null,
  ])
    t.equal(refusalOf(other), undefined, `${JSON.stringify(other)} may pass: retried`);
});
