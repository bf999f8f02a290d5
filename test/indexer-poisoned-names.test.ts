import { randomUUID } from 'node:crypto';
import t from 'tap';
import {
  analysisRecordOf,
  crashKey,
  DLQ_HEADERS,
  toAnalysisCloudEvent,
  encodeCrashMessage,
  type CrashEvent,
} from '@podmortem/contract';
import {
  crashEvent,
  groupProgress,
  monthsAgo,
  produce,
  readDlq,
  searchableCount,
  startIndexer,
  stopIndexer,
  testElasticsearch,
  testKafka,
  topicsForTest,
  uniqueNames,
  type StreamRecord,
} from './support/indexer-harness.ts';
import { until } from './support/poll.ts';

// Issue 12: the event schema puts Kubernetes' own rules on names (DNS-1123 labels and
// subdomains), so poisoned events (a namespace climbing out, a pod name with `/`, NUL in a
// container name, a node name that is a path) go to the dead-letter topic with
// PM_ERR_RECORD_INVALID instead of the index, crash and analysis records alike; the valid records
// around them are indexed. Against the real Kafka, Elasticsearch and indexer process.

const names = uniqueNames('pm-idx-poison');
const kafka = testKafka();
const es = testElasticsearch();
const podUid = randomUUID();

let serial = 0;
function crash(change: (e: CrashEvent) => void = () => undefined): CrashEvent {
  const event = crashEvent(serial++, monthsAgo(0), [podUid]);
  if (!event.kubernetes) {
    // Every other example is a pod crash: take the next one.
    return crash(change);
  }
  change(event);
  return event;
}

function record(event: CrashEvent, field?: string): StreamRecord & { field?: string } {
  return {
    key: crashKey(event),
    value: encodeCrashMessage(event),
    id: event.crash.id,
    ...(field ? { field } : {}),
  };
}

t.test('poisoned names are dead-lettered as invalid, never indexed', async (t) => {
  const admin = await topicsForTest(t, kafka, es, names, 1);
  const indexer = await startIndexer({ names });
  t.teardown(() => stopIndexer(indexer));

  const k8s = (e: CrashEvent) => {
    if (!e.kubernetes) throw new Error('a pod crash');
    return e.kubernetes;
  };
  const poisoned = [
    record(
      crash((e) => (k8s(e).namespace = '../team-b')),
      'data.kubernetes.namespace',
    ),
    record(
      crash((e) => (k8s(e).pod.name = 'web-0/../../team-b')),
      'data.kubernetes.pod.name',
    ),
    record(
      crash((e) => (k8s(e).container.name = 'web\u0000')),
      'data.kubernetes.container.name',
    ),
    record(
      crash((e) => (k8s(e).namespace = 'Team-B')),
      'data.kubernetes.namespace',
    ),
    record(
      crash((e) => {
        e.collector.node = '../../etc';
        k8s(e).node.name = 'node-0';
      }),
      'data.collector.node',
    ),
    record(
      crash((e) => (k8s(e).pod.uid = `urn:uuid:${podUid}`)),
      'data.kubernetes.pod.uid',
    ),
  ];
  const valid = [crash(), crash(), crash()];
  await produce(
    kafka,
    names.topic,
    [record(valid[0] as CrashEvent), ...poisoned, ...valid.slice(1).map((v) => record(v))],
    1,
  );

  // The analysis of a crash, claiming another namespace by a path.
  const target = valid[0] as CrashEvent;
  const analysis = analysisRecordOf(target, {
    status: 'ok',
    analyzed_at: new Date().toISOString(),
    analyzer: '1',
  });
  const forged = { ...analysis, kubernetes: { namespace: '../team-b', pod: { uid: podUid } } };
  await produce(
    kafka,
    names.analyses,
    [{ key: 'forged', value: Buffer.from(JSON.stringify(toAnalysisCloudEvent(forged))) }],
    1,
  );

  await until(
    'the valid crashes indexed',
    async () => (await searchableCount(es, names.alias)) === valid.length,
  );
  const letters = await until('every poisoned record dead-lettered', async () => {
    const l = await readDlq(kafka, names.dlq);
    return l.length >= poisoned.length + 1 && l;
  });
  t.equal(letters.length, poisoned.length + 1, 'exactly the poisoned records in the DLQ');
  for (const p of poisoned) {
    const letter = letters.find((l) => l.headers['test-origin'] === p.key && l.value?.equals(p.value));
    t.equal(letter?.headers[DLQ_HEADERS.errorCode], 'PM_ERR_RECORD_INVALID', `${p.field}: invalid`);
    t.match(letter?.headers[DLQ_HEADERS.error], p.field ?? '', `${p.field}: the error names the field`);
  }
  const analysisLetter = letters.find((l) => l.headers[DLQ_HEADERS.sourceTopic] === names.analyses);
  t.equal(
    analysisLetter?.headers[DLQ_HEADERS.errorCode],
    'PM_ERR_RECORD_INVALID',
    'the forged analysis: invalid',
  );
  t.match(analysisLetter?.headers[DLQ_HEADERS.error], 'data.kubernetes.namespace', 'naming the namespace');

  const found = await es.search({
    index: names.alias,
    query: { ids: { values: poisoned.map((p) => p.id ?? '') } },
  });
  t.equal(found.hits.hits.length, 0, 'no poisoned crash in the index');
  const doc = await es.search<CrashEvent>({
    index: names.alias,
    query: { ids: { values: [target.crash.id] } },
  });
  t.same(doc.hits.hits[0]?._source?.analysis, target.analysis, 'the forged analysis merged nowhere');
  await until(
    'every offset committed',
    async () => (await groupProgress(admin, names.group, names.topic)).behind === 0,
  );
});
