// HTTP Range requests (RFC 9110 §14) for dump downloads: one byte range per request. A header
// that is not a single well-formed bytes range is ignored (the whole body is sent), as the RFC
// allows; a well-formed range that lies wholly outside the body is unsatisfiable (416).

export type RangeResult =
  { kind: 'full' } | { kind: 'partial'; start: number; end: number } | { kind: 'unsatisfiable' };

const rangeRe = /^bytes=(\d{0,15})-(\d{0,15})$/;

export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: 'full' };
  const m = rangeRe.exec(header.trim());
  if (!m) return { kind: 'full' };
  const [, first = '', last = ''] = m;
  if (first === '' && last === '') return { kind: 'full' };
  if (first === '') {
    // Suffix range: the last N bytes.
    const n = Number(last);
    if (n === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(first);
  if (last !== '' && Number(last) < start) return { kind: 'full' };
  if (start >= size) return { kind: 'unsatisfiable' };
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  return { kind: 'partial', start, end };
}

/** Bytes start..end (inclusive) of a stream: a range of a body only known as it is produced. */
export async function* byteSlice(source: AsyncIterable<Buffer>, start: number, end: number) {
  let pos = 0;
  for await (const chunk of source) {
    const next = pos + chunk.length;
    if (next > start) {
      const from = Math.max(0, start - pos);
      const to = Math.min(chunk.length, end + 1 - pos);
      if (to > from) yield chunk.subarray(from, to);
    }
    pos = next;
    if (pos > end) return;
  }
}
