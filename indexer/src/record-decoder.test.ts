import t from 'tap';
import type { CrashEvent } from '@podmortem/contract';
import {
  encodeCrashMessage,
  invalidExamples,
  newCrashId,
  toCloudEvent,
  validExamples,
} from '@podmortem/contract';
import { decodeRecord, MAX_ERROR_TEXT, truncateError } from './record-decoder.ts';

t.test("valid examples decode into their monthly index under the alias (their ids' months)", async (t) => {
  for (const { name, event } of validExamples()) {
    const d = decodeRecord(encodeCrashMessage(event), 'crashes-x');
    t.ok(d.ok, name);
    if (!d.ok) continue;
    t.same(d.event, event, `${name}: the event as sent`);
    // The examples' ids are made at their @timestamp.
    const ts = new Date(event['@timestamp']);
    const month = String(ts.getUTCMonth() + 1).padStart(2, '0');
    t.equal(d.index, `crashes-x-${ts.getUTCFullYear()}.${month}`, `${name}: index by its UTC month`);
  }
});

t.test("the index is the month of the crash id's time, not of @timestamp", async (t) => {
  const event = structuredClone(validExamples()[0]?.event);
  if (!event) throw new Error('the contract ships valid examples');
  event.crash.id = newCrashId(Date.UTC(2025, 0, 31, 23, 59, 59, 999));
  event['@timestamp'] = '2025-02-01T00:00:00.000Z';
  const d = decodeRecord(encodeCrashMessage(event), 'crashes-x');
  t.ok(d.ok && d.index === 'crashes-x-2025.01', 'January, by the id');

  event.crash.id = newCrashId(2 ** 48 - 1);
  const far = decodeRecord(encodeCrashMessage(event), 'crashes-x');
  t.ok(!far.ok && far.code === 'PM_ERR_RECORD_INVALID', 'an id of the year 10889: invalid');
  t.match(!far.ok && far.error, /^data\.crash\.id: its time \(/);
});

const firstValid = (): CrashEvent => {
  const ex = validExamples()[0];
  if (!ex) throw new Error('the contract ships valid examples');
  return ex.event;
};

t.test('invalid events are PM_ERR_RECORD_INVALID and name their field', async (t) => {
  for (const ex of invalidExamples()) {
    const value = Buffer.from(JSON.stringify({ ...toCloudEvent(firstValid()), data: ex.event }));
    const d = decodeRecord(value, 'podmortem-crashes');
    t.notOk(d.ok, ex.name);
    if (d.ok) continue;
    t.equal(d.code, 'PM_ERR_RECORD_INVALID', ex.name);
    t.match(d.error, `data.${ex.field}`, `${ex.name} names data.${ex.field}`);
  }
});

t.test('values that are not JSON objects are PM_ERR_RECORD_NOT_JSON', async (t) => {
  for (const value of [
    null,
    Buffer.alloc(0),
    Buffer.from('{not json'),
    Buffer.from('[1,2]'),
    Buffer.from([0xff, 0xfe]),
  ]) {
    const d = decodeRecord(value, 'podmortem-crashes');
    t.notOk(d.ok);
    if (!d.ok) t.equal(d.code, 'PM_ERR_RECORD_NOT_JSON', String(value));
  }
});

t.test('an envelope of another type or mismatched id is invalid, naming the envelope field', async (t) => {
  const ce = toCloudEvent(firstValid());
  const other = decodeRecord(Buffer.from(JSON.stringify({ ...ce, type: 'io.other' })), 'a');
  t.match(other, { ok: false, code: 'PM_ERR_RECORD_INVALID', error: /^type:/ });
  const id = decodeRecord(Buffer.from(JSON.stringify({ ...ce, id: 'x' })), 'a');
  t.match(id, { ok: false, code: 'PM_ERR_RECORD_INVALID', error: /^id:/ });
});

t.test('error texts are bounded', async (t) => {
  t.equal(truncateError('short'), 'short');
  const long = truncateError('x'.repeat(5000));
  t.equal(long.length, MAX_ERROR_TEXT);
  t.ok(long.endsWith('…'));
});
