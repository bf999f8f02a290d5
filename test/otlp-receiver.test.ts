import { createRequire } from 'node:module';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import { createLogger } from '@podmortem/contract/runtime';
import { validExamples } from '@podmortem/contract';
import { OtlpEmitter } from '../collector/src/agent/otlp-emitter.ts';
import { OtlpReceiver, decodeProtobufLogs } from './support/otlp-receiver.ts';

// The test OTLP receiver decodes what real OpenTelemetry encoders send: the collector's OTLP/HTTP
// exporter (JSON) and the OTLP protobuf serializer of @opentelemetry/otlp-transformer.

const logger = createLogger('test', { level: 'silent' });
// otlp-transformer is a dependency of the collector's OTel packages, resolved from there.
const fromCollector = createRequire(new URL('../collector/package.json', import.meta.url));
const transformer = (await import(fromCollector.resolve('@opentelemetry/otlp-transformer'))) as {
  ProtobufLogsSerializer: { serializeRequest(records: unknown[]): Uint8Array };
};
const { resourceFromAttributes } = (await import(fromCollector.resolve('@opentelemetry/resources'))) as {
  resourceFromAttributes: (a: Record<string, unknown>) => unknown;
};

const found = validExamples().find((e) => e.name === 'segv-stored')?.event;
if (!found?.kubernetes || !found.container)
  throw new Error('the contract has no segv-stored example of a pod');
const example = found;
const k8s = found.kubernetes;
const containerId = found.container.id;

function first<T>(items: T[]): T {
  const [item] = items;
  if (item === undefined) throw new Error('nothing received');
  return item;
}

t.test('a crash exported by the collector arrives with its attributes (OTLP/JSON)', async (t) => {
  const receiver = await OtlpReceiver.start();
  t.teardown(() => receiver.close());
  const emitter = new OtlpEmitter({
    endpoint: receiver.url,
    timeoutMs: 5000,
    nodeName: 'node-a',
    version: '0.1.0',
    logger,
  });
  await emitter.start();
  t.teardown(() => emitter.shutdown());
  await emitter.announce(example);
  t.equal(receiver.records.length, 1, 'acknowledged means received');
  const rec = first(receiver.records);
  t.equal(rec.format, 'json');
  t.equal(rec.eventName, 'podmortem.crash');
  t.equal(rec.severityText, 'FATAL');
  t.equal(rec.timeUnixNano, BigInt(Date.parse(example['@timestamp'])) * 1_000_000n);
  t.match(rec.attributes, {
    'podmortem.crash.id': example.crash.id,
    'k8s.namespace.name': k8s.namespace,
    'k8s.pod.name': k8s.pod.name,
    'k8s.pod.uid': k8s.pod.uid,
    'k8s.container.name': k8s.container.name,
    'k8s.node.name': example.collector.node,
    'container.id': containerId,
    'process.pid': example.process.pid,
    'process.executable.path': example.process.executable,
    'podmortem.signal.name': example.signal.name,
    'podmortem.dump.status': example.dump.status,
  });
  t.same(rec.attributes['process.command_args'], example.process.args);
  t.equal(rec.resource['service.name'], 'podmortem-collector');
});

t.test('an OTLP protobuf request is decoded field by field', async (t) => {
  const receiver = await OtlpReceiver.start();
  t.teardown(() => receiver.close());
  const record = {
    hrTime: [1_700_000_000, 5] as [number, number],
    hrTimeObserved: [1_700_000_001, 0] as [number, number],
    severityNumber: 21,
    severityText: 'FATAL',
    body: 'SIGSEGV in api',
    eventName: 'podmortem.crash',
    resource: resourceFromAttributes({ 'service.name': 'svc' }),
    instrumentationScope: { name: 'scope', version: '1' },
    attributes: { s: 'x', i: 42, neg: -7, d: 1.5, b: true, arr: ['a', 'b'], kv: { inner: 'v' } },
    droppedAttributesCount: 0,
  };
  const body = transformer.ProtobufLogsSerializer.serializeRequest([record]);
  const res = await fetch(receiver.url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'gzip' },
    body: gzipSync(body),
  });
  t.equal(res.status, 200);
  const rec = first(receiver.records);
  t.equal(rec.format, 'protobuf');
  t.equal(rec.timeUnixNano, 1_700_000_000_000_000_005n);
  t.equal(rec.observedTimeUnixNano, 1_700_000_001_000_000_000n);
  t.equal(rec.severityNumber, 21);
  t.equal(rec.severityText, 'FATAL');
  t.equal(rec.body, 'SIGSEGV in api');
  t.equal(rec.eventName, 'podmortem.crash');
  t.same(rec.attributes, { s: 'x', i: 42, neg: -7, d: 1.5, b: true, arr: ['a', 'b'], kv: { inner: 'v' } });
  t.same(rec.scope, { name: 'scope', version: '1' });
  t.equal(rec.resource['service.name'], 'svc');
});

t.test('bad requests get a clear 4xx and are not kept', async (t) => {
  const receiver = await OtlpReceiver.start();
  t.teardown(() => receiver.close());
  const post = (type: string, body: Uint8Array | string) =>
    fetch(receiver.url, { method: 'POST', headers: { 'content-type': type }, body });
  t.equal(
    (await post('application/x-protobuf', Uint8Array.from([0x0a, 0x05, 0x01]))).status,
    400,
    'truncated protobuf',
  );
  t.equal((await post('application/x-protobuf', Uint8Array.from([0x0b]))).status, 400, 'group wire type');
  t.equal((await post('application/json', '{"resourceLogs": 3}')).status, 400, 'wrong JSON shape');
  t.equal((await post('application/json', 'not json')).status, 400, 'not JSON');
  t.equal((await post('text/plain', 'x')).status, 415);
  t.equal((await fetch(receiver.url)).status, 405);
  const postTraces = (type: string, body: string) =>
    fetch(receiver.tracesUrl, { method: 'POST', headers: { 'content-type': type }, body });
  t.equal((await postTraces('application/x-protobuf', '')).status, 415, 'traces are read as OTLP/JSON only');
  const badId = { resourceSpans: [{ scopeSpans: [{ spans: [{ name: 'x', traceId: 'not-hex' }] }] }] };
  const refused = await postTraces('application/json', JSON.stringify(badId));
  t.equal(refused.status, 400);
  t.match(await refused.text(), /traceId must be 32 hex digits/);
  t.equal(receiver.records.length, 0);
  t.equal(receiver.spans.length, 0);
  t.equal(receiver.rejected.length, 7);
  t.throws(() => decodeProtobufLogs(Uint8Array.from([0x0a, 0xff])), /truncated/);
});

t.test('unreachable, then reachable again on the same port; failing on purpose', async (t) => {
  const receiver = await OtlpReceiver.start();
  t.teardown(() => receiver.close());
  const emitter = new OtlpEmitter({
    endpoint: receiver.url,
    timeoutMs: 2000,
    nodeName: 'node-a',
    version: '0.1.0',
    logger,
  });
  await emitter.start();
  t.teardown(() => emitter.shutdown());
  await receiver.stop();
  await t.rejects(emitter.announce(example), { code: 'PM_ERR_OTLP_EXPORT' }, 'no acknowledgement while down');
  await receiver.restart();
  receiver.failWith(400);
  await t.rejects(
    emitter.announce(example),
    { code: 'PM_ERR_OTLP_EXPORT' },
    'a refusal is not an acknowledgement',
  );
  receiver.failWith(undefined);
  await emitter.announce(example);
  t.equal(receiver.withAttribute('podmortem.crash.id', example.crash.id).length, 1);
});
