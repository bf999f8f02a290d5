import t from 'tap';
import { validateCrashEvent } from './validate.ts';
import { validExamples, invalidExamples } from './examples.ts';

t.test('every valid example passes validation', async (t) => {
  const examples = validExamples();
  t.ok(examples.length >= 5, 'ships several valid examples');
  for (const { name, event } of examples) {
    t.same(validateCrashEvent(event), { ok: true, value: event }, name);
  }
});

t.test('every invalid example fails with an error naming its field', async (t) => {
  const examples = invalidExamples();
  t.ok(examples.length >= 10, 'ships several invalid examples');
  for (const { name, field, event } of examples) {
    const result = validateCrashEvent(event);
    if (result.ok) {
      t.fail(`${name} was accepted`);
      continue;
    }
    t.ok(
      result.errors.some((e) => e.startsWith(`${field}: `)),
      `${name}: an error names ${field} (got ${result.errors.join('; ')})`,
    );
  }
});

t.test('values that are not objects are rejected, not thrown on', async (t) => {
  for (const [i, value] of [null, undefined, 42, 'event', [], [{}]].entries()) {
    t.equal(validateCrashEvent(value).ok, false, `value #${i}`);
  }
  const empty = validateCrashEvent({});
  t.equal(empty.ok, false);
  if (!empty.ok) t.ok(empty.errors.includes('crash: is required'), 'names the missing top-level fields');
});

t.test('a wrong enum value lists the allowed values', async (t) => {
  const [first] = validExamples();
  if (!first) throw new Error('no examples');
  const result = validateCrashEvent({ ...first.event, dump: { status: 'lost' } });
  t.same(result, {
    ok: false,
    errors: ['dump.status: must be one of stored, pending, skipped, truncated, failed'],
  });
});
