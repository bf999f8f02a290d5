import { PodmortemError, messageOf } from '@podmortem/contract/runtime';

// Prometheus' HTTP API, as much as the crash context needs: range queries built from configured
// PromQL templates whose {namespace}, {pod} and {container} placeholders are filled with values
// escaped as PromQL string literals (so a value cannot end its quotes and add a matcher).

export interface RangeSeries {
  metric: Record<string, string>;
  /** [unix seconds, value as Prometheus prints it] */
  values: [number, string][];
}

export class PrometheusError extends PodmortemError {
  constructor(message: string, cause?: unknown) {
    super('PM_ERR_PROMETHEUS', message, { retriable: true, cause });
    this.name = 'PrometheusError';
  }
}

/** Escapes a value for a double-quoted PromQL string literal. */
export function promqlString(value: string): string {
  return value.replace(/[\\"\n\r]/g, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    return `\\${c}`;
  });
}

export interface PromqlValues {
  namespace: string;
  pod: string;
  container: string;
}

/** Fills a template's placeholders; they are meant to stand inside double quotes. */
export function fillPromql(template: string, values: PromqlValues): string {
  return template.replace(/\{(namespace|pod|container)\}/g, (_, key: keyof PromqlValues) =>
    promqlString(values[key]),
  );
}

export class PrometheusClient {
  readonly url: string;
  private readonly timeoutMs: number;

  constructor(params: { url: string; timeoutMs?: number }) {
    this.url = params.url.replace(/\/+$/, '');
    this.timeoutMs = params.timeoutMs ?? 10_000;
  }

  async queryRange(query: string, startS: number, endS: number, stepS: number): Promise<RangeSeries[]> {
    const body = new URLSearchParams({
      query,
      start: String(startS),
      end: String(endS),
      step: String(stepS),
    });
    let res: Response;
    try {
      res = await fetch(`${this.url}/api/v1/query_range`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new PrometheusError(`Prometheus is unreachable: ${messageOf(err)}`, err);
    }
    const text = await res.text();
    let parsed: { status?: string; error?: string; data?: { resultType?: string; result?: unknown } };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch (err) {
      throw new PrometheusError(`Prometheus answered ${res.status} with no JSON`, err);
    }
    if (parsed.status !== 'success')
      throw new PrometheusError(`Prometheus: ${parsed.error ?? `status ${res.status}`}`);
    if (parsed.data?.resultType !== 'matrix' || !Array.isArray(parsed.data.result))
      throw new PrometheusError('Prometheus did not return a matrix');
    return (parsed.data.result as { metric: Record<string, string>; values: [unknown, unknown][] }[]).map(
      (s) => ({
        metric: s.metric,
        values: s.values.map(([t, v]) => [Number(t), String(v)]),
      }),
    );
  }

  async ready(): Promise<boolean> {
    try {
      const res = await fetch(`${this.url}/-/ready`, { signal: AbortSignal.timeout(2000) });
      return res.ok;
    } catch {
      return false;
    }
  }
}
