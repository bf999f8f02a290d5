import { SeverityNumber, type Attributes } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { LoggerProvider, type LogRecordProcessor, type ReadWriteLogRecord } from '@opentelemetry/sdk-logs';
import {
  ATTR_CONTAINER_ID,
  ATTR_CONTAINER_IMAGE_NAME,
  ATTR_CONTAINER_IMAGE_REPO_DIGESTS,
  ATTR_K8S_CONTAINER_NAME,
  ATTR_K8S_NAMESPACE_NAME,
  ATTR_K8S_NODE_NAME,
  ATTR_K8S_POD_NAME,
  ATTR_K8S_POD_UID,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
} from '@opentelemetry/semantic-conventions';
import type { Logger } from 'pino';
import type { CrashEvent } from '@podmortem/contract';
import { AgentError } from './errors.ts';
import type { Sink } from './sink.ts';

// Announces each crash as one OpenTelemetry log record over OTLP/HTTP. The spool entry may go
// only once the receiver acknowledged the record, so every record is exported on its own and the
// exporter's result callback decides — a batching processor would report nothing back.

export const CRASH_EVENT_NAME = 'podmortem.crash';

// process.* and container.runtime are still "development" in the semantic conventions package
// (no stable constant yet): their names are spelled here.
const ATTR_PROCESS_PID = 'process.pid';
const ATTR_PROCESS_EXECUTABLE_PATH = 'process.executable.path';
const ATTR_PROCESS_EXECUTABLE_NAME = 'process.executable.name';
const ATTR_PROCESS_COMMAND_ARGS = 'process.command_args';
const ATTR_CONTAINER_RUNTIME = 'container.runtime';

const OWNER_ATTRIBUTE: Record<string, string> = {
  ReplicaSet: 'k8s.replicaset.name',
  StatefulSet: 'k8s.statefulset.name',
  DaemonSet: 'k8s.daemonset.name',
  Job: 'k8s.job.name',
  CronJob: 'k8s.cronjob.name',
  Deployment: 'k8s.deployment.name',
};

/** The log record's attributes: semantic-convention names, plus podmortem.* for what has none. */
export function crashAttributes(event: CrashEvent): Attributes {
  const a: Attributes = {
    'podmortem.crash.id': event.crash.id,
    'podmortem.signal.number': event.signal.number,
    'podmortem.signal.name': event.signal.name,
    'podmortem.dump.status': event.dump.status,
    [ATTR_K8S_NODE_NAME]: event.collector.node,
    [ATTR_PROCESS_PID]: event.process.pid,
    [ATTR_PROCESS_EXECUTABLE_NAME]: event.process.name,
  };
  const set = (key: string, value: string | number | string[] | undefined) => {
    if (value !== undefined) a[key] = value;
  };
  const k8s = event.kubernetes;
  if (k8s) {
    set(ATTR_K8S_NAMESPACE_NAME, k8s.namespace);
    set(ATTR_K8S_POD_NAME, k8s.pod.name);
    set(ATTR_K8S_POD_UID, k8s.pod.uid);
    set(ATTR_K8S_CONTAINER_NAME, k8s.container.name);
    const ownerKey = k8s.owner && OWNER_ATTRIBUTE[k8s.owner.kind];
    if (ownerKey) set(ownerKey, k8s.owner?.name);
  }
  set(ATTR_CONTAINER_ID, event.container?.id);
  set(ATTR_CONTAINER_RUNTIME, event.container?.runtime);
  set(ATTR_CONTAINER_IMAGE_NAME, event.container?.image?.name);
  if (event.container?.image?.digest) set(ATTR_CONTAINER_IMAGE_REPO_DIGESTS, [event.container.image.digest]);
  set(ATTR_PROCESS_EXECUTABLE_PATH, event.process.executable);
  set(ATTR_PROCESS_COMMAND_ARGS, event.process.args);
  set('podmortem.signal.code', event.signal.code);
  set('podmortem.fault.address', event.fault?.address);
  set('podmortem.dump.reason', event.dump.reason);
  set('podmortem.dump.path', event.dump.path);
  set('podmortem.dump.sha256', event.dump.sha256);
  set('podmortem.dump.size_bytes', event.dump.size_bytes);
  set('podmortem.build_id', event.analysis?.build_id);
  return a;
}

