import t from 'tap';
import { remoteWrite } from './support/prometheus.ts';
import { stack, uniqueName } from './support/stack.ts';

interface RangeResponse {
  status: string;
  data: { resultType: string; result: { metric: Record<string, string>; values: [number, string][] }[] };
}

async function queryRange(
  query: string,
  startS: number,
  endS: number,
  stepS: number,
): Promise<RangeResponse> {
  const params = new URLSearchParams({
    query,
    start: String(startS),
    end: String(endS),
    step: String(stepS),
  });
  const res = await fetch(`${stack.prometheusUrl}/api/v1/query_range?${params.toString()}`);
  if (!res.ok) throw new Error(`query_range ${res.status}: ${await res.text()}`);
  return (await res.json()) as RangeResponse;
}

t.test('a PromQL range query returns the series the test wrote, at their times', async (t) => {
  const pod = uniqueName('pod');
  const startS = Math.floor(Date.now() / 1000) - 600;
  const samples = (base: number) =>
    Array.from({ length: 11 }, (_, i) => ({ timestampMs: (startS + i * 60) * 1000, value: base + i }));
  await remoteWrite([
    { labels: { __name__: 'pm_test_working_set_bytes', pod, container: 'api' }, samples: samples(100) },
    { labels: { __name__: 'pm_test_working_set_bytes', pod, container: 'sidecar' }, samples: samples(1000) },
    {
      labels: { __name__: 'pm_test_working_set_bytes', pod: `${pod}-other`, container: 'api' },
      samples: samples(5),
    },
  ]);

  const api = await queryRange(
    `pm_test_working_set_bytes{pod="${pod}",container="api"}`,
    startS,
    startS + 600,
    60,
  );
  t.equal(api.status, 'success');
  t.equal(api.data.result.length, 1, 'one series for the pod and container');
  t.same(
    api.data.result[0]?.values,
    Array.from({ length: 11 }, (_, i) => [startS + i * 60, String(100 + i)]),
    'every sample at its time',
  );

  const sum = await queryRange(
    `sum by (pod) (pm_test_working_set_bytes{pod="${pod}"})`,
    startS,
    startS + 600,
    300,
  );
  t.same(
    sum.data.result.map((r) => r.values),
    [
      [
        [startS, '1100'],
        [startS + 300, '1110'],
        [startS + 600, '1120'],
      ],
    ],
    'aggregation over both containers, other pods excluded',
  );
});

t.test('the server reports its own version', async (t) => {
  const res = await fetch(`${stack.prometheusUrl}/api/v1/status/buildinfo`);
  const body = (await res.json()) as { data: { version: string } };
  t.match(body.data.version, /^\d+\.\d+\.\d+/);
});
