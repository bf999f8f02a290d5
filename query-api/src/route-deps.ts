import type { Client } from '@elastic/elasticsearch';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger, FastifyInstance, RawServerDefault } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AnalysisRequests } from './analysis-requests.ts';
import type { Access } from './auth.ts';
import type { Config, LogsFields } from './config.ts';
import type { CrashStore } from './crash-store.ts';
import type { DumpDeletions } from './dump-deletions.ts';
import type { Caller } from './kube-reviews.ts';
import type { PrometheusClient } from './prometheus-client.ts';
import type { StorageReader } from './storage-reader.ts';
import type { Telemetry } from './telemetry.ts';

// What the route plugins are given and the app they are registered on, apart from app.ts so that
// the app imports the routes and no route imports the app.

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the authentication hook of every /v1 route and of the debuginfod routes. */
    caller?: Caller;
  }
}

export type App = FastifyInstance<
  RawServerDefault,
  IncomingMessage,
  ServerResponse,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** What the route plugins are given. */
export interface RouteDeps {
  config: Config;
  es: Client;
  crashes: CrashStore;
  access: Access;
  storage: StorageReader;
  prometheus: PrometheusClient;
  telemetry: Telemetry;
  logsFields: LogsFields;
  logger: Logger;
  analysisRequests: AnalysisRequests;
  dumpDeletions: DumpDeletions;
}
