import type { CoreV1Api } from '@kubernetes/client-node';
import type { Kafka, Producer } from 'kafkajs';
import { createIdempotentProducer, type Component, type Logger } from '@podmortem/contract/runtime';
import type { Store } from '@podmortem/contract/store';
import type { RetentionConfig } from './config.ts';
import { KafkaLease } from './lease.ts';
import { runPass } from './pass.ts';
import type { NamespaceView } from './plan.ts';
import type { RetentionTelemetry } from './telemetry.ts';

// The service's one long-lived part: holds (or waits for) the lease and runs a pass every
// interval while it is the active instance. When a namespace vanished is not something the
// Kubernetes API says, so it is the time this instance first saw it missing: a restart starts
// the grace again, which only ever keeps dumps longer.

export interface RetentionParams {
  config: RetentionConfig;
  logger: Logger;
  telemetry: RetentionTelemetry;
  kafka: Kafka;
  store: Store;
  /**
   * Lists the namespaces: the folders to walk (the store cannot list its root) and, with the
   * namespace rule on, which are gone.
   */
  core: CoreV1Api;
}

export class Retention implements Component {
  readonly name = 'retention';
  private readonly params: RetentionParams;
  private readonly lease: KafkaLease;
  private producer: Producer | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly goneSince = new Map<string, Date>();
  private readonly seen = new Set<string>();

  constructor(params: RetentionParams) {
    this.params = params;
    const { config } = params;
    this.lease = new KafkaLease({
      kafka: params.kafka,
      topic: config.leaseTopic,
      groupId: config.leaseGroupId,
      sessionTimeoutMs: config.sessionTimeoutMs,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      logger: params.logger,
    });
  }

  async start(): Promise<void> {
    this.producer = createIdempotentProducer(this.params.kafka);
    await this.producer.connect();
    await this.lease.start();
    this.schedule(0);
  }

  ready(): boolean {
    return this.lease.state() !== undefined;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => this.schedule(this.params.config.intervalS * 1000));
    }, ms);
  }

  private async tick(): Promise<void> {
    const { config, logger, telemetry, store } = this.params;
    if (!(await this.lease.isActive()) || this.producer === undefined) return;
    try {
      const namespaces = await this.namespaces();
      await runPass({
        store,
        producer: this.producer,
        removalTopic: config.removalTopic,
        logger,
        telemetry,
        rules: config,
        dryRun: config.dryRun,
        folders: this.seen,
        namespaces,
        isActive: () => this.lease.isActive(),
        kafkaTimeoutMs: config.kafkaTimeoutMs,
      });
    } catch (err) {
      telemetry.passes.inc({ result: 'failed' });
      telemetry.errors.inc({ operation: 'scan' });
      logger.error({ err }, 'retention pass failed; the next one starts over');
    }
  }

  /** The namespaces listed now, remembering the ones gone; undefined when the API is away. */
  private async namespaces(): Promise<NamespaceView | undefined> {
    const { core, logger, telemetry } = this.params;
    let present: Set<string>;
    try {
      const list = await core.listNamespace();
      present = new Set(list.items.flatMap((n) => (n.metadata?.name === undefined ? [] : [n.metadata.name])));
    } catch (err) {
      telemetry.errors.inc({ operation: 'namespaces' });
      logger.warn({ err }, 'namespaces could not be listed: the deleted-namespace rule waits this pass');
      return undefined;
    }
    const now = new Date();
    for (const name of present) {
      this.seen.add(name);
      this.goneSince.delete(name);
    }
    for (const name of this.seen)
      if (!present.has(name) && !this.goneSince.has(name)) this.goneSince.set(name, now);
    return { present, goneSince: this.goneSince };
  }

  async shutdown(deadline: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const left = () => Math.max(0, deadline - Date.now());
    await Promise.race([this.running, new Promise((r) => setTimeout(r, left()))]);
    await this.lease.shutdown();
    const producer = this.producer;
    this.producer = undefined;
    await producer?.disconnect();
  }
}
