import { setTimeout as sleep } from 'node:timers/promises';
import { Type } from '@sinclair/typebox';
import type { Admin, Kafka, PartitionMetadata } from 'kafkajs';
import type { Logger } from 'pino';
import { configRule } from './config.ts';
import { messageOf } from './errors.ts';
import { retry, type RetryOptions } from './retry.ts';

// Services that set their Kafka topics up themselves: a topic missing at start-up is created with
// the service's partitions, replication and configs when the service is allowed to, and explained
// otherwise. A topic the service may not create (creating is off, or the broker refuses: no ACL, a
// create policy, a replication factor the cluster cannot hold) is one warning with the exact
// kafka-topics.sh command that creates it as the service would have, so an operator can run it
// and the service, which goes on waiting, carries on. Two replicas creating at once is fine: the
// one that loses the race sees TOPIC_ALREADY_EXISTS and counts the topic as existing.

/** Kafka's default max.message.bytes (the broker's message.max.bytes). */
export const KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;

/** What a topic is created with. */
export interface TopicSpec {
  topic: string;
  partitions: number;
  /** -1: the broker's default.replication.factor. */
  replicationFactor: number;
  /** Topic configs (max.message.bytes…). */
  configs: Record<string, string>;
}

export interface MissingTopic {
  topic: string;
  /** Why it was not created: creating is off, or the broker's refusal (its error type first). */
  reason: string;
  /** The kafka-topics.sh command that creates it as the service would have. */
  command: string;
}

export interface TopicsSetup {
  /** Created now, by this call. */
  created: string[];
  /** There already (or created at the same moment by another instance). */
  existing: string[];
  /** Still missing: see each one's reason. */
  missing: MissingTopic[];
}

export interface EnsureTopicsOptions {
  /** Create the missing topics (else only explain them). */
  create: boolean;
  logger: Logger;
  /** The bootstrap brokers, for the commands. */
  brokers: string[];
  /** The variable that turns creating on, named in the warning when it is off. */
  createVariable: string;
  /** How long the controller may take to create a topic, and the wait for its leaders (ms). */
  timeoutMs?: number;
}

/**
 * The settings of a service that may create its topics, spread into its schema. Every service
 * that creates topics has these same names (PODMORTEM_<SERVICE>_CREATE_TOPICS, _TOPIC_PARTITIONS,
 * _TOPIC_REPLICATION_FACTOR, _TOPIC_MAX_MESSAGE_BYTES), and should be given the same values.
 */
export function topicSetupSettings(create: { default: boolean; description: string }) {
  return {
    createTopics: Type.Boolean({ default: create.default, description: create.description }),
    topicPartitions: Type.Integer({
      minimum: 1,
      maximum: 10_000,
      default: 6,
      description:
        'Partitions of a topic created at start-up: the most members a consumer group spreads over (6 divides evenly among 1, 2, 3 or 6); more can be added later, but that moves keys to other partitions',
    }),
    topicReplicationFactor: Type.Integer({
      minimum: -1,
      maximum: 32_767,
      default: -1,
      description:
        "Replicas of each partition of a topic created at start-up; -1 takes the broker's default.replication.factor",
    }),
    topicMaxMessageBytes: Type.Integer({
      minimum: 1024,
      maximum: 1_073_741_824,
      default: KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
      description:
        "max.message.bytes of a topic created at start-up (Kafka's default); a dead-letter topic created gets this plus room for its headers",
    }),
  };
}

/** What the schema cannot say of topicSetupSettings: a replication factor is -1 or at least 1. */
export function checkTopicSetupSettings(config: { topicReplicationFactor: number }, prefix: string): void {
  configRule(prefix)(
    config.topicReplicationFactor !== 0,
    'topicReplicationFactor',
    "must be at least 1, or -1 for the broker's default.replication.factor",
  );
}

/** Errors by which the broker refuses a creation for good: a person has to act. */
const REFUSALS = new Set([
  'TOPIC_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'POLICY_VIOLATION',
  'INVALID_REPLICATION_FACTOR',
  'INVALID_PARTITIONS',
  'INVALID_CONFIG',
  'INVALID_TOPIC_EXCEPTION',
  'INVALID_REQUEST',
  'UNSUPPORTED_VERSION',
]);

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The kafka-topics.sh command that creates `spec` (a secured cluster adds its --command-config). */
export function createTopicCommand(spec: TopicSpec, brokers: string[]): string {
  const args = [
    'kafka-topics.sh',
    '--bootstrap-server',
    brokers.join(','),
    '--create',
    '--topic',
    spec.topic,
  ];
  args.push('--partitions', String(spec.partitions));
  if (spec.replicationFactor !== -1) args.push('--replication-factor', String(spec.replicationFactor));
  for (const [name, value] of Object.entries(spec.configs)) args.push('--config', `${name}=${value}`);
  return args.map(shellQuote).join(' ');
}

/** kafkajs puts a creation's per-topic errors in an aggregate error: the first one says it. */
function firstError(err: unknown): unknown {
  const errors = (err as { errors?: unknown } | undefined)?.errors;
  return Array.isArray(errors) && errors.length > 0 ? (errors[0] as unknown) : err;
}

function errorType(err: unknown): string | undefined {
  const type = (firstError(err) as { type?: unknown } | undefined)?.type;
  return typeof type === 'string' ? type : undefined;
}

/**
 * The partitions of each topic once every one has a leader; a topic whose partitions are not all
 * led within `timeoutMs` is left out (the caller's own wait for its topics covers the rest).
 */
