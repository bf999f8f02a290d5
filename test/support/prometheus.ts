import snappy from 'snappyjs';
import { stack } from './stack.ts';

// Puts samples into the real Prometheus at chosen times through its remote-write receiver
// (protocol 1.0: a snappy-compressed protobuf WriteRequest), so tests know exactly what is there.

export interface Series {
  labels: Record<string, string>;
  samples: { timestampMs: number; value: number }[];
}

function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n;
  const out: number[] = [];
  while (v > 0x7fn) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

function lengthDelimited(field: number, payload: Uint8Array | number[]): number[] {
  return [(field << 3) | 2, ...varint(payload.length), ...payload];
}

function encodeLabel(name: string, value: string): number[] {
  return [...lengthDelimited(1, Buffer.from(name)), ...lengthDelimited(2, Buffer.from(value))];
}

function encodeSample(value: number, timestampMs: number): number[] {
  const double = Buffer.alloc(8);
  double.writeDoubleLE(value);
  return [(1 << 3) | 1, ...double, (2 << 3) | 0, ...varint(timestampMs)];
}

export function encodeWriteRequest(series: Series[]): Uint8Array {
  const body: number[] = [];
  for (const s of series) {
    const ts: number[] = [];
    for (const [name, value] of Object.entries(s.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      ts.push(...lengthDelimited(1, encodeLabel(name, value)));
    }
    for (const sample of s.samples)
      ts.push(...lengthDelimited(2, encodeSample(sample.value, sample.timestampMs)));
    body.push(...lengthDelimited(1, ts));
  }
  return Uint8Array.from(body);
}

export async function remoteWrite(series: Series[], url = stack.prometheusUrl): Promise<void> {
  const res = await fetch(`${url}/api/v1/write`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-protobuf',
      'Content-Encoding': 'snappy',
      'X-Prometheus-Remote-Write-Version': '0.1.0',
    },
    body: snappy.compress(encodeWriteRequest(series)),
  });
  if (!res.ok) throw new Error(`remote write failed: ${res.status} ${await res.text()}`);
}
