import { messageOf, type Logger } from '@podmortem/contract/runtime';
import kafkajs, { type Kafka } from 'kafkajs';

// kafkajs is CommonJS and spreads its errors into its exports, which hides the names after them
// from Node's named-export detection: ConfigResourceTypes is read from the default export.
const { ConfigResourceTypes } = kafkajs;
import { KAFKA_DEFAULT_MAX_MESSAGE_BYTES } from './dead-letter.ts';
import type { IndexerTelemetry } from './telemetry.ts';

// The topic settings the dead-letter path depends on, read once at start-up and reported: the
// max.message.bytes of the topics consumed and of the dead-letter topic. A record near its
// source's limit makes a bigger letter (the DLQ headers); when the DLQ's limit leaves no room for
// that, such letters are cut to fit (dead-letter.ts). Reading the settings is best effort: a
// broker that refuses DescribeConfigs leaves Kafka's default assumed, and a wrong guess is still
// caught by the topic's refusal.

/** Room a letter needs beyond its record: our headers, with the error text at its longest. */
export const DLQ_HEADROOM_BYTES = 8192;

/** max.message.bytes by topic; undefined when the settings could not be read. */
export async function readMaxMessageBytes(
  kafka: Kafka,
  topics: string[],
): Promise<Map<string, number> | undefined> {
  const admin = kafka.admin({ retry: { retries: 1 } });
  await admin.connect();
  try {
    const res = await admin.describeConfigs({
      resources: topics.map((name) => ({
        type: ConfigResourceTypes.TOPIC,
        name,
        configNames: ['max.message.bytes'],
      })),
      includeSynonyms: false,
    });
    const limits = new Map<string, number>();
    for (const r of res.resources) {
      const entry = r.configEntries.find((e) => e.configName === 'max.message.bytes');
      const bytes = Number(entry?.configValue);
      if (r.errorCode === 0 && Number.isSafeInteger(bytes) && bytes >= 0) limits.set(r.resourceName, bytes);
    }
    return limits;
  } finally {
    await admin.disconnect();
  }
}

export interface TopicSettingsReport {
  /** The DLQ's limit to cut letters to. */
  dlqMaxMessageBytes: number;
  /** A record of a source topic near its limit would not fit the DLQ whole. */
  dlqTooSmall: boolean;
}

/** Reads, logs and exports the limits; warns when the DLQ cannot take every letter whole. */
export async function checkTopicSettings(params: {
  kafka: Kafka;
  sources: string[];
  dlq: string;
  logger: Logger;
  telemetry: IndexerTelemetry;
}): Promise<TopicSettingsReport> {
  const { kafka, sources, dlq, logger, telemetry } = params;
  let limits: Map<string, number> | undefined;
  try {
    limits = await readMaxMessageBytes(kafka, [...sources, dlq]);
  } catch (err) {
    logger.warn(
      { err: messageOf(err), assumed: KAFKA_DEFAULT_MAX_MESSAGE_BYTES },
      "topic settings could not be read: Kafka's default max.message.bytes assumed for the dead-letter topic",
    );
  }
  for (const [topic, bytes] of limits ?? []) telemetry.topicMaxMessageBytes.set({ topic }, bytes);
  const dlqMax = limits?.get(dlq) ?? KAFKA_DEFAULT_MAX_MESSAGE_BYTES;
  const sourceMax = Math.max(...sources.map((s) => limits?.get(s) ?? KAFKA_DEFAULT_MAX_MESSAGE_BYTES));
  const dlqTooSmall = dlqMax < sourceMax + DLQ_HEADROOM_BYTES;
  const maxMessageBytes = Object.fromEntries(limits ?? []);
  if (dlqTooSmall) {
    logger.warn(
      { maxMessageBytes, dlq, headroom: DLQ_HEADROOM_BYTES },
      "topic settings: the dead-letter topic's max.message.bytes leaves no room for the headers of a record near a source topic's limit; such letters are cut to fit (value head, sha256 and size of the original)",
    );
  } else {
    logger.info({ maxMessageBytes, dlq }, 'topic settings: every record fits the dead-letter topic whole');
  }
  return { dlqMaxMessageBytes: dlqMax, dlqTooSmall };
}
