import t from 'tap';
import { dumpRemovalOf, userDeletion, validateDumpRemoval, type DumpChange } from './dump-removal.ts';
import {
  decodeDumpDeletionMessage,
  decodeDumpRemovalMessage,
  encodeDumpDeletionMessage,
  encodeDumpRemovalMessage,
} from './cloudevent.ts';
import { validExamples } from './examples.ts';
import { validateCrashEvent } from './validate.ts';

const pod = validExamples().find((e) => e.name === 'segv-stored')?.event;
const host = validExamples().find((e) => e.name === 'host-process')?.event;
if (!pod || !host) throw new Error('examples missing');

const change: DumpChange = {
  status: 'deleted',
  reason: 'deleted by alice',
  removed_at: new Date('2026-03-05T06:07:08.009Z'),
  removed_by: 'alice',
};

t.test('the removal of a dump carries what the indexer merges by, and the change', async (t) => {
  const record = dumpRemovalOf(pod, change);
  t.same(record, {
    schema_version: 1,
    '@timestamp': pod['@timestamp'],
    crash: { id: pod.crash.id },
    kubernetes: { namespace: pod.kubernetes?.namespace, pod: { uid: pod.kubernetes?.pod.uid } },
    collector: { node: pod.collector.node },
    dump: {
      status: 'deleted',
      reason: 'deleted by alice',
      removed_at: '2026-03-05T06:07:08.009Z',
      removed_by: 'alice',
    },
  });
  t.same(validateDumpRemoval(record), { ok: true, value: record });
});

t.test('a host crash has no kubernetes part; expired by retention is valid too', async (t) => {
  const record = dumpRemovalOf(host, {
    ...change,
    status: 'expired',
    reason: 'age: older than 30 days',
    removed_by: 'retention',
  });
  t.notOk('kubernetes' in record);
  t.ok(validateDumpRemoval(record).ok);
});

t.test('a crash event can say its dump was removed, and by whom', async (t) => {
  const removed = { ...pod, dump: { ...pod.dump, ...dumpRemovalOf(pod, change).dump } };
  t.ok(validateCrashEvent(removed).ok);
  const bad = validateCrashEvent({ ...removed, dump: { ...removed.dump, removed_at: 'yesterday' } });
  t.notOk(bad.ok);
  if (!bad.ok) t.match(bad.errors.join('\n'), 'dump.removed_at');
});

t.test('bad records are rejected with the field named', async (t) => {
  const record = dumpRemovalOf(pod, change);
  const without = (field: string) =>
    Object.fromEntries(Object.entries(record.dump).filter(([k]) => k !== field));
  const noReason = without('reason');
  const noBy = without('removed_by');
  const cases: [string, unknown, string][] = [
    ['not an object', 'deleted', '(event)'],
    ['no dump', { ...record, dump: undefined }, 'dump: is required'],
    ['no reason', { ...record, dump: noReason }, 'dump.reason: is required'],
    ['no removed_by', { ...record, dump: noBy }, 'dump.removed_by: is required'],
    ['empty removed_by', { ...record, dump: { ...record.dump, removed_by: '' } }, 'dump.removed_by'],
    [
      'stored is no removal',
      { ...record, dump: { ...record.dump, status: 'stored' } },
      'dump.status: must be one of expired, deleted',
    ],
    [
      'unknown status',
      { ...record, dump: { ...record.dump, status: 'gone' } },
      'dump.status: must be one of',
    ],
    ['bad removed_at', { ...record, dump: { ...record.dump, removed_at: 'now' } }, 'dump.removed_at'],
    ['bad crash id', { ...record, crash: { id: '../../etc' } }, 'crash.id'],
    ['no crash', { ...record, crash: undefined }, 'crash: is required'],
    ['no collector', { ...record, collector: undefined }, 'collector: is required'],
    [
      'bad namespace',
      { ...record, kubernetes: { namespace: 'A/B', pod: record.kubernetes?.pod } },
      'kubernetes.namespace',
    ],
    ['version 2', { ...record, schema_version: 2 }, 'schema_version: must be 1'],
    ['crash fields', { ...record, process: { pid: 1 } }, 'process: is not a field of dump removal v1'],
    [
      'dump fields',
      { ...record, dump: { ...record.dump, path: 'x' } },
      'dump.path: is not a field of dump removal v1',
    ],
  ];
  for (const [name, value, expected] of cases) {
    const v = validateDumpRemoval(value);
    t.notOk(v.ok, name);
    if (!v.ok) t.match(v.errors.join('\n'), expected, name);
  }
});

