import type { Client } from '@elastic/elasticsearch';
import {
  beforeDeadline,
  checkTopicsExist,
  ensureTopics,
  envName,
  GroupMember,
  kafkaWaitOut,
  retry,
  retryPolicy,
  SessionProducer,
  type Component,
  type Logger,
  type RetryPolicy,
  type TopicSpec,
  waitForTopics,
} from '@podmortem/contract/runtime';
import type { Kafka } from 'kafkajs';
import { AnalysisMerger, DumpRemovalMerger } from './analysis-merger.ts';
import { createBatchHandler, type BatchHandler } from './batch-handler.ts';
import { BulkWriter } from './bulk-writer.ts';
import { CONFIG_PREFIX, type IndexerConfig } from './config.ts';
import { DeadLetterWriter } from './dead-letter.ts';
import type { IndexerTelemetry } from './telemetry.ts';
import { checkTopicSettings, DLQ_HEADROOM_BYTES } from './topic-settings.ts';
import { installCrashTemplatesWithRetry, waitForElasticsearch } from './template-installer.ts';

// The indexer component: waits for Elasticsearch, installs or upgrades the index templates, sets
// the pipeline's topics up (pipelineTopics) and waits for its own, then consumes the crash and
// analysis topics in a consumer group (see batch-handler.ts). A topic it may not create is a
// warning with the command that creates it (topics-setup.ts in the runtime), and it stays not
// ready until someone has. One consumer takes both topics: one group membership, heartbeat,
// readiness and shutdown; offsets are still committed per topic-partition, and both kinds of
// record wait for the same Elasticsearch anyway. The merge does not depend on which topic is read
// first (crash-merge.ts).
// shutdown(deadline): no new chunk starts, the chunk in flight finishes or is abandoned
// uncommitted near the deadline, and the consumer leaves the group; safe before start and twice.

/**
 * Every topic of the pipeline, as the indexer creates the missing ones: the indexer is the one
 * service every installation runs beside Kafka, so it sets up the re-analysis request and dump
 * deletion topics too, which it does not use. The DLQ's max.message.bytes leaves room for the
 * letter's headers, so a record its source topic accepted is dead-lettered whole.
 */
export function pipelineTopics(config: IndexerConfig): TopicSpec[] {
  const spec = (topic: string, maxMessageBytes: number): TopicSpec => ({
    topic,
    partitions: config.topicPartitions,
    replicationFactor: config.topicReplicationFactor,
    configs: { 'max.message.bytes': String(maxMessageBytes) },
  });
  const max = config.topicMaxMessageBytes;
  return [
    spec(config.topic, max),
    spec(config.analysisTopic, max),
    spec(config.dumpRemovalTopic, max),
    spec(config.dlqTopic, max + DLQ_HEADROOM_BYTES),
    spec(config.analysisRequestTopic, max),
    spec(config.dumpDeletionTopic, max),
  ];
}

export interface IndexerParams {
  config: IndexerConfig;
  logger: Logger;
  telemetry: IndexerTelemetry;
  es: Client;
  kafka: Kafka;
  /** The consumer stopped for good (kafkajs gave up): the process should exit and be restarted. */
  onFatal?: (err: unknown) => void;
}

export class Indexer implements Component {
  readonly name = 'indexer';
  private readonly params: IndexerParams;
  private readonly startAbort = new AbortController();
  private readonly abandon = new AbortController();
  private readonly deadLetter: DeadLetterWriter;
  private readonly handler: BatchHandler;
  private readonly retry: RetryPolicy;
  private member: GroupMember | undefined;
  private stopping = false;
  private shutdownDone: Promise<void> | undefined;
  private running = false;

