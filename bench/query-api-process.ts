import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FakeKubeApi } from '../test/support/fake-kube-api.ts';
import { freePort } from '../test/support/ports.ts';
import { repoDir, stack } from '../test/support/stack.ts';

// The query API as the benches run it: `node query-api/src/main.ts`, a process of its own on the
// local stack's Elasticsearch and Prometheus, the Kubernetes API stand-in, no rate limit in the way.

/** Resolves once `url` answers below 500; fails after 30 s. */
export async function waitHttp(url: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const ok = await fetch(url).then(
      (r) => r.status < 500,
      () => false,
    );
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${url} did not come up`);
}

export interface BenchApiParams {
  kube: FakeKubeApi;
  /** Where its kubeconfig is written. */
  work: string;
  crashIndex: string;
  /** Its storage variables (PODMORTEM_API_STORAGE_*). */
  storageEnv: Record<string, string>;
  /** Takes the process as soon as it is spawned, so it is stopped even if it never comes up. */
  adopt: (child: ChildProcess) => void;
}

/** Starts the API and resolves with its base URL once it is up. */
export async function startBenchApi(p: BenchApiParams): Promise<string> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [join(repoDir, 'query-api/src/main.ts')], {
    env: {
      PATH: process.env.PATH ?? '',
      LOG_LEVEL: 'warn',
      PODMORTEM_API_HOST: '127.0.0.1',
      PODMORTEM_API_PORT: String(port),
      ...p.storageEnv,
      PODMORTEM_API_ELASTICSEARCH_URL: stack.elasticsearchUrl,
      PODMORTEM_API_PROMETHEUS_URL: stack.prometheusUrl,
      PODMORTEM_API_CRASH_INDEX: p.crashIndex,
      PODMORTEM_API_KUBECONFIG: p.kube.writeKubeconfig(join(p.work, 'kubeconfig')),
      PODMORTEM_API_RATE_LIMIT_MAX: '1000000',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  p.adopt(child);
  await waitHttp(`${url}/healthz`);
  return url;
}
