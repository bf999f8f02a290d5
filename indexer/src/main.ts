import { Client } from '@elastic/elasticsearch';
import {
  ConfigError,
  createLogger,
  logProcessWarnings,
  OpsServer,
  runComponents,
} from '@podmortem/contract/runtime';
import { loadIndexerConfig, type IndexerConfig } from './config.ts';
import { Indexer } from './indexer.ts';
import { createKafka } from '@podmortem/contract/runtime';
import { Retention } from './retention.ts';
import { createTelemetry } from './telemetry.ts';

// `node indexer/src/main.ts`: the indexer process. Configuration comes from PODMORTEM_INDEXER_*
// (see config.ts); a bad value exits with status 2 naming the variable, before anything connects.

const logger = createLogger('podmortem-indexer');
logProcessWarnings(logger);

let config: IndexerConfig;
try {
  config = loadIndexerConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  logger.fatal({ code: err.code, key: err.key }, `configuration: ${err.message}`);
  process.stderr.write(`podmortem-indexer: configuration: ${err.message}\n`);
  process.exit(2);
}

const telemetry = createTelemetry();
const es = new Client({
  node: config.elasticsearchUrl,
  // One retry policy for the whole service: the bulk writer's and the start-up's.
  maxRetries: 0,
  requestTimeout: config.elasticsearchRequestTimeoutMs,
});
const kafka = createKafka({ brokers: config.kafkaBrokers, clientId: config.kafkaClientId, logger });

let exitCode = 0;
const indexer = new Indexer({
  config,
  logger,
  telemetry,
  es,
  kafka,
  onFatal: () => {
    exitCode = 1;
    void stop('consumer stopped for good');
  },
});
const ops = new OpsServer({
  host: config.opsHost,
  port: config.opsPort,
  registry: telemetry.registry,
  ready: () => indexer.ready(),
});
const retention = new Retention({
  es,
  alias: config.indexAlias,
  retentionDays: config.retentionDays,
  intervalMs: config.retentionIntervalMs,
  logger,
  telemetry,
});

const { started, stop: stopComponents } = runComponents(
  [ops, indexer, retention],
  logger,
  config.shutdownGraceMs,
);
let stopping = false;
async function stop(reason: string): Promise<void> {
  stopping = true;
  await stopComponents(reason);
  await es.close().catch(() => undefined);
  process.exit(exitCode);
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));

started.then(
  () =>
    logger.info(
      { opsPort: ops.port, topic: config.topic, group: config.groupId, alias: config.indexAlias },
      'indexer running',
    ),
  (err: unknown) => {
    if (stopping) return;
    logger.fatal({ err }, 'start-up failed');
    exitCode = 1;
    void stop('start-up failed');
  },
);
