import {
  beforeDeadline,
  closing,
  elasticsearchConnection,
  OpsServer,
  runService,
  type Component,
} from '@podmortem/contract/runtime';
import { kubeConfigFrom } from '@podmortem/contract/runtime/kube-config';
import { storeFrom } from '@podmortem/contract/store';
import type { FastifyInstance } from 'fastify';
import { buildApp, VERSION, type AppParams } from './app.ts';
import { CONFIG_PREFIX, ConfigSchema, readConfig } from './config.ts';
import { createElasticsearchClient, elasticsearchCredentialsCheck } from './crash-store.ts';
import { createKubeReviews } from './kube-reviews.ts';
import { PrometheusClient } from './prometheus-client.ts';
import { StorageReader } from './storage-reader.ts';
import { createTelemetry, createTracerProvider } from './telemetry.ts';

// `node query-api/src/main.ts`: the query API, configured by PODMORTEM_API_* variables.

class HttpServer implements Component {
  readonly name = 'http-server';
  private app: FastifyInstance | undefined;
  private readonly params: AppParams;

  constructor(params: AppParams) {
    this.params = params;
  }

  get listening(): boolean {
    return this.app !== undefined;
  }

  async start(): Promise<void> {
    if (this.app) return;
    const { config, logger } = this.params;
    this.app = await buildApp(this.params);
    const address = await this.app.listen({ host: config.host, port: config.port });
    logger.info({ address, version: VERSION }, 'query API listening');
  }

  async shutdown(deadline: number): Promise<void> {
    const app = this.app;
    this.app = undefined;
    if (app) await beforeDeadline(app.close(), deadline, undefined);
  }
}

await runService({
  name: 'podmortem-query-api',
  about: {
    summary:
      "The query API, the HTTP server the podmortem CLI talks to: search crashes, read one with its pod's logs and metrics around it, download its dump, ask for a re-analysis or a deletion. Callers authenticate with a Kubernetes token and see only the namespaces they may read.",
    schema: ConfigSchema,
    prefix: CONFIG_PREFIX,
  },
  loadConfig: () => readConfig(),
  startFailedMessage: 'the query API could not start',
  build: ({ config, logger }) => {
    const es = createElasticsearchClient(
      elasticsearchConnection(config, CONFIG_PREFIX),
      config.elasticsearchTimeoutMs,
    );
    const tracerProvider = createTracerProvider({
      otlpEndpoint: config.otlpTracesEndpoint,
      version: VERSION,
    });
    const telemetry = createTelemetry();
    const store = storeFrom(config);
    const http = new HttpServer({
      config,
      es,
      kube: createKubeReviews(kubeConfigFrom(config.kubeconfig), { timeoutMs: config.kubeTimeoutMs }),
      prometheus: new PrometheusClient({ url: config.prometheusUrl, timeoutMs: config.prometheusTimeoutMs }),
      storage: new StorageReader({ store }),
      store,
      logger,
      telemetry,
      tracerProvider,
    });
    // /metrics on a port of its own: it names namespaces, and the API port is the tenants'.
    const ops = new OpsServer({
      host: config.opsHost,
      port: config.opsPort,
      registry: telemetry.registry,
      ready: () => http.listening,
    });
    return {
      // Shut down in reverse: the server first, then the clients its requests used.
      components: [
        closing('tracer-provider', () => tracerProvider.shutdown()),
        closing('elasticsearch-client', () => es.close()),
        elasticsearchCredentialsCheck(es, logger),
        ops,
        http,
      ],
    };
  },
});
