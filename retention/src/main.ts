import { CoreV1Api } from '@kubernetes/client-node';
import { createKafka, kafkaSecurity, OpsServer, runService } from '@podmortem/contract/runtime';
import { kubeConfigFrom } from '@podmortem/contract/runtime/kube-config';
import { storeFrom } from '@podmortem/contract/store';
import { CONFIG_PREFIX, loadRetentionConfig, RetentionConfigSchema } from './config.ts';
import { DeletionWorker } from './deletions.ts';
import { Retention } from './retention.ts';
import { createTelemetry } from './telemetry.ts';

// `node retention/src/main.ts`: the retention process. Configuration comes from
// PODMORTEM_RETENTION_* (see config.ts); a bad value exits with status 2 naming the variable.

await runService({
  name: 'podmortem-retention',
  about: {
    summary:
      "The retention service, the store's one remover: one active replica (elected through a Kafka lease) removes cores by age, by budget and of deleted namespaces, keeping their events; every replica performs the users' deletion requests the query API publishes. Each removal is published for the indexer.",
    schema: RetentionConfigSchema,
    prefix: CONFIG_PREFIX,
  },
  loadConfig: () => loadRetentionConfig(),
  startFailedMessage: 'start-up failed',
  build: ({ config, logger, fatal }) => {
    const telemetry = createTelemetry();
    const kafka = createKafka({
      brokers: config.kafkaBrokers,
      clientId: config.kafkaClientId,
      requestTimeoutMs: config.kafkaTimeoutMs,
      security: kafkaSecurity(config, CONFIG_PREFIX),
      logger,
    });
    const store = storeFrom(config);
    const retention = new Retention({
      config,
      logger,
      telemetry,
      kafka,
      store,
      core: kubeConfigFrom(config.kubeconfig).makeApiClient(CoreV1Api),
    });
    const deletions = new DeletionWorker({
      config,
      logger,
      telemetry,
      kafka,
      store,
      onFatal: () => fatal('deletion consumer stopped for good'),
    });
    const ops = new OpsServer({
      host: config.opsHost,
      port: config.opsPort,
      registry: telemetry.registry,
      ready: () => retention.ready() && deletions.ready(),
    });
    return {
      components: [ops, retention, deletions],
      running: () => ({
        fields: { opsPort: ops.port, leaseTopic: config.leaseTopic, dryRun: config.dryRun },
        message: 'retention running',
      }),
    };
  },
});
