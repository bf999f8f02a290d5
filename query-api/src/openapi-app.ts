import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { buildApp } from './app.ts';
import { readConfig } from './config.ts';
import { createElasticsearchClient } from './crash-store.ts';
import { OPENAPI_FILE, renderOpenapi } from './openapi.ts';
import type { KubeReviews } from './kube-reviews.ts';
import { PrometheusClient } from './prometheus-client.ts';
import { StorageReader } from './storage-reader.ts';
import { FsStore } from '@podmortem/contract/store';

// An app with the default configuration whose dependencies are never called: enough for
// @fastify/swagger to produce the document, which depends on the routes alone.

const noKube: KubeReviews = {
  reviewToken: () => Promise.reject(new Error('not connected')),
  reviewAccess: () => Promise.reject(new Error('not connected')),
};

export async function documentApp() {
  const config = readConfig({});
  const store = new FsStore({ root: config.storageRoot });
  const app = await buildApp({
    config,
    es: createElasticsearchClient(config.elasticsearchUrl),
    kube: noKube,
    prometheus: new PrometheusClient({ url: config.prometheusUrl }),
    storage: new StorageReader({ store }),
    store,
    logger: pino({ level: 'silent' }),
  });
  await app.ready();
  return app;
}

/** The document as committed in query-api/openapi.json, in the repository's prettier format. */
export async function generateOpenapi(): Promise<string> {
  const app = await documentApp();
  try {
    // prettier is a development tool of the repository, needed only to write the file.
    const prettier = await import('prettier');
    const options = (await prettier.resolveConfig(OPENAPI_FILE)) ?? {};
    return await prettier.format(renderOpenapi(app.swagger()), { ...options, parser: 'json' });
  } finally {
    await app.close();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(OPENAPI_FILE, await generateOpenapi());
  process.stdout.write(`wrote ${OPENAPI_FILE}\n`);
}
