import type { Consumer, ConsumerConfig, Kafka } from 'kafkajs';
import type { Logger } from 'pino';
import { isProgrammerError, messageOf } from './errors.ts';
import { KafkaAuthError } from './kafka-security.ts';
import { beforeDeadline } from './lifecycle.ts';
import type { RetryOptions, RetryPolicy } from './retry.ts';

// What every consumer-group service (indexer, analyzer) does the same way around its own batch
// handling: wait Kafka out at start-up, check its topics exist, join the group, know whether it is
// a member, and leave the group within the shutdown deadline.

/**
 * Retry options that wait Kafka out at start-up, whatever kafkajs calls its error (its "retries
 * exhausted" is marked non-retriable); programmer errors are not retried, nor refused credentials
 * (a KafkaAuthError, see createKafka), which no wait mends.
 */
export function kafkaWaitOut(
  policy: RetryPolicy,
  signal: AbortSignal,
  logger: Logger,
): Partial<RetryOptions> & RetryPolicy {
  return {
    ...policy,
    signal,
    retriable: (err: unknown) => !isProgrammerError(err) && !(err instanceof KafkaAuthError),
    onRetry: (err: unknown, attempt: number, delayMs: number) =>
      logger.warn({ err: messageOf(err), attempt, delayMs }, 'Kafka not ready, retrying'),
  };
}

/** Fails unless every topic exists (topics are never created by consuming them). */
export async function checkTopicsExist(kafka: Kafka, topics: string[]): Promise<void> {
  const admin = kafka.admin({ retry: { retries: 1 } });
  await admin.connect();
  try {
    await admin.fetchTopicMetadata({ topics });
  } finally {
    await admin.disconnect();
  }
}

export interface GroupMemberParams {
  kafka: Kafka;
  logger: Logger;
  /** The consumer's settings; topic auto-creation and kafkajs' restart rule are set here. */
  consumer: Omit<ConsumerConfig, 'retry' | 'allowAutoTopicCreation'>;
  topics: string[];
  fromBeginning: boolean;
  /** The service is shutting down: a crashed consumer is then not restarted, nor fatal. */
  stopping: () => boolean;
  /** Called on every join of the group (after a rebalance too). */
  onJoin?: () => void;
  /** The consumer crashed and kafkajs will not restart it: the service is dead. */
  onFatal?: (err: unknown) => void;
}

/** One consumer's membership of its group. Built without I/O, so shutdown can always leave it. */
export class GroupMember {
  readonly consumer: Consumer;
  private member = false;
  private readonly p: GroupMemberParams;

  constructor(params: GroupMemberParams) {
    this.p = params;
    const consumer = params.kafka.consumer({
      ...params.consumer,
      allowAutoTopicCreation: false,
      retry: { restartOnFailure: () => Promise.resolve(!params.stopping()) },
    });
    this.consumer = consumer;
    const { events } = consumer;
    consumer.on(events.GROUP_JOIN, ({ payload }) => {
      this.member = true;
      params.onJoin?.();
      params.logger.info(
        { memberId: payload.memberId, assignment: payload.memberAssignment },
        'joined the consumer group',
      );
    });
    consumer.on(events.REBALANCING, () => {
      this.member = false;
    });
    consumer.on(events.STOP, () => {
      this.member = false;
    });
    consumer.on(events.CRASH, ({ payload }) => {
      this.member = false;
      params.logger.error({ err: messageOf(payload.error), restart: payload.restart }, 'consumer crashed');
      if (!payload.restart && !params.stopping()) params.onFatal?.(payload.error);
    });
  }

  /** A member of the group now (false while rebalancing, stopped or crashed). */
  get joined(): boolean {
    return this.member;
  }

  /** Connects and subscribes, retried with `retryWith` (see kafkaWaitOut). */
  async join(retryWith: (what: string, fn: () => Promise<void>) => Promise<void>): Promise<void> {
    await retryWith('kafka consumer', () => this.consumer.connect());
    await retryWith('kafka subscribe', () =>
      this.consumer.subscribe({ topics: this.p.topics, fromBeginning: this.p.fromBeginning }),
    );
  }

  /** Leaves the group (commits nothing more), by the deadline at the latest. */
  async leave(deadline: number): Promise<void> {
    await beforeDeadline(
      this.consumer
        .disconnect()
        .catch((err: unknown) => this.p.logger.warn({ err: messageOf(err) }, 'consumer disconnect failed')),
      deadline,
      undefined,
    );
    this.member = false;
  }
}