export function crashTitle(event: CrashEvent): string {
  const k8s = event.kubernetes;
  const where = k8s
    ? `${k8s.namespace}/${k8s.pod.name}/${k8s.container.name}`
    : `host ${event.collector.node}`;
  return `${event.signal.name} in ${event.process.name || 'process'} (pid ${event.process.pid}) on ${where}`;
}

/** Exports every record at once and keeps the acknowledgement for the caller. */
class AcknowledgedExport implements LogRecordProcessor {
  private readonly exporter: OTLPLogExporter;
  /** The export of the record just emitted: Logger.emit calls onEmit synchronously. */
  last: Promise<void> | undefined;

  constructor(exporter: OTLPLogExporter) {
    this.exporter = exporter;
  }

  onEmit(record: ReadWriteLogRecord): void {
    this.last = new Promise((resolve, reject) => {
      this.exporter.export([record], (result) => {
        if (result.code === ExportResultCode.SUCCESS) resolve();
        else reject(result.error ?? new Error('export failed'));
      });
    });
  }

  async forceFlush(): Promise<void> {}

  async shutdown(): Promise<void> {
    await this.exporter.shutdown();
  }
}

export interface OtlpEmitterParams {
  endpoint: string;
  timeoutMs: number;
  nodeName: string;
  version: string;
  logger: Logger;
}

export class OtlpEmitter implements Sink {
  readonly name = 'otlp';
  private readonly params: OtlpEmitterParams;
  private provider: LoggerProvider | undefined;
  private processor: AcknowledgedExport | undefined;

  constructor(params: OtlpEmitterParams) {
    this.params = params;
  }

  start(): Promise<void> {
    if (this.provider) return Promise.resolve();
    const exporter = new OTLPLogExporter({ url: this.params.endpoint, timeoutMillis: this.params.timeoutMs });
    this.processor = new AcknowledgedExport(exporter);
    this.provider = new LoggerProvider({
      resource: resourceFromAttributes({
        [ATTR_SERVICE_NAME]: 'podmortem-collector',
        [ATTR_SERVICE_VERSION]: this.params.version,
        [ATTR_K8S_NODE_NAME]: this.params.nodeName,
      }),
      // Argument lists and paths are bounded by the crash event schema already.
      logRecordLimits: { attributeCountLimit: 128 },
      processors: [this.processor],
    });
    return Promise.resolve();
  }

  /** Resolves once the OTLP receiver acknowledged the crash's log record. */
  async announce(event: CrashEvent): Promise<void> {
    const provider = this.provider;
    const processor = this.processor;
    if (!provider || !processor)
      throw new AgentError('PM_ERR_OTLP_EXPORT', 'the OTLP emitter is not started');
    processor.last = undefined;
    provider.getLogger('podmortem-collector', this.params.version).emit({
      timestamp: new Date(event['@timestamp']),
      severityNumber: SeverityNumber.FATAL,
      severityText: 'FATAL',
      eventName: CRASH_EVENT_NAME,
      body: crashTitle(event),
      attributes: crashAttributes(event),
    });
    const exported = processor.last as Promise<void> | undefined;
    if (!exported)
      throw new AgentError('PM_ERR_OTLP_EXPORT', 'the log record was not exported (logger shut down)');
    try {
      await exported;
    } catch (err) {
      throw new AgentError('PM_ERR_OTLP_EXPORT', `${this.params.endpoint}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  async shutdown(): Promise<void> {
    const provider = this.provider;
    this.provider = undefined;
    this.processor = undefined;
    await provider?.shutdown();
  }
}
