import type { EachMessagePayload, Kafka } from 'kafkajs';
import { decodeDumpDeletionMessage, userDeletion } from '@podmortem/contract';
import {
  SessionProducer,
  beforeDeadline,
  checkTopicsExist,
  GroupMember,
  InFlight,
  isProgrammerError,
  kafkaWaitOut,
  messageOf,
  retry,
  retryPolicy,
  type Component,
  type Logger,
  type RetryPolicy,
} from '@podmortem/contract/runtime';
import { removeDump, type Store } from '@podmortem/contract/store';
import type { RetentionConfig } from './config.ts';
import type { RetentionTelemetry } from './telemetry.ts';

// Users' deletions, performed: the query API authorizes a DELETE and publishes the request; this
// consumer removes the core with the contract's removeDump (core, stored event, DumpRemoval for
// the indexer) and only then commits the request's offset. Retention does it because it is the
// one service that writes the store to take things away; the API keeps a read-only mount and
// read-only credentials. Every replica is a member of the one deletion group (unlike the passes,
// which the lease gives to one instance): Kafka hands each partition to one member, and a request
// done twice after a rebalance is harmless, since removeDump keeps the first removal's facts.
// A store or Kafka outage is waited out with backoff, the request uncommitted; a record that is
// no deletion request is logged, counted and passed over, as the analyzer does with bad crashes.

export type DeletionSettings = Pick<
  RetentionConfig,
  | 'deletionTopic'
  | 'deletionGroupId'
  | 'removalTopic'
  | 'sessionTimeoutMs'
  | 'heartbeatIntervalMs'
  | 'retryInitialMs'
  | 'retryMaxMs'
  | 'kafkaTimeoutMs'
>;

export interface DeletionWorkerParams {
  config: DeletionSettings;
  logger: Logger;
  telemetry: RetentionTelemetry;
  kafka: Kafka;
  store: Store;
  /** The consumer stopped for good (kafkajs gave up): the process should exit and be restarted. */
  onFatal?: (err: unknown) => void;
}

export class DeletionWorker implements Component {
  readonly name = 'deletions';
  private readonly params: DeletionWorkerParams;
  private readonly retry: RetryPolicy;
  private readonly producer: SessionProducer;
  private readonly startAbort = new AbortController();
  /** Aborted at shutdown: a deletion waiting out an outage stops, its request uncommitted. */
  private readonly work = new AbortController();
  private member: GroupMember | undefined;
  private readonly inFlight = new InFlight();
  private stopping = false;
  private running = false;

  constructor(params: DeletionWorkerParams) {
    this.params = params;
    this.retry = retryPolicy({
      retries: Infinity,
      initialMs: params.config.retryInitialMs,
      maxMs: params.config.retryMaxMs,
    });
    this.producer = new SessionProducer(params.kafka);
  }

  /** Consuming the deletion requests in the group. */
  ready(): boolean {
    return this.running && (this.member?.joined ?? false);
  }

  async start(): Promise<void> {
    const { config, logger, kafka } = this.params;
    const signal = this.startAbort.signal;
    const kafkaRetry = kafkaWaitOut(this.retry, signal, logger);
    await retry(
      'kafka topics',
      () => checkTopicsExist(kafka, [config.deletionTopic, config.removalTopic]),
      kafkaRetry,
    );
    await retry('removal producer', () => this.producer.connect(), kafkaRetry);
    signal.throwIfAborted();
    const member = new GroupMember({
      kafka,
      logger,
      consumer: {
        groupId: config.deletionGroupId,
        sessionTimeout: config.sessionTimeoutMs,
        heartbeatInterval: config.heartbeatIntervalMs,
      },
      topics: [config.deletionTopic],
      // A request made before any retention instance ever ran is still done.
      fromBeginning: true,
      stopping: () => this.stopping,
      ...(this.params.onFatal ? { onFatal: this.params.onFatal } : {}),
    });
    this.member = member;
    await member.join((what, fn) => retry(what, fn, kafkaRetry));
    signal.throwIfAborted();
    await member.consumer.run({
      autoCommit: false,
      eachMessage: (payload) => this.inFlight.track(this.handle(payload)),
    });
    this.running = true;
  }

  private async handle(payload: EachMessagePayload): Promise<void> {
    const { config, logger, telemetry, store } = this.params;
    const { topic, partition, message } = payload;
    const decoded = decodeDumpDeletionMessage(message.value);
    if (!decoded.ok) {
      telemetry.deletionRequests.inc({ result: 'invalid' });
      logger.warn(
        { topic, partition, offset: message.offset, errors: decoded.errors },
        'not a dump deletion request, passed over',
      );
    } else {
      const { event, requestedBy, requestedAt } = decoded.value;
      const signal = this.work.signal;
      // kafkajs heartbeats only between messages; an outage waited out here must not cost the
      // member its partitions.
      const heartbeats = setInterval(
        () => void payload.heartbeat().catch(() => undefined),
        config.heartbeatIntervalMs,
      );
      let changed: boolean;
      try {
        ({ changed } = await retry(
          'dump deletion',
          () =>
            removeDump({
              store,
              producer: this.producer,
              event,
              change: userDeletion(requestedBy, requestedAt),
              topic: config.removalTopic,
              timeoutMs: config.kafkaTimeoutMs,
            }),
          {
            ...this.retry,
            signal,
            retriable: (err: unknown) => !isProgrammerError(err),
            onRetry: (err: unknown, attempt: number, delayMs: number) => {
              telemetry.errors.inc({ operation: 'user-delete' });
              logger.warn(
                { err: messageOf(err), crashId: event.crash.id, attempt, delayMs },
                'dump deletion failed, retrying',
              );
            },
          },
        ));
      } catch (err) {
        // Shutting down: the request stays uncommitted for the next member.
        if (signal.aborted) return;
        throw err;
      } finally {
        clearInterval(heartbeats);
      }
      telemetry.deletionRequests.inc({ result: changed ? 'deleted' : 'already-removed' });
      logger.info(
        { crashId: event.crash.id, requestedBy, requestedAt: requestedAt.toISOString(), changed },
        changed ? 'core deleted at a user’s request' : 'core had been removed before; request done',
      );
    }
    const next = (BigInt(message.offset) + 1n).toString();
    await this.member?.consumer.commitOffsets([{ topic, partition, offset: next }]);
  }

  async shutdown(deadline: number): Promise<void> {
    this.stopping = true;
    this.startAbort.abort(new Error('shutting down'));
    this.work.abort(new Error('shutting down'));
    await this.inFlight.settled(deadline);
    await this.member?.leave(deadline);
    this.running = false;
    await beforeDeadline(this.producer.disconnect(), deadline, undefined);
  }
}
