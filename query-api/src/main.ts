import {
  ConfigError,
  beforeDeadline,
  createLogger,
  logProcessWarnings,
  runComponents,
  type Component,
} from '@podmortem/contract/runtime';
import type { FastifyInstance } from 'fastify';
import { buildApp, VERSION } from './app.ts';
import { readConfig, type Config } from './config.ts';
import { createElasticsearchClient } from './crash-store.ts';
import { kubeConfigFrom } from '@podmortem/contract/runtime/kube-config';
import { createKubeReviews } from './kube-reviews.ts';
import { PrometheusClient } from './prometheus-client.ts';
import { StorageReader } from './storage-reader.ts';
import { FsStore } from '@podmortem/contract/store';
import { createTelemetry, createTracerProvider } from './telemetry.ts';

// `node query-api/src/main.ts`: the query API, configured by PODMORTEM_API_* variables.

const logger = createLogger('podmortem-query-api');
logProcessWarnings(logger);

let config: Config;
try {
  config = readConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    logger.fatal({ key: err.key }, err.message);
    process.exit(2);
  }
  throw err;
}

const es = createElasticsearchClient(config.elasticsearchUrl);
const tracerProvider = createTracerProvider({ otlpEndpoint: config.otlpTracesEndpoint, version: VERSION });
const telemetry = createTelemetry();

class HttpServer implements Component {
  readonly name = 'http-server';
  private app: FastifyInstance | undefined;

  async start(): Promise<void> {
    if (this.app) return;
    this.app = await buildApp({
      config,
      es,
      kube: createKubeReviews(kubeConfigFrom(config.kubeconfig)),
      prometheus: new PrometheusClient({ url: config.prometheusUrl }),
      storage: new StorageReader({ store: new FsStore({ root: config.storageRoot }) }),
      logger,
      telemetry,
      tracerProvider,
    });
    const address = await this.app.listen({ host: config.host, port: config.port });
    logger.info({ address, version: VERSION }, 'query API listening');
  }

  async shutdown(deadline: number): Promise<void> {
    const app = this.app;
    this.app = undefined;
    if (!app) return;
    await beforeDeadline(app.close(), deadline, undefined);
    await beforeDeadline(es.close(), deadline, undefined);
    await beforeDeadline(tracerProvider.shutdown(), deadline, undefined);
  }
}

const { started } = runComponents([new HttpServer()], logger, config.shutdownGraceMs);
started.catch((err: unknown) => {
  logger.fatal({ err }, 'the query API could not start');
  process.exit(1);
});
