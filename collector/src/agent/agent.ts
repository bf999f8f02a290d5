import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { envName, kafkaSecurity, OpsServer, retryPolicy, type Component } from '@podmortem/contract/runtime';
import { kubeConfigFrom } from '@podmortem/contract/runtime/kube-config';
import { storeFrom } from '@podmortem/contract/store';
import { ENV_PREFIX, type CollectorConfig } from './config.ts';
import { Delivery } from './delivery.ts';
import { HandlerLogTail } from './handler-log-tail.ts';
import { ModuleWriter } from './module-writer.ts';
import { handlerLogPath, type HandlerInstall } from './handler-installer.ts';
import { KafkaEmitter } from './kafka-emitter.ts';
import { KernelSettings } from './kernel-settings.ts';
import { OtlpEmitter } from './otlp-emitter.ts';
import { PodResolver } from './pod-resolver.ts';
import { POD_STATE_FILE } from './pod-state-file.ts';
import type { Sink } from './sink.ts';
import { Spool } from './spool.ts';
import { SpoolWatcher } from './spool-watcher.ts';
import { StorageWriter } from './storage-writer.ts';
import { createTelemetry, type Telemetry } from './telemetry.ts';

// The collector agent, the DaemonSet's long-lived process, put together from its parts. Start
// order: handler installed and the kernel pointed at it (crashes start reaching the spool), then
// the sinks, the pod cache, the spool watcher, and the ops server last. Shutdown runs in
// reverse: the kernel settings are restored after the last delivery attempt.

export const COLLECTOR_VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

export interface AgentParams {
  config: CollectorConfig;
  logger: Logger;
  handler: HandlerInstall;
  /** Defaults to the config's kubeconfig file, else in-cluster / KUBECONFIG / ~/.kube/config. */
  kubeConfig?: KubeConfig;
  /** /proc/sys/kernel unless a test says otherwise. */
  sysctlDir?: string;
  /** Announced to after the built-in sinks (OTLP, Kafka), each crash to all of them. */
  sinks?: Sink[];
}

export interface Agent {
  components: Component[];
  telemetry: Telemetry;
  ops: OpsServer;
  watcher: SpoolWatcher;
  pods: PodResolver;
  ready(): boolean;
}

/** Points the kernel at the handler on start (after installing it); puts the node's values back on shutdown. */
class CorePatternComponent implements Component {
  readonly name = 'core-pattern';
  private settings: KernelSettings | undefined;
  private readonly p: AgentParams;

  constructor(params: AgentParams) {
    this.p = params;
  }

  async start(): Promise<void> {
    const pattern = await this.p.handler.install();
    if (!this.p.config.manageCorePattern) {
      this.p.logger.info(
        { corePattern: pattern },
        'handler installed; kernel.core_pattern left alone (manageCorePattern=false)',
      );
      return;
    }
    this.settings = new KernelSettings({
      sysctlDir: this.p.sysctlDir ?? '/proc/sys/kernel',
      stateDir: this.p.config.stateDir,
      corePattern: pattern,
      corePipeLimit: this.p.config.corePipeLimit,
      logger: this.p.logger,
    });
    await this.settings.start();
  }

  // Restoring two sysctl values is quick and must not be cut short: no deadline taken.
  async shutdown(): Promise<void> {
    await this.settings?.shutdown();
  }
}

export function createAgent(params: AgentParams): Agent {
  const { config, logger } = params;
  const spool = new Spool(config.spoolDir);
  const telemetry = createTelemetry(() => spool.usage());
  const pods = new PodResolver({
    kubeConfig: params.kubeConfig ?? kubeConfigFrom(config.kubeconfig),
    nodeName: config.nodeName,
    tombstoneMs: config.tombstoneMs,
    logger: logger.child({ component: 'pod-resolver' }),
    onSynced: (synced) => telemetry.kubeReady.set(synced ? 1 : 0),
    stateFile: join(config.stateDir, POD_STATE_FILE),
    onStateFileError: (op) => telemetry.podCacheFileErrors.inc({ op }),
  });
  const store = storeFrom(config);
  const modules = new ModuleWriter({
    store,
    minFreeBytes: config.storageMinFreeBytes,
    spoolDir: config.spoolDir,
    telemetry,
  });
  const storage = new StorageWriter({
    store,
    minFreeBytes: config.storageMinFreeBytes,
    namespaceQuotaBytes: config.storageNamespaceQuotaBytes,
  });
  const sinks: Sink[] = [
    new OtlpEmitter({
      endpoint: config.otlpEndpoint,
      timeoutMs: config.otlpTimeoutMs,
      nodeName: config.nodeName,
      version: COLLECTOR_VERSION,
      logger,
    }),
    new KafkaEmitter({
      brokers: config.kafkaBrokers,
      topic: config.kafkaTopic,
      clientId: config.kafkaClientId,
      timeoutMs: config.kafkaTimeoutMs,
      security: kafkaSecurity(config, ENV_PREFIX),
      logger,
      ...(config.createTopics
        ? {
            topicSetup: {
              spec: {
                topic: config.kafkaTopic,
                partitions: config.topicPartitions,
                replicationFactor: config.topicReplicationFactor,
                configs: { 'max.message.bytes': String(config.topicMaxMessageBytes) },
              },
              createVariable: envName(ENV_PREFIX, 'createTopics'),
              retry: retryPolicy({
                retries: Infinity,
                initialMs: config.retryInitialMs,
                maxMs: config.retryMaxMs,
              }),
            },
          }
        : {}),
    }),
    ...(params.sinks ?? []),
  ];
  const delivery = new Delivery({
    spool,
    nodeName: config.nodeName,
    storage,
    modules,
    sinks,
    pods,
    telemetry,
    logger: logger.child({ component: 'delivery' }),
    retryInitialMs: config.retryInitialMs,
    retryMaxMs: config.retryMaxMs,
    podWaitMs: config.podWaitMs,
    captureDefault: config.captureDefault,
  });
  const watcher = new SpoolWatcher({
    spool,
    concurrency: config.concurrency,
    maxQueued: config.maxQueued,
    sweepIntervalMs: config.sweepIntervalMs,
    orphanAgeMs: config.orphanAgeMs,
    deliver: (id, signal) => delivery.deliver(id, signal),
    telemetry,
    logger: logger.child({ component: 'spool-watcher' }),
  });
  const ready = () => watcher.ready && pods.synced;
  const ops = new OpsServer({
    host: config.opsHost,
    port: config.opsPort,
    registry: telemetry.registry,
    ready,
  });
  const components: Component[] = [new CorePatternComponent(params)];
  components.push(
    new HandlerLogTail({ file: handlerLogPath(config), logger: logger.child({ component: 'handler' }) }),
  );
  components.push(...sinks, pods, watcher, ops);
  return { components, telemetry, ops, watcher, pods, ready };
}
