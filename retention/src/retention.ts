import type { CoreV1Api } from '@kubernetes/client-node';
import type { Kafka, Producer } from 'kafkajs';
import { createIdempotentProducer, type Component, type Logger } from '@podmortem/contract/runtime';
import type { Store } from '@podmortem/contract/store';
import type { RetentionConfig } from './config.ts';
import { KafkaLease } from './lease.ts';
import { runPass } from './pass.ts';
import type { RetentionTelemetry } from './telemetry.ts';

// The service's one long-lived part: holds (or waits for) the lease and runs a pass every
// interval while it is the active instance. The namespaces walked are the store's own folders;
// when one vanished is not something the Kubernetes API says, so it is the time this instance
// first saw it missing: a restart starts the grace again, which only ever keeps dumps longer.

export interface RetentionParams {
  config: RetentionConfig;
  logger: Logger;
  telemetry: RetentionTelemetry;
  kafka: Kafka;
  store: Store;
  /** Lists the namespaces: which of the store's namespace folders still exist. */
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
      const listed = await this.listed();
      await runPass({
        store,
        producer: this.producer,
        removalTopic: config.removalTopic,
        logger,
        telemetry,
        rules: config,
        dryRun: config.dryRun,
        listed,
        goneSince: this.goneSince,
        isActive: () => this.lease.isActive(),
        kafkaTimeoutMs: config.kafkaTimeoutMs,
      });
    } catch (err) {
      telemetry.passes.inc({ result: 'failed' });
      telemetry.errors.inc({ operation: 'scan' });
      logger.error({ err }, 'retention pass failed; the next one starts over');
    }
  }

  /** The namespaces the API lists now; undefined when it is away. */
  private async listed(): Promise<Set<string> | undefined> {
    const { core, logger, telemetry } = this.params;
    try {
      const list = await core.listNamespace();
      return new Set(list.items.flatMap((n) => (n.metadata?.name === undefined ? [] : [n.metadata.name])));
    } catch (err) {
      telemetry.errors.inc({ operation: 'namespaces' });
      logger.warn({ err }, 'namespaces could not be listed: the deleted-namespace rule waits this pass');
      return undefined;
    }
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
