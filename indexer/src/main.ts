import { Client } from '@elastic/elasticsearch';
import {
  closing,
  createKafka,
  elasticsearchClientOptions,
  elasticsearchConnection,
  kafkaSecurity,
  namingElasticsearchRefusals,
  OpsServer,
  runService,
} from '@podmortem/contract/runtime';
import { CONFIG_PREFIX, IndexerConfigSchema, loadIndexerConfig } from './config.ts';
import { Indexer } from './indexer.ts';
import { Retention } from './retention.ts';
import { createTelemetry } from './telemetry.ts';

// `node indexer/src/main.ts`: the indexer process. Configuration comes from PODMORTEM_INDEXER_*
// (see config.ts); a bad value exits with status 2 naming the variable, before anything connects.

await runService({
  name: 'podmortem-indexer',
  about: {
    summary:
      "The indexer: it consumes the crash events, analyses and dump removals from Kafka and bulk-indexes them into Elasticsearch's monthly crash indices, committing offsets only once Elasticsearch acknowledged; records that cannot be indexed go to the dead-letter topic. It also deletes the indices older than the retention.",
    schema: IndexerConfigSchema,
    prefix: CONFIG_PREFIX,
  },
  loadConfig: () => loadIndexerConfig(),
  startFailedMessage: 'start-up failed',
  build: ({ config, logger, fatal }) => {
    const telemetry = createTelemetry();
    const connection = elasticsearchConnection(config, CONFIG_PREFIX);
    const es = namingElasticsearchRefusals(
      new Client({
        ...elasticsearchClientOptions(connection),
        // One retry policy for the whole service: the bulk writer's and the start-up's.
        maxRetries: 0,
        requestTimeout: config.elasticsearchRequestTimeoutMs,
      }),
      connection,
    );
    const kafka = createKafka({
      brokers: config.kafkaBrokers,
      clientId: config.kafkaClientId,
      requestTimeoutMs: config.kafkaTimeoutMs,
      security: kafkaSecurity(config, CONFIG_PREFIX),
      logger,
    });
    const indexer = new Indexer({
      config,
      logger,
      telemetry,
      es,
      kafka,
      onFatal: () => fatal('consumer stopped for good'),
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
    return {
      // The client first, so it is closed last, once nothing uses it.
      components: [closing('elasticsearch-client', () => es.close()), ops, indexer, retention],
      running: () => ({
        fields: { opsPort: ops.port, topic: config.topic, group: config.groupId, alias: config.indexAlias },
        message: 'indexer running',
      }),
    };
  },
});
