import type { Test } from 'tap';
import { createKafka, createLogger } from '@podmortem/contract/runtime';
import type { Store } from '@podmortem/contract/store';
import { loadRetentionConfig } from '../../retention/src/config.ts';
import { DeletionWorker } from '../../retention/src/deletions.ts';
import { createTelemetry, type RetentionTelemetry } from '../../retention/src/telemetry.ts';
import { until } from './poll.ts';
import { LogCapture } from './query-api.ts';
import { stack, uniqueName } from './stack.ts';

// The retention service's deletion consumer, in the test's process, on the real Kafka and the
// test's store: what performs the deletions the query API accepts (202). Its own consumer group
// unless one is given, so tests never share one; stopped at the test's end.

export interface RunningDeletions {
  worker: DeletionWorker;
  telemetry: RetentionTelemetry;
  logs: LogCapture;
  groupId: string;
  stop(): Promise<void>;
}

export async function startDeletions(
  t: Test,
  params: { store: Store; deletionTopic: string; removalTopic: string; groupId?: string; brokers?: string[] },
): Promise<RunningDeletions> {
  const groupId = params.groupId ?? uniqueName('pm-deletions');
  const config = loadRetentionConfig(
    {},
    {
      kafkaBrokers: params.brokers ?? stack.kafkaBrokers,
      deletionTopic: params.deletionTopic,
      removalTopic: params.removalTopic,
      deletionGroupId: groupId,
      sessionTimeoutMs: 6000,
      heartbeatIntervalMs: 500,
      retryInitialMs: 100,
      retryMaxMs: 1000,
      kafkaTimeoutMs: 5000,
    },
  );
  const logs = new LogCapture();
  const logger = createLogger('retention-test', { level: 'info' }, logs);
  const kafka = createKafka({ brokers: config.kafkaBrokers, clientId: 'pm-deletions-test', logger });
  const telemetry = createTelemetry(undefined, false);
  const worker = new DeletionWorker({ config, logger, telemetry, kafka, store: params.store });
  let stopped: Promise<void> | undefined;
  const stop = () => (stopped ??= worker.shutdown(Date.now() + 10_000));
  t.teardown(stop);
  await worker.start();
  await until('the deletion consumer in its group', () => worker.ready());
  return { worker, telemetry, logs, groupId, stop };
}
