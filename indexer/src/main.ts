import { Client } from '@elastic/elasticsearch';
import { closing, createKafka, OpsServer, runService } from '@podmortem/contract/runtime';
import { loadIndexerConfig } from './config.ts';
import { Indexer } from './indexer.ts';
import { Retention } from './retention.ts';
import { createTelemetry } from './telemetry.ts';

// `node indexer/src/main.ts`: the indexer process. Configuration comes from PODMORTEM_INDEXER_*
// (see config.ts); a bad value exits with status 2 naming the variable, before anything connects.

await runService({
  name: 'podmortem-indexer',
  loadConfig: () => loadIndexerConfig(),
  startFailedMessage: 'start-up failed',
  build: ({ config, logger, fatal }) => {
    const telemetry = createTelemetry();
    const es = new Client({
      node: config.elasticsearchUrl,
      // One retry policy for the whole service: the bulk writer's and the start-up's.
      maxRetries: 0,
      requestTimeout: config.elasticsearchRequestTimeoutMs,
    });
    const kafka = createKafka({
      brokers: config.kafkaBrokers,
      clientId: config.kafkaClientId,
      requestTimeoutMs: config.kafkaTimeoutMs,
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
