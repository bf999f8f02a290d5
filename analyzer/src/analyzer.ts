import {
  SessionProducer,
  beforeDeadline,
  isProgrammerError,
  messageOf,
  checkTopicsExist,
  GroupMember,
  InFlight,
  kafkaWaitOut,
  retry,
  retryPolicy,
  type Component,
  type Logger,
  type RetryPolicy,
} from '@podmortem/contract/runtime';
import { crashKey, encodeAnalysisMessage } from '@podmortem/contract';
import type { Store } from '@podmortem/contract/store';
import type { EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import type { AnalyzerConfig } from './config.ts';
import { removeStaleCrashFiles } from './crash-files.ts';
import {
  analyzeRecord,
  type AnalyzeParams,
  type PublishedAnalysis,
  type RecordAnalysis,
} from './crash-analysis.ts';
import { debuginfodCacheDir, MAX_DEBUGINFO_BYTES, resetDebuginfodCache } from './debuginfod.ts';
import type { AnalyzerTelemetry } from './telemetry.ts';

// The analyzer component: consumes the crash topic and the re-analysis requests (crash events the
// query API sends again) in a consumer group, one crash at a time per partition (an unwind is
// CPU-bound; instances, not threads, add throughput), publishes each
// crash's analysis through the idempotent producer and commits the crash's offset only once the
// analysis topic acknowledged it. A kill in between analyses the crash again after the restart:
// the record has the same crash id and key, and the indexer keeps the newest analysis of a crash.
// shutdown(deadline): the unwind in flight is cancelled (its process group killed) and left
// uncommitted, and the consumer leaves the group; safe before start and twice.

export interface AnalyzerParams {
  config: AnalyzerConfig;
  logger: Logger;
  telemetry: AnalyzerTelemetry;
  kafka: Kafka;
  store: Store;
  /** The analyzer's version, written into each analysis. */
  version: string;
  /** The consumer stopped for good (kafkajs gave up): the process should exit and be restarted. */
  onFatal?: (err: unknown) => void;
}

/** Calls `heartbeat` every `everyMs` while an unwind runs (kafkajs sends one only when due). */
function keepHeartbeating(heartbeat: () => Promise<void>, everyMs: number): () => void {
  const timer = setInterval(() => {
    // A failing heartbeat is a rebalance: the crash in flight finishes and its commit fails,
    // which hands the partition to its new owner, who analyses it again.
    heartbeat().catch(() => undefined);
  }, everyMs);
  return () => clearInterval(timer);
}

export class Analyzer implements Component {
  readonly name = 'analyzer';
  private readonly params: AnalyzerParams;
  private readonly startAbort = new AbortController();
  /** Aborted at shutdown: cancels the unwinds and store reads in flight. */
  private readonly work = new AbortController();
  private readonly retry: RetryPolicy;
  private readonly producer: SessionProducer;
  private member: GroupMember | undefined;
  private readonly inFlight = new InFlight();
  private stopping = false;
  private shutdownDone: Promise<void> | undefined;
  private running = false;
  private readonly debuginfod: AnalyzeParams['debuginfod'];

  constructor(params: AnalyzerParams) {
    this.params = params;
    const { config } = params;
    this.debuginfod =
      config.debuginfodUrls.trim() === ''
        ? undefined
        : {
            urls: config.debuginfodUrls,
            cacheDir: debuginfodCacheDir(config.workDir),
            maxBytes: MAX_DEBUGINFO_BYTES,
            logger: params.logger,
          };
    this.retry = retryPolicy({
      retries: Infinity,
      initialMs: config.retryInitialMs,
      maxMs: config.retryMaxMs,
    });
    this.producer = new SessionProducer(params.kafka);
  }

  /** Consuming in the group. */
  ready(): boolean {
    return this.running && (this.member?.joined ?? false);
  }

  async start(): Promise<void> {
    if (this.running || this.member) return;
    const { config, logger, kafka } = this.params;
    const signal = this.startAbort.signal;
    const kafkaRetry = kafkaWaitOut(this.retry, signal, logger);
    const stale = await removeStaleCrashFiles(config.workDir);
    if (stale > 0) logger.info({ folders: stale }, 'removed the temporary folders of a killed analyzer');
    if (this.debuginfod) await resetDebuginfodCache(this.debuginfod.cacheDir);
    await retry(
      'kafka topics',
      () => checkTopicsExist(kafka, [config.topic, config.requestTopic, config.analysisTopic]),
      kafkaRetry,
    );
    await retry('analysis producer', () => this.producer.connect(), kafkaRetry);
    signal.throwIfAborted();

    const member = new GroupMember({
      kafka,
      logger,
      consumer: {
        groupId: config.groupId,
        sessionTimeout: config.sessionTimeoutMs,
        heartbeatInterval: config.heartbeatIntervalMs,
        // One crash per fetch and partition: an unwind is slow, and records fetched ahead would
        // wait for it while their partition could move to an idle instance.
        maxBytesPerPartition: 64 * 1024,
      },
      // Re-analysis requests are crash events too, analysed the same way.
      topics: [config.topic, config.requestTopic],
      fromBeginning: config.fromBeginning,
      stopping: () => this.stopping,
      ...(this.params.onFatal ? { onFatal: this.params.onFatal } : {}),
    });
    this.member = member;
    await member.join((what, fn) => retry(what, fn, kafkaRetry));
    signal.throwIfAborted();
    await member.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: config.concurrency,
      eachBatch: (payload) => this.inFlight.track(this.handleBatch(payload)),
    });
    this.running = true;
  }

  private async handleBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    for (const message of batch.messages) {
      if (this.stopping || !payload.isRunning() || payload.isStale()) return;
      const done = await this.handleMessage(payload, message);
      if (!done) return;
    }
  }

  /** Analyses, publishes and commits one record; false when the shutdown cut it short. */
  private async handleMessage(payload: EachBatchPayload, message: KafkaMessage): Promise<boolean> {
    const { config, logger, telemetry, store, version } = this.params;
    const { topic, partition } = payload.batch;
    telemetry.consumed.inc({ topic });
    const signal = this.work.signal;
    const stopHeartbeats = keepHeartbeating(
      () => payload.heartbeat(),
      Math.min(1000, config.heartbeatIntervalMs),
    );
    let analysis: RecordAnalysis;
    try {
      analysis = await retry(
        'analysis',
        () =>
          analyzeRecord(message.value, {
            store,
            telemetry,
            version,
            workDir: config.workDir,
            maxTempBytes: config.maxTempBytes,
            unwinder: {
              command: config.unwinderCommand,
              prlimitCommand: config.prlimitCommand,
              deadlineMs: config.unwindDeadlineMs,
              addressSpaceBytes: config.unwindAddressSpaceBytes,
              maxFramesPerThread: config.maxFramesPerThread,
              maxOutputBytes: config.maxOutputBytes,
            },
            ...(this.debuginfod ? { debuginfod: this.debuginfod } : {}),
            signal,
          }),
        {
          ...this.retry,
          signal,
          onRetry: (err: unknown, attempt: number, delayMs: number) => {
            telemetry.retried.inc({ operation: 'store' });
            logger.warn({ err: messageOf(err), attempt, delayMs }, 'store not readable, retrying');
          },
        },
      );
      if (analysis.kind === 'analysis') {
        const published = analysis;
        await retry('publish analysis', () => this.publish(published), {
          ...this.retry,
          signal,
          retriable: (err: unknown) => !isProgrammerError(err),
          onRetry: (err: unknown, attempt: number, delayMs: number) => {
            telemetry.retried.inc({ operation: 'publish' });
            logger.warn({ err: messageOf(err), attempt, delayMs }, 'analysis not acknowledged, retrying');
          },
        });
      }
    } catch (err) {
      if (signal.aborted) return false;
      throw err;
    } finally {
      stopHeartbeats();
    }
    if (analysis.kind === 'analysis') {
      const { status, reason } = analysis.analysis;
      telemetry.analysed.inc({ status });
      if (status === 'failed' || status === 'skipped')
        telemetry.failures.inc({ reason: analysis.failure ?? 'unknown' });
      logger.info(
        { crashId: analysis.event.crash.id, status, reason, title: analysis.analysis.title },
        'crash analysed',
      );
    } else {
      telemetry.invalid.inc();
      logger.warn(
        { topic, partition, offset: message.offset, errors: analysis.errors },
        'not a crash event, passed over',
      );
    }
    payload.resolveOffset(message.offset);
    const next = (BigInt(message.offset) + 1n).toString();
    await payload.commitOffsetsIfNecessary({
      topics: [{ topic, partitions: [{ partition, offset: next }] }],
    });
    telemetry.committed.inc({ topic });
    return true;
  }

  /** Resolves once every in-sync replica of the analysis topic has the record. */
  private async publish(analysis: PublishedAnalysis): Promise<void> {
    await this.producer.send({
      topic: this.params.config.analysisTopic,
      messages: [
        { key: crashKey(analysis.event), value: encodeAnalysisMessage(analysis.event, analysis.analysis) },
      ],
    });
  }

  shutdown(deadline: number): Promise<void> {
    this.shutdownDone ??= this.stop(deadline);
    return this.shutdownDone;
  }

  private async stop(deadline: number): Promise<void> {
    this.stopping = true;
    this.startAbort.abort(new Error('shutting down'));
    // An unwind may take its whole deadline: cancel it (its offset stays uncommitted, so the crash
    // is analysed again by whoever takes the partition) rather than hold the shutdown.
    this.work.abort(new Error('shutting down'));
    await this.inFlight.settled(deadline);
    await this.member?.leave(deadline);
    this.running = false;
    await beforeDeadline(this.producer.disconnect(), deadline, undefined);
  }
}