  constructor(params: IndexerParams) {
    this.params = params;
    const { config, logger, telemetry, es, kafka } = params;
    // Elasticsearch and Kafka are waited out for as long as it takes, with one backoff.
    this.retry = retryPolicy({
      retries: Infinity,
      initialMs: config.retryInitialMs,
      maxMs: config.retryMaxMs,
    });
    this.deadLetter = new DeadLetterWriter({
      producer: new SessionProducer(kafka),
      topic: config.dlqTopic,
      telemetry,
      logger,
      retry: this.retry,
    });
    const bulk = new BulkWriter({
      es,
      telemetry,
      logger,
      retry: this.retry,
      shardWaitMs: config.bulkShardWaitMs,
    });
    this.handler = createBatchHandler({
      alias: config.indexAlias,
      bulk,
      analyses: {
        topic: config.analysisTopic,
        merger: new AnalysisMerger({ es, bulk, telemetry, logger, retry: this.retry }),
      },
      removals: {
        topic: config.dumpRemovalTopic,
        merger: new DumpRemovalMerger({ es, bulk, telemetry, logger, retry: this.retry }),
      },
      deadLetter: this.deadLetter,
      telemetry,
      logger,
      bulkMaxRecords: config.bulkMaxRecords,
      bulkMaxBytes: config.bulkMaxBytes,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      stopping: () => this.stopping,
      abandonSignal: this.abandon.signal,
    });
  }

  /** Consuming in the group, and no partition waiting for Elasticsearch. */
  ready(): boolean {
    return this.running && (this.member?.joined ?? false) && this.handler.waiting === 0;
  }

  async start(): Promise<void> {
    if (this.running || this.member) return;
    const { config, logger, es, kafka, telemetry } = this.params;
    const signal = this.startAbort.signal;
    const backoff = { signal, retry: this.retry };
    await waitForElasticsearch(es, logger, backoff);
    await installCrashTemplatesWithRetry(
      {
        es,
        alias: config.indexAlias,
        shards: config.indexShards,
        replicas: config.indexReplicas,
        logger,
        telemetry,
      },
      backoff,
    );
    const kafkaRetry = kafkaWaitOut(this.retry, signal, logger);
    const topics = [config.topic, config.analysisTopic, config.dumpRemovalTopic];
    const own = [...topics, config.dlqTopic];
    const setup = await retry(
      'kafka topics setup',
      () =>
        ensureTopics(kafka, pipelineTopics(config), {
          create: config.createTopics,
          logger,
          brokers: config.kafkaBrokers,
          createVariable: envName(CONFIG_PREFIX, 'createTopics'),
          timeoutMs: config.kafkaTimeoutMs,
        }),
      kafkaRetry,
    );
    // Only its own topics hold the indexer up; the others' users wait for them.
    const awaited = setup.missing.map((m) => m.topic).filter((topic) => own.includes(topic));
    if (awaited.length > 0) await waitForTopics(kafka, awaited, { ...kafkaRetry, logger });
    await retry('kafka topics', () => checkTopicsExist(kafka, own), kafkaRetry);
    const settings = await checkTopicSettings({
      kafka,
      sources: topics,
      dlq: config.dlqTopic,
      logger,
      telemetry,
    });
    this.deadLetter.setMaxMessageBytes(settings.dlqMaxMessageBytes);
    await retry('dead-letter producer', () => this.deadLetter.start(), kafkaRetry);
    signal.throwIfAborted();

    const member = new GroupMember({
      kafka,
      logger,
      consumer: {
        groupId: config.groupId,
        sessionTimeout: config.sessionTimeoutMs,
        heartbeatInterval: config.heartbeatIntervalMs,
        minBytes: config.fetchMinBytes,
        maxWaitTimeInMs: config.fetchMaxWaitMs,
      },
      topics,
      fromBeginning: config.fromBeginning,
      stopping: () => this.stopping,
      onJoin: () => telemetry.consumerLag.reset(),
      ...(this.params.onFatal ? { onFatal: this.params.onFatal } : {}),
    });
    this.member = member;
    await member.join((what, fn) => retry(what, fn, kafkaRetry));
    signal.throwIfAborted();
    await member.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: config.partitionsConsumedConcurrently,
      eachBatch: (payload) => this.handler.handle(payload),
    });
    this.running = true;
  }

  shutdown(deadline: number): Promise<void> {
    this.shutdownDone ??= this.stop(deadline);
    return this.shutdownDone;
  }

  private async stop(deadline: number): Promise<void> {
    this.stopping = true;
    this.startAbort.abort(new Error('shutting down'));
    // Finish the chunk in flight unless it is waiting for a server that is down, but keep time to
    // leave the group cleanly.
    const reserve = Math.max(1000, (deadline - Date.now()) / 5);
    if (this.handler.waiting > 0) this.abandon.abort();
    await beforeDeadline(this.handler.idle(), deadline - reserve, undefined);
    this.abandon.abort();
    await this.member?.leave(deadline);
    this.running = false;
    await this.deadLetter.shutdown(deadline);
  }
}
