import type { Client } from '@elastic/elasticsearch';
import { crashIndexMonth, crashIndexTemplates, crashMappings } from '@podmortem/contract';
import { messageOf, retry, type Logger, type RetryPolicy } from '@podmortem/contract/runtime';
import { elasticsearchStatus, fromElasticsearchError, IndexerError } from './errors.ts';
import type { IndexerTelemetry } from './telemetry.ts';

// At start-up: waits until Elasticsearch is ready, then installs the contract's component and
// index templates, or upgrades them when the installed `version` is older. A newer installed
// version (a newer indexer rolled out) is left alone. Templates shape only indices created after
// them; on an upgrade the new mappings are also put on the existing monthly indices, where they
// extend what those indices accept (an incompatible change is logged and the index kept as is,
// still searchable through the alias).

export interface TemplateParams {
  es: Client;
  alias: string;
  shards: number;
  replicas: number;
  logger: Logger;
  telemetry: IndexerTelemetry;
}

export interface TemplateInstallReport {
  /** Templates written, by name, with the version found before (undefined: none). */
  installed: { name: string; from: number | undefined; to: number }[];
  /** Existing indices that took the new mappings, and those that refused them. */
  indicesUpdated: string[];
  indicesKept: { index: string; error: string }[];
}

export interface ReadyOptions {
  signal: AbortSignal;
  retry: RetryPolicy;
  onRetry?: () => void;
}

/**
 * Resolves once the cluster answers and is at least yellow (the server has no `GET /`, so
 * readiness is asked of cluster health). Retries with backoff until then, or until aborted.
 */
export async function waitForElasticsearch(es: Client, logger: Logger, options: ReadyOptions): Promise<void> {
  await retry(
    'elasticsearch ready',
    async () => {
      let health;
      try {
        health = await es.cluster.health(
          { wait_for_status: 'yellow', timeout: '5s' },
          { signal: options.signal },
        );
      } catch (err) {
        throw fromElasticsearchError('cluster health', err);
      }
      if (health.timed_out || health.status === 'red') {
        throw new IndexerError('PM_ERR_ES_NOT_READY', `cluster status is ${health.status}`);
      }
    },
    {
      ...options.retry,
      signal: options.signal,
      // Refused credentials stay refused: the start-up fails naming their variables.
      retriable: (err) => err instanceof IndexerError && err.code !== 'PM_ERR_ES_AUTH',
      onRetry: (err, attempt, delayMs) => {
        logger.warn({ err: messageOf(err), attempt, delayMs }, 'waiting for Elasticsearch');
        options.onRetry?.();
      },
    },
  );
}

async function installedComponentVersion(es: Client, name: string): Promise<number | undefined> {
  try {
    const res = await es.cluster.getComponentTemplate({ name });
    return res.component_templates[0]?.component_template.version ?? 0;
  } catch (err) {
    if (elasticsearchStatus(err) === 404) return undefined;
    throw err;
  }
}

async function installedIndexTemplateVersion(es: Client, name: string): Promise<number | undefined> {
  try {
    const res = await es.indices.getIndexTemplate({ name });
    return res.index_templates[0]?.index_template.version ?? 0;
  } catch (err) {
    if (elasticsearchStatus(err) === 404) return undefined;
    throw err;
  }
}

/** Our monthly indices (`<alias>-YYYY.MM`), whatever else matches the alias as a prefix. */
export async function crashIndices(es: Client, alias: string): Promise<string[]> {
  const res = await es.indices.get({
    index: `${alias}-*`,
    expand_wildcards: ['open', 'closed'],
    features: 'settings',
  });
  return Object.keys(res)
    .filter((name) => crashIndexMonth(name, alias) !== undefined)
    .sort();
}

export async function installCrashTemplates(params: TemplateParams): Promise<TemplateInstallReport> {
  const { es, alias, logger, telemetry } = params;
  const templates = crashIndexTemplates({ shards: params.shards, replicas: params.replicas, alias });
  const report: TemplateInstallReport = { installed: [], indicesUpdated: [], indicesKept: [] };
  const wants = (name: string, from: number | undefined, to: number): boolean => {
    if (from !== undefined && from > to) {
      logger.warn({ template: name, installed: from, ours: to }, 'a newer template is installed; leaving it');
    }
    return from === undefined || from < to;
  };
  try {
    for (const c of templates.componentTemplates) {
      const from = await installedComponentVersion(es, c.name);
      if (!wants(c.name, from, c.version)) continue;
      await es.cluster.putComponentTemplate({
        name: c.name,
        template: structuredClone(c.template),
        version: c.version,
        _meta: c._meta,
      });
      report.installed.push({ name: c.name, from, to: c.version });
    }
    const t = templates.indexTemplate;
    const from = await installedIndexTemplateVersion(es, t.name);
    if (wants(t.name, from, t.version)) {
      await es.indices.putIndexTemplate({
        name: t.name,
        index_patterns: t.index_patterns,
        composed_of: t.composed_of,
        template: t.template,
        priority: t.priority,
        version: t.version,
        _meta: t._meta,
      });
      report.installed.push({ name: t.name, from, to: t.version });
    }
  } catch (err) {
    const e = fromElasticsearchError('install index templates', err);
    if (e.retriable) throw e;
    throw new IndexerError('PM_ERR_TEMPLATE', e.message, err);
  }
  for (const i of report.installed) {
    telemetry.templatesInstalled.inc({ template: i.name });
    logger.info(i, i.from === undefined ? 'template installed' : 'template upgraded');
  }
  if (report.installed.some((i) => i.from !== undefined))
    await updateExistingIndices(es, alias, report, logger);
  return report;
}

async function updateExistingIndices(
  es: Client,
  alias: string,
  report: TemplateInstallReport,
  logger: Logger,
) {
  let indices: string[];
  try {
    indices = await crashIndices(es, alias);
  } catch (err) {
    throw fromElasticsearchError('list crash indices', err);
  }
  for (const index of indices) {
    try {
      await es.indices.putMapping({
        index,
        ...(structuredClone(crashMappings) as Omit<Parameters<Client['indices']['putMapping']>[0], 'index'>),
      });
      report.indicesUpdated.push(index);
    } catch (err) {
      const e = fromElasticsearchError(`put mappings on ${index}`, err);
      if (e.retriable) throw e;
      report.indicesKept.push({ index, error: e.message });
      logger.warn({ index, err: e.message }, 'existing index keeps its mappings');
    }
  }
  if (report.indicesUpdated.length > 0)
    logger.info({ indices: report.indicesUpdated }, 'existing indices took the new mappings');
}

/** Installs the templates, retrying while Elasticsearch is unavailable; a refusal is thrown. */
export async function installCrashTemplatesWithRetry(
  params: TemplateParams,
  options: ReadyOptions,
): Promise<TemplateInstallReport> {
  return retry('install index templates', () => installCrashTemplates(params), {
    ...options.retry,
    signal: options.signal,
    onRetry: (err, attempt, delayMs) => {
      params.logger.warn(
        { err: messageOf(err), attempt, delayMs },
        'installing index templates failed, retrying',
      );
      options.onRetry?.();
    },
  });
}
