import t from 'tap';
import { byteSlice } from './crash-dump.ts';

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
