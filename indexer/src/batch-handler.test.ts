import t from 'tap';
import type { KafkaMessage } from 'kafkajs';
import { chunkMessages } from './batch-handler.ts';

function message(offset: number, size: number): KafkaMessage {
  return {
    key: null,
    value: Buffer.alloc(size),
    timestamp: '0',
    attributes: 0,
    offset: String(offset),
    headers: {},
  };
}

const offsets = (chunks: KafkaMessage[][]) => chunks.map((c) => c.map((m) => Number(m.offset)));

t.test('chunks hold at most maxRecords records, in order', async (t) => {
  const ms = Array.from({ length: 7 }, (_, i) => message(i, 10));
  t.same(offsets(chunkMessages(ms, 3, 1e6)), [[0, 1, 2], [3, 4, 5], [6]]);
  t.same(chunkMessages([], 3, 1e6), []);
});

t.test('chunks stay within maxBytes; a bigger record goes alone', async (t) => {
  const ms = [message(0, 40), message(1, 40), message(2, 40), message(3, 500), message(4, 10)];
  t.same(offsets(chunkMessages(ms, 100, 100)), [[0, 1], [2], [3], [4]]);
});
