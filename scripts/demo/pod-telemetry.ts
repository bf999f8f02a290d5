import { readFileSync } from 'node:fs';
import { Client } from '@elastic/elasticsearch';
import { remoteWrite, type Series } from '../../test/support/prometheus.ts';
import type { PodCgroup } from '../../test/support/pod-cgroup.ts';

// There is no kubelet here, so for the demo pod this plays the parts a cluster has anyway: cAdvisor
// (the container's real memory and CPU, read from /proc of the processes in its cgroup and written
// to Prometheus as container_memory_working_set_bytes and container_cpu_usage_seconds_total) and a
// log shipper (the container's real stdout lines, indexed with ECS kubernetes.* fields).

export interface PodIdentity {
  namespace: string;
  pod: string;
  container: string;
}

const CLOCK_TICKS = 100;

function usage(pid: number): { rssBytes: number; cpuSeconds: number } | undefined {
  try {
    const rssKb = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may hold spaces) start at state; utime and stime are the 12th/13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return { rssBytes: rssKb * 1024, cpuSeconds: ticks / CLOCK_TICKS };
  } catch {
    return undefined;
  }
}

export class PodTelemetry {
  private readonly memory: Series['samples'] = [];
  private readonly cpu: Series['samples'] = [];
  private readonly logs: { '@timestamp': string; message: string }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly cgroup: PodCgroup;
  private readonly id: PodIdentity;

  constructor(cgroup: PodCgroup, id: PodIdentity) {
    this.cgroup = cgroup;
    this.id = id;
  }

  /** Samples the cgroup's processes every `intervalMs`, as cAdvisor would. */
  start(intervalMs = 100): void {
    this.timer = setInterval(() => {
      const now = Date.now();
      const used = this.cgroup.pids().map(usage);
      if (used.length === 0 || used.some((u) => u === undefined)) return;
      this.memory.push({ timestampMs: now, value: used.reduce((n, u) => n + (u?.rssBytes ?? 0), 0) });
      this.cpu.push({ timestampMs: now, value: used.reduce((n, u) => n + (u?.cpuSeconds ?? 0), 0) });
    }, intervalMs);
  }

  logLine(message: string): void {
    this.logs.push({ '@timestamp': new Date().toISOString(), message });
  }

  /** Stops sampling and ships what was seen; returns the counts shipped. */
  async ship(
    prometheusUrl: string,
    es: Client,
    logsIndex: string,
  ): Promise<{ samples: number; lines: number }> {
    clearInterval(this.timer);
    const labels = { namespace: this.id.namespace, pod: this.id.pod, container: this.id.container };
    await remoteWrite(
      [
        { labels: { __name__: 'container_memory_working_set_bytes', ...labels }, samples: this.memory },
        { labels: { __name__: 'container_cpu_usage_seconds_total', ...labels }, samples: this.cpu },
      ],
      prometheusUrl,
    );
    if (this.logs.length > 0) {
      const kubernetes = {
        namespace: this.id.namespace,
        pod: { name: this.id.pod },
        container: { name: this.id.container },
      };
      await es.bulk({
        refresh: 'wait_for',
        operations: this.logs.flatMap((l) => [{ create: { _index: logsIndex } }, { ...l, kubernetes }]),
      });
    }
    return { samples: this.memory.length + this.cpu.length, lines: this.logs.length };
  }
}
