import { readFileSync } from 'node:fs';
import { createKafka, kafkaSecurity, OpsServer, runService } from '@podmortem/contract/runtime';
import { storeFrom } from '@podmortem/contract/store';
import { Analyzer } from './analyzer.ts';
import { AnalyzerConfigSchema, CONFIG_PREFIX, loadAnalyzerConfig } from './config.ts';
import { createTelemetry } from './telemetry.ts';

// `node analyzer/src/main.ts`: the analyzer process. Configuration comes from PODMORTEM_ANALYZER_*
// (see config.ts); a bad value exits with status 2 naming the variable, before anything connects.

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

await runService({
  name: 'podmortem-analyzer',
  about: {
    summary:
      "The analyzer: for each stored crash (and each re-analysis request) it reads the dump and the executable from the store, unwinds every thread with eu-stack under time and memory limits, computes the crash's signature and title, and publishes the analysis on Kafka for the indexer.",
    schema: AnalyzerConfigSchema,
    prefix: CONFIG_PREFIX,
  },
  loadConfig: () => loadAnalyzerConfig(),
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
    const analyzer = new Analyzer({
      config,
      logger,
      telemetry,
      kafka,
      store: storeFrom(config),
      version,
      onFatal: () => fatal('consumer stopped for good'),
    });
    const ops = new OpsServer({
      host: config.opsHost,
      port: config.opsPort,
      registry: telemetry.registry,
      ready: () => analyzer.ready(),
    });
    return {
      components: [ops, analyzer],
      running: () => ({
        fields: {
          opsPort: ops.port,
          topic: config.topic,
          requestTopic: config.requestTopic,
          analysisTopic: config.analysisTopic,
          group: config.groupId,
        },
        message: 'analyzer running',
      }),
    };
  },
});