async function partitionsOnceLed(
  admin: Admin,
  topics: string[],
  timeoutMs: number,
): Promise<Map<string, PartitionMetadata[]>> {
  const led = new Map<string, PartitionMetadata[]>();
  const deadline = Date.now() + timeoutMs;
  for (const topic of topics) {
    while (Date.now() < deadline) {
      try {
        const [found] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics;
        const partitions = found?.partitions ?? [];
        if (partitions.length > 0 && partitions.every((p) => p.leader >= 0)) {
          led.set(topic, partitions);
          break;
        }
      } catch (err) {
        // A broker whose metadata has not caught up with the controller yet does not know it.
        const type = errorType(err);
        if (type !== 'UNKNOWN_TOPIC_OR_PARTITION' && type !== 'LEADER_NOT_AVAILABLE') throw err;
      }
      await sleep(200);
    }
  }
  return led;
}

/**
 * Creates the topics of `specs` that are missing (when `create`), logging one line per topic
 * created and one when every topic exists; each topic left missing is a warning with the command
 * that creates it. Throws only for what may pass (Kafka unreachable, no controller yet), for the
 * caller to retry: a refusal is a missing topic, not an error.
 */
export async function ensureTopics(
  kafka: Kafka,
  specs: TopicSpec[],
  options: EnsureTopicsOptions,
): Promise<TopicsSetup> {
  const { logger } = options;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const admin = kafka.admin({ retry: { retries: 2 } });
  await admin.connect();
  try {
    // Listing shows what the principal may describe; a topic hidden from it is tried as missing,
    // and the broker then answers TOPIC_ALREADY_EXISTS or a refusal.
    const listed = new Set(await admin.listTopics());
    const setup: TopicsSetup = { created: [], existing: [], missing: [] };
    const logCreated = (topic: string, partitions: PartitionMetadata[] | undefined) => {
      const spec = specs.find((s) => s.topic === topic);
      logger.info(
        {
          topic,
          partitions: partitions?.length ?? spec?.partitions,
          replicationFactor: partitions?.[0]?.replicas.length ?? spec?.replicationFactor,
          configs: spec?.configs,
        },
        'Kafka topic created',
      );
    };
    const toCreate: TopicSpec[] = [];
    for (const spec of specs) {
      if (listed.has(spec.topic)) setup.existing.push(spec.topic);
      else if (!options.create)
        setup.missing.push({
          topic: spec.topic,
          reason: `creating topics is off (${options.createVariable}=false)`,
          command: createTopicCommand(spec, options.brokers),
        });
      else toCreate.push(spec);
    }
    // One topic per request: kafkajs reports a request's failures together, and a topic refused
    // must not hide which of the others were made.
    for (const spec of toCreate) {
      try {
        const made = await admin.createTopics({
          topics: [
            {
              topic: spec.topic,
              numPartitions: spec.partitions,
              replicationFactor: spec.replicationFactor,
              configEntries: Object.entries(spec.configs).map(([name, value]) => ({ name, value })),
            },
          ],
          waitForLeaders: false,
          timeout: timeoutMs,
        });
        (made ? setup.created : setup.existing).push(spec.topic);
      } catch (err) {
        const type = errorType(err);
        if (type === 'TOPIC_ALREADY_EXISTS') setup.existing.push(spec.topic);
        else if (type !== undefined && REFUSALS.has(type))
          setup.missing.push({
            topic: spec.topic,
            reason: `${type}: ${messageOf(firstError(err))}`,
            command: createTopicCommand(spec, options.brokers),
          });
        else {
          // The next attempt finds these existing: said now, or never.
          for (const topic of setup.created) logCreated(topic, undefined);
          throw err;
        }
      }
    }
    // The leaders only make the line exact; the caller waits for its topics anyway.
    const led = await partitionsOnceLed(admin, setup.created, timeoutMs).catch(
      () => new Map<string, PartitionMetadata[]>(),
    );
    for (const topic of setup.created) logCreated(topic, led.get(topic));
    for (const m of setup.missing) {
      logger.warn(
        { topic: m.topic, reason: m.reason, command: m.command },
        `Kafka topic ${m.topic} is missing and was not created (${m.reason}); create it with: ${m.command}`,
      );
    }
    if (setup.missing.length === 0)
      logger.info({ topics: specs.map((s) => s.topic) }, 'every Kafka topic exists');
    return setup;
  } finally {
    await admin.disconnect();
  }
}

/** Thrown while some awaited topics are still missing. */
class TopicsMissingError extends Error {
  readonly missing: string[];
  constructor(missing: string[]) {
    super(`topics missing: ${missing.join(', ')}`);
    this.name = 'TopicsMissingError';
    this.missing = missing;
  }
}

/**
 * Waits, with the caller's backoff, until every one of `topics` exists (someone created them):
 * each attempt is logged at info level with the topics still missing, a Kafka failure as a
 * warning.
 */
export async function waitForTopics(
  kafka: Kafka,
  topics: string[],
  options: Partial<RetryOptions> & { logger: Logger },
): Promise<void> {
  const { logger, ...retryOptions } = options;
  await retry(
    'kafka topics created',
    async () => {
      const admin = kafka.admin({ retry: { retries: 1 } });
      await admin.connect();
      try {
        const listed = new Set(await admin.listTopics());
        const missing = topics.filter((t) => !listed.has(t));
        if (missing.length > 0) throw new TopicsMissingError(missing);
      } finally {
        await admin.disconnect();
      }
    },
    {
      ...retryOptions,
      onRetry: (err, attempt, delayMs) => {
        if (err instanceof TopicsMissingError)
          logger.info({ missing: err.missing, attempt, delayMs }, 'waiting for Kafka topics to be created');
        else logger.warn({ err: messageOf(err), attempt, delayMs }, 'Kafka not ready, retrying');
      },
    },
  );
  logger.info({ topics }, 'Kafka topics created: every topic exists');
}
