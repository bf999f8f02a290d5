import t from 'tap';
import { decodeCursor, encodeCursor, sortValuesOf } from './cursor.ts';

const id = '0193a1b2-0000-7000-8000-000000000001';

t.test('a cursor decodes to the sort values it was made from', async (t) => {
  const c = encodeCursor([1_700_000_000_000, id]);
  t.match(c, /^[A-Za-z0-9_-]+$/);
  t.same(decodeCursor(c), [1_700_000_000_000, id]);
});

t.test('anything else is a 400 naming querystring/cursor', async (t) => {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  for (const bad of [
    '',
    'not!base64',
    'x'.repeat(201),
    Buffer.from('not json').toString('base64url'),
    b64([1, id]),
    b64(null),
    b64({ v: 2, t: 1, id }),
    b64({ v: 1, t: -1, id }),
    b64({ v: 1, t: 1.5, id }),
    b64({ v: 1, t: '1', id }),
    b64({ v: 1, t: 1, id: 'x' }),
    b64({ v: 1, t: 1, id, more: true }),
  ]) {
    t.throws(() => decodeCursor(bad), {
      code: 'PM_ERR_BAD_CURSOR',
      statusCode: 400,
      message: /querystring\/cursor/,
    });
  }
});

t.test('sort values from Elasticsearch are checked', async (t) => {
  t.same(sortValuesOf([5, id]), [5, id]);
  t.equal(sortValuesOf(undefined), undefined);
  t.equal(sortValuesOf(['5', id]), undefined);
  t.equal(sortValuesOf([5]), undefined);
});
