import t from 'tap';
import { DLQ_HEADERS } from '@podmortem/contract';
import type { KafkaMessage } from 'kafkajs';
import { deadLetterMessage } from './dead-letter.ts';

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
