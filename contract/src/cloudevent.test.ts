import t from 'tap';
import {
  decodeAnalysisMessage,
  decodeCrashMessage,
  encodeAnalysisMessage,
  encodeCrashMessage,
  toAnalysisCloudEvent,
  toCloudEvent,
  ANALYSIS_EVENT_TYPE,
  CRASH_EVENT_TYPE,
} from './cloudevent.ts';
import { analysisRecordOf, type AnalysisResult } from './analysis-record.ts';
import { crashKey } from './topics.ts';
import { validExamples } from './examples.ts';

const examples = validExamples();
const pod = examples.find((e) => e.name === 'segv-stored')?.event;
const host = examples.find((e) => e.name === 'host-process')?.event;
if (!pod || !host) throw new Error('examples missing');

t.test('a crash round-trips through the CloudEvents envelope', async (t) => {
  const envelope = toCloudEvent(pod);
  t.equal(envelope.specversion, '1.0');
  t.equal(envelope.type, CRASH_EVENT_TYPE);
  t.equal(envelope.id, pod.crash.id);
  t.equal(envelope.source, '/nodes/node-a');
  t.equal(envelope.subject, 'payments/api-7d9f8-x2x9z/api');
  t.same(decodeCrashMessage(encodeCrashMessage(pod)), { ok: true, value: pod });
});

t.test('the Kafka key groups a pod, and a host process by its node', async (t) => {
  t.equal(crashKey(pod), 'payments/5f0c8a52-8d7e-4c11-9f70-3f2b6c7d8e01');
  t.equal(crashKey(host), '_host/node-a');
});

t.test('bad records are rejected with the field named', async (t) => {
  const cases: [string, Buffer | null, string][] = [
    ['null value', null, '(record): value is empty'],
    ['not JSON', Buffer.from('{"specversion":'), '(record): not JSON'],
    ['an array', Buffer.from('[]'), '(record): must be a JSON object'],
    [
      'wrong specversion',
      Buffer.from(JSON.stringify({ ...toCloudEvent(pod), specversion: '0.3' })),
      'specversion',
    ],
    ['wrong type', Buffer.from(JSON.stringify({ ...toCloudEvent(pod), type: 'x' })), 'type'],
    [
      'event invalid',
      Buffer.from(JSON.stringify({ ...toCloudEvent(pod), data: { ...pod, schema_version: 2 } })),
      'data.schema_version',
    ],
    ['id mismatch', Buffer.from(JSON.stringify({ ...toCloudEvent(pod), id: 'other' })), 'id: must equal'],
  ];
  for (const [name, value, expected] of cases) {
    const result = decodeCrashMessage(value);
    t.equal(result.ok, false, `${name} rejected`);
    if (!result.ok) t.ok(result.errors[0]?.startsWith(expected), `${name}: ${result.errors.join('; ')}`);
    const problem = ['null value', 'not JSON', 'an array'].includes(name) ? 'not-json' : 'invalid';
    t.match(result, { problem }, `${name}: ${problem}`);
  }
});

const analysis = {
  status: 'partial',
  reason: 'partial: the dump is truncated',
  analyzed_at: '2026-03-04T05:06:08.123Z',
  analyzer: '0.1.0',
  frames: [{ function: 'main', file: 'a.c', line: 3 }],
} as const satisfies AnalysisResult;

t.test('an analysis round-trips through its CloudEvents envelope', async (t) => {
  const record = analysisRecordOf(pod, analysis);
  const envelope = toAnalysisCloudEvent(record);
  t.equal(envelope.type, ANALYSIS_EVENT_TYPE);
  t.equal(envelope.id, `${pod.crash.id}/2026-03-04T05:06:08.123Z`, 'one id per analysis of a crash');
  t.equal(envelope.subject, pod.crash.id);
  t.equal(envelope.time, analysis.analyzed_at);
  t.same(decodeAnalysisMessage(encodeAnalysisMessage(pod, analysis)), { ok: true, value: record });
  t.equal(crashKey(record), crashKey(pod), "the crash's key");
  t.equal(crashKey(analysisRecordOf(host, analysis)), crashKey(host), "a host crash's key too");
});

t.test('bad analysis records are rejected with the field named, typed as the crash ones', async (t) => {
  const envelope = toAnalysisCloudEvent(analysisRecordOf(pod, analysis));
  const json = (v: unknown) => Buffer.from(JSON.stringify(v));
  const cases: [string, Buffer | null, string, 'not-json' | 'invalid'][] = [
    ['null value', null, '(record): value is empty', 'not-json'],
    ['garbage', Buffer.from([0xde, 0xad]), '(record): not JSON', 'not-json'],
    ['a crash record', encodeCrashMessage(pod), 'type: must be "io.podmortem.analysis.v1"', 'invalid'],
    ['an analysis as a crash', json(envelope), 'type', 'invalid'],
    [
      'crash fields',
      json({ ...envelope, data: { ...envelope.data, dump: pod.dump } }),
      'data.dump',
      'invalid',
    ],
    ['id mismatch', json({ ...envelope, id: pod.crash.id }), 'id: must equal', 'invalid'],
  ];
  for (const [name, value, expected, problem] of cases) {
    const result =
      name === 'an analysis as a crash' ? decodeCrashMessage(value) : decodeAnalysisMessage(value);
    t.equal(result.ok, false, `${name} rejected`);
    if (!result.ok) t.ok(result.errors[0]?.startsWith(expected), `${name}: ${result.errors.join('; ')}`);
    t.match(result, { problem }, `${name}: ${problem}`);
  }
});