t.test('a removal travels as a CloudEvent of its own type, decoded as strictly as a crash', async (t) => {
  const record = dumpRemovalOf(pod, change);
  const value = encodeDumpRemovalMessage(record);
  t.same(decodeDumpRemovalMessage(value), { ok: true, value: record });
  const envelope = JSON.parse(value.toString('utf8')) as Record<string, unknown>;
  const cases: [string, Buffer | null, string][] = [
    ['empty', null, '(record): value is empty'],
    ['not JSON', Buffer.from('{'), '(record): not JSON'],
    ['a crash', Buffer.from(JSON.stringify({ ...envelope, type: 'io.podmortem.crash.v1' })), 'type: must be'],
    [
      'bad data',
      Buffer.from(JSON.stringify({ ...envelope, data: { ...record, crash: { id: 'x' } } })),
      'data.crash.id',
    ],
    [
      'id of another crash',
      Buffer.from(JSON.stringify({ ...envelope, id: 'other/dump-removal' })),
      'id: must equal',
    ],
  ];
  for (const [name, bad, expected] of cases) {
    const decoded = decodeDumpRemovalMessage(bad);
    t.notOk(decoded.ok, name);
    if (!decoded.ok) t.match(decoded.errors.join('\n'), expected, name);
  }
});

t.test('a deletion request round-trips: the crash event, who asked and when', async (t) => {
  const at = new Date('2026-03-05T06:07:08.009Z');
  const value = encodeDumpDeletionMessage({ event: pod, requestedBy: 'alice', requestedAt: at });
  const envelope = JSON.parse(value.toString('utf8')) as Record<string, unknown>;
  t.match(envelope, {
    specversion: '1.0',
    type: 'io.podmortem.dump-deletion.v1',
    source: '/query-api',
    subject: pod.crash.id,
    time: at.toISOString(),
    requestedby: 'alice',
    dataschema: 'https://podmortem.io/schemas/crash-event/v1',
  });
  t.same(decodeDumpDeletionMessage(value), {
    ok: true,
    value: { event: pod, requestedBy: 'alice', requestedAt: at },
  });
  t.same(userDeletion('alice', at), {
    status: 'deleted',
    reason: 'deleted by alice',
    removed_at: at,
    removed_by: 'alice',
  });
});

t.test('bad deletion requests are rejected with the field named', async (t) => {
  const good = JSON.parse(
    encodeDumpDeletionMessage({ event: pod, requestedBy: 'alice', requestedAt: new Date() }).toString('utf8'),
  ) as Record<string, unknown>;
  const cases: [string, Buffer | null, string][] = [
    ['empty', null, '(record): value is empty'],
    ['not JSON', Buffer.from('{'), '(record): not JSON'],
    [
      'a removal',
      encodeDumpRemovalMessage(dumpRemovalOf(pod, change)),
      'type: must be "io.podmortem.dump-deletion.v1"',
    ],
    [
      'no requestedby',
      Buffer.from(JSON.stringify({ ...good, requestedby: undefined })),
      'requestedby: must be',
    ],
    ['empty requestedby', Buffer.from(JSON.stringify({ ...good, requestedby: '' })), 'requestedby: must be'],
    [
      'long requestedby',
      Buffer.from(JSON.stringify({ ...good, requestedby: 'u'.repeat(513) })),
      'requestedby: must be',
    ],
    ['bad time', Buffer.from(JSON.stringify({ ...good, time: 'soon' })), 'time: must be'],
    ['no event', Buffer.from(JSON.stringify({ ...good, data: 'x' })), 'data'],
    [
      'a bad event',
      Buffer.from(JSON.stringify({ ...good, data: { ...pod, crash: { id: '../../etc' } } })),
      'data.crash.id',
    ],
    [
      'another crash',
      Buffer.from(JSON.stringify({ ...good, subject: host.crash.id })),
      'subject: must equal data.crash.id',
    ],
  ];
  for (const [name, value, error] of cases) {
    const decoded = decodeDumpDeletionMessage(value);
    t.notOk(decoded.ok, name);
    if (!decoded.ok) t.match(decoded.errors.join('\n'), error, name);
  }
});
