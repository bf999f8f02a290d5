import t from 'tap';
import { byteSlice, parseRange } from './byte-range.ts';

t.test('single ranges: first-last, open-ended, suffix, clamped', async (t) => {
  t.same(parseRange('bytes=0-99', 1000), { kind: 'partial', start: 0, end: 99 });
  t.same(parseRange('bytes=900-', 1000), { kind: 'partial', start: 900, end: 999 });
  t.same(parseRange('bytes=-100', 1000), { kind: 'partial', start: 900, end: 999 });
  t.same(parseRange('bytes=-5000', 1000), { kind: 'partial', start: 0, end: 999 });
  t.same(parseRange('bytes=990-5000', 1000), { kind: 'partial', start: 990, end: 999 });
  t.same(parseRange(' bytes=5-5 ', 1000), { kind: 'partial', start: 5, end: 5 });
});

t.test('unsatisfiable: past the end, an empty suffix, an empty body', async (t) => {
  t.same(parseRange('bytes=1000-', 1000), { kind: 'unsatisfiable' });
  t.same(parseRange('bytes=2000-3000', 1000), { kind: 'unsatisfiable' });
  t.same(parseRange('bytes=-0', 1000), { kind: 'unsatisfiable' });
  t.same(parseRange('bytes=-10', 0), { kind: 'unsatisfiable' });
});

t.test('anything else is ignored: the whole body', async (t) => {
  for (const h of [
    undefined,
    '',
    'bytes=',
    'bytes=-',
    'bytes=5-1',
    'items=0-1',
    'bytes=0-1,3-4',
    'bytes=a-b',
    'bytes=1-2-3',
  ]) {
    t.same(parseRange(h, 1000), { kind: 'full' }, String(h));
  }
  t.same(parseRange(`bytes=0-${'9'.repeat(20)}`, 1000), { kind: 'full' }, 'absurdly long numbers');
});

async function* chunks(parts: string[]) {
  for (const p of parts) yield Buffer.from(p);
}

async function collect(it: AsyncIterable<Buffer>): Promise<string> {
  let s = '';
  for await (const c of it) s += c.toString();
  return s;
}

t.test('byteSlice keeps exactly bytes start..end across chunk borders', async (t) => {
  const parts = ['abc', 'defg', 'h', 'ijklmnop'];
  const whole = parts.join('');
  for (const [start, end] of [
    [0, 0],
    [0, 15],
    [2, 4],
    [3, 6],
    [7, 7],
    [5, 12],
    [15, 15],
  ] as const) {
    t.equal(
      await collect(byteSlice(chunks(parts), start, end)),
      whole.slice(start, end + 1),
      `${start}-${end}`,
    );
  }
});
