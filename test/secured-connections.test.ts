import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { Client } from '@elastic/elasticsearch';
import { crashKey, encodeCrashMessage } from '@podmortem/contract';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import t, { type Test } from 'tap';
import {
  crashEvent,
  searchableCount,
  startIndexer,
  stopIndexer,
  testElasticsearch,
  testKafka,
  topicsForTest,
  uniqueNames,
  type IndexerProcess,
  type Names,
} from './support/indexer-harness.ts';
import { collectorSetup, runHandler } from './support/collector-agent.ts';
import { FakeKubeApi } from './support/fake-kube-api.ts';
import { startAuthProxy } from './support/nginx.ts';
import { until } from './support/poll.ts';
import { freePort } from './support/ports.ts';
import { privateServer } from './support/private-stack.ts';
import { addUser } from './support/query-api.ts';
import { startService, stopService, type ServiceProcess } from './support/service-process.ts';
import { stack } from './support/stack.ts';
import { elfHead, note, prpsinfo, prstatus, syntheticCore } from './support/synthetic-core.ts';
import { makeCertificates, makeClientCertificate } from './support/tls.ts';

// Secured connections only: a private Kafka with a SASL_SSL listener (SCRAM users, a certificate
// of a CA made here by openssl) and the stack's Elasticsearch behind nginx terminating TLS with
// basic authentication (and, on a second port, an API key). The real indexer process indexes a
// crash produced over SASL_SSL, searchable through the proxy; refused credentials end its start-up
// with status 1 naming the settings, and a missing CA file is a configuration error (status 2).

const dir = mkdtempSync(join(tmpdir(), 'pm-secured-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, `${text}\n`, { mode: 0o600 });
  return path;
};

const KAFKA_USER = 'podmortem-indexer';
const KAFKA_PASSWORD = `kafka-${randomUUID()}`;
const ES_USER = 'podmortem';
const ES_PASSWORD = `es-${randomUUID()}`;
const ES_API_KEY = Buffer.from(`pm-key:${randomUUID()}`).toString('base64');

const certs = await makeCertificates(dir);
const kafka = await privateServer('kafka', {
  saslSsl: { keyAndCertFile: certs.keyAndCertFile, users: { [KAFKA_USER]: KAFKA_PASSWORD } },
  mutualTls: { keyAndCertFile: certs.keyAndCertFile, clientCaFile: certs.caFile },
});
t.teardown(() => kafka.destroy());
await kafka.up();
const proxy = await startAuthProxy({
  upstream: stack.elasticsearchUrl,
  certificates: certs,
  users: { [ES_USER]: ES_PASSWORD },
  apiKey: ES_API_KEY,
  dir: join(dir, 'nginx'),
});
t.teardown(() => proxy.stop());
const secureKafka = kafka.saslSslAddress ?? '';

const caFile = certs.caFile;
const kafkaPasswordFile = file('kafka-password', KAFKA_PASSWORD);
const esPasswordFile = file('es-password', ES_PASSWORD);
const esApiKeyFile = file('es-api-key', ES_API_KEY);

/** The indexer's settings of a secured Kafka and Elasticsearch, `over` them. */
function securedEnv(over: Record<string, string> = {}): Record<string, string> {
  return {
    PODMORTEM_INDEXER_KAFKA_TLS: 'true',
    PODMORTEM_INDEXER_KAFKA_TLS_CA_FILE: caFile,
    PODMORTEM_INDEXER_KAFKA_SASL_MECHANISM: 'scram-sha-512',
    PODMORTEM_INDEXER_KAFKA_SASL_USERNAME: KAFKA_USER,
    PODMORTEM_INDEXER_KAFKA_SASL_PASSWORD_FILE: kafkaPasswordFile,
    PODMORTEM_INDEXER_ELASTICSEARCH_CA_FILE: caFile,
    PODMORTEM_INDEXER_ELASTICSEARCH_USERNAME: ES_USER,
    PODMORTEM_INDEXER_ELASTICSEARCH_PASSWORD_FILE: esPasswordFile,
    ...over,
  };
}

function secured(names: Names, env: Record<string, string>, elasticsearchUrl = proxy.basicUrl) {
  return startIndexer({ names, brokers: [secureKafka], elasticsearchUrl, env });
}

async function withIndexer(t: Test, p: Promise<IndexerProcess>): Promise<IndexerProcess> {
  const indexer = await p;
  t.teardown(() => stopIndexer(indexer));
  return indexer;
}

/** The test's topics (created over PLAINTEXT, the test's own listener) and index set. */
async function names(t: Test, prefix: string): Promise<Names> {
  const n = uniqueNames(prefix);
  await topicsForTest(t, testKafka([kafka.address]), testElasticsearch(), n, 1);
  return n;
}

/** The query API process with a secured Elasticsearch and Kafka, `over` its settings. */
async function startApi(
  n: Names,
  port: number,
  kubeconfig: string,
  over: Record<string, string> = {},
): Promise<ServiceProcess> {
  const storage = join(dir, `api-storage-${port}`);
  mkdirSync(storage);
  return startService('query-api/src/main.ts', (opsPort) => ({
    PODMORTEM_API_HOST: '127.0.0.1',
    PODMORTEM_API_PORT: String(port),
    PODMORTEM_API_OPS_HOST: '127.0.0.1',
    PODMORTEM_API_OPS_PORT: String(opsPort),
    PODMORTEM_API_STORAGE_ROOT: storage,
    PODMORTEM_API_CRASH_INDEX: n.alias,
    PODMORTEM_API_KUBECONFIG: kubeconfig,
    PODMORTEM_API_PROMETHEUS_URL: stack.prometheusUrl,
    PODMORTEM_API_ELASTICSEARCH_URL: proxy.basicUrl,
    PODMORTEM_API_ELASTICSEARCH_CA_FILE: caFile,
    PODMORTEM_API_ELASTICSEARCH_USERNAME: ES_USER,
    PODMORTEM_API_ELASTICSEARCH_PASSWORD_FILE: esPasswordFile,
    PODMORTEM_API_KAFKA_BROKERS: secureKafka,
    PODMORTEM_API_KAFKA_TLS: 'true',
    PODMORTEM_API_KAFKA_TLS_CA_FILE: caFile,
    PODMORTEM_API_KAFKA_SASL_MECHANISM: 'scram-sha-512',
    PODMORTEM_API_KAFKA_SASL_USERNAME: KAFKA_USER,
    PODMORTEM_API_KAFKA_SASL_PASSWORD_FILE: kafkaPasswordFile,
    PODMORTEM_API_REQUEST_TOPIC: n.requests,
    PODMORTEM_API_DUMP_DELETION_TOPIC: n.deletions,
    ...over,
  }));
}

/** The exit of a process that must end by itself, with the lines it logged. */
async function exitOf(indexer: IndexerProcess): Promise<{ code: number | null; log: string }> {
  const { code } = await indexer.exited;
  return { code, log: indexer.logs.join('\n') };
}

t.test(
  'the indexer over SASL_SSL and Elasticsearch over TLS with basic auth: a crash searchable through the proxy',
  async (t) => {
    const n = await names(t, 'pm-secured-index');
    const indexer = await withIndexer(t, secured(n, securedEnv()));
    await until('the indexer to be ready', () => indexer.ready(), 120_000);

    // The crash comes over SASL_SSL too, from a client that trusts the test's CA only.
    const producerKafka = new Kafka({
      clientId: 'pm-secured-test',
      brokers: [secureKafka],
      ssl: { ca: readFileSync(certs.caFile, 'utf8') },
      sasl: { mechanism: 'scram-sha-512', username: KAFKA_USER, password: KAFKA_PASSWORD },
      logLevel: logLevel.NOTHING,
    });
    const producer = producerKafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    const event = crashEvent(
      0,
      new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1)),
      [randomUUID()],
    );
    await producer.send({
      topic: n.topic,
      acks: -1,
      messages: [{ key: crashKey(event), value: encodeCrashMessage(event) }],
    });
    await producer.disconnect();

    const es = new Client({
      node: proxy.basicUrl,
      tls: { ca: readFileSync(certs.caFile, 'utf8') },
      auth: { username: ES_USER, password: ES_PASSWORD },
    });
    t.teardown(() => es.close());
    // Counted first: a search of an index whose shard has not started yet fails rather than finds nothing.
    await until(
      'the crash to be searchable through the TLS proxy',
      async () => (await searchableCount(es, n.alias)) === 1,
      60_000,
    );
    const found = await es.search({ index: n.alias, query: { ids: { values: [event.crash.id] } } });
    const hit = found.hits.hits[0] ?? { _id: undefined, _source: undefined };
    t.equal(hit._id, event.crash.id, 'found by its id, over https with basic auth');
    t.match(hit._source, {
      crash: { id: event.crash.id },
      kubernetes: { namespace: event.kubernetes?.namespace },
    });
    const anonymous = new Client({ node: proxy.basicUrl, tls: { ca: readFileSync(certs.caFile, 'utf8') } });
    t.teardown(() => anonymous.close());
    const refused = await anonymous.search({ index: n.alias }).catch((err: unknown) => err);
    t.match(refused, { meta: { statusCode: 401 } }, 'the proxy refuses a search without credentials');

    // The query API process searches it through the same proxy, with credentials of its own
    // settings; its Kafka (re-analysis requests, deletions) is the SASL_SSL listener too.
    const kube = await FakeKubeApi.start();
    t.teardown(() => kube.close());
    const namespace = event.kubernetes?.namespace ?? '';
    const token = addUser(kube, 'alice', [namespace]);
    const port = await freePort();
    const api = await startApi(n, port, kube.writeKubeconfig(join(dir, 'api-kubeconfig')));
    t.teardown(() => stopService(api));
    await until('the query API to be ready', () => api.ready(), 60_000);
    const res = await fetch(`http://127.0.0.1:${port}/v1/crashes?namespace=${namespace}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    t.equal(res.status, 200, 'GET /v1/crashes');
    const body = (await res.json()) as { items: { crash: { id: string } }[] };
    t.same(
      body.items.map((c) => c.crash.id),
      [event.crash.id],
      'the query API found the crash through the TLS proxy with basic auth',
    );
    const reanalysis = await fetch(`http://127.0.0.1:${port}/v1/crashes/${event.crash.id}/analysis`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    t.equal(reanalysis.status, 202, 'a re-analysis request published over SASL_SSL');
    const admin = testKafka([kafka.address]).admin();
    await admin.connect();
    t.teardown(() => admin.disconnect());
    const offsets = await admin.fetchTopicOffsets(n.requests);
    t.equal(
      offsets.reduce((sum, o) => sum + Number(o.high), 0),
      1,
      'one request on the topic',
    );
  },
);

t.test(
  'a crash captured by the collector agent over SASL_SSL, indexed over TLS, searchable through the proxy',
  async (t) => {
    const n = await names(t, 'pm-secured-agent');
    // The setup's own admin and topic go over PLAINTEXT; the agent talks to the SASL_SSL listener only.
    const setup = await collectorSetup([kafka.address], { liveConsumer: false });
    t.teardown(() => setup.close());
    const agent = await setup.start({
      PODMORTEM_COLLECTOR_KAFKA_BROKERS: secureKafka,
      PODMORTEM_COLLECTOR_KAFKA_TLS: 'true',
      PODMORTEM_COLLECTOR_KAFKA_TLS_CA_FILE: caFile,
      PODMORTEM_COLLECTOR_KAFKA_SASL_MECHANISM: 'scram-sha-512',
      PODMORTEM_COLLECTOR_KAFKA_SASL_USERNAME: KAFKA_USER,
      PODMORTEM_COLLECTOR_KAFKA_SASL_PASSWORD_FILE: kafkaPasswordFile,
    });
    t.teardown(() => {
      if (!t.passing()) t.comment(agent.stderr.join('').slice(-4000));
    });
    const indexer = await withIndexer(t, secured(n, securedEnv({ PODMORTEM_INDEXER_TOPIC: setup.topic })));
    await until('the indexer to be ready', () => indexer.ready(), 120_000);

    // The installed handler, run as the kernel runs it, with a core of a process of no pod.
    const pid = 3_970_001;
    const core = syntheticCore({
      notes: [
        note('CORE', 1, prstatus({ signal: 11, pid })),
        note('CORE', 3, prpsinfo({ pid, uid: 0, gid: 0, comm: 'crasher', args: 'crasher' })),
      ],
      loads: [{ vaddr: 0x400000n, data: Buffer.concat([elfHead('cd'.repeat(20)), randomBytes(1024)]) }],
    });
    const run = await runHandler(
      setup.installDir,
      { pid, signal: 11, comm: 'crasher', exe: '/bin/crasher' },
      core,
    );
    t.equal(run.code, 0, `the handler took the core: ${run.stderr}`);
    await setup.untilSpoolEmpty();

    const es = new Client({
      node: proxy.basicUrl,
      tls: { ca: readFileSync(certs.caFile, 'utf8') },
      auth: { username: ES_USER, password: ES_PASSWORD },
    });
    t.teardown(() => es.close());
    await until(
      'the crash to be searchable through the TLS proxy',
      async () => (await searchableCount(es, n.alias)) === 1,
      60_000,
    );
    const found = await es.search<{ process: { pid: number }; signal: { number: number } }>({
      index: n.alias,
    });
    t.match(found.hits.hits[0]?._source, { process: { pid }, signal: { number: 11 } }, 'the captured crash');
  },
);

t.test(
  'the collector agent with a wrong SASL password keeps the crash in its spool and names the settings',
  async (t) => {
    const setup = await collectorSetup([kafka.address], { liveConsumer: false });
    t.teardown(() => setup.close());
    const agent = await setup.start({
      PODMORTEM_COLLECTOR_KAFKA_BROKERS: secureKafka,
      PODMORTEM_COLLECTOR_KAFKA_TLS: 'true',
      PODMORTEM_COLLECTOR_KAFKA_TLS_CA_FILE: caFile,
      PODMORTEM_COLLECTOR_KAFKA_SASL_MECHANISM: 'scram-sha-512',
      PODMORTEM_COLLECTOR_KAFKA_SASL_USERNAME: KAFKA_USER,
      PODMORTEM_COLLECTOR_KAFKA_SASL_PASSWORD_FILE: file('agent-wrong-password', 'not-the-password'),
    });
    const pid = 3_970_002;
    const core = syntheticCore({
      notes: [
        note('CORE', 1, prstatus({ signal: 6, pid })),
        note('CORE', 3, prpsinfo({ pid, uid: 0, gid: 0, comm: 'crasher', args: 'crasher' })),
      ],
      loads: [{ vaddr: 0x400000n, data: Buffer.concat([elfHead('ef'.repeat(20)), randomBytes(1024)]) }],
    });
    const run = await runHandler(
      setup.installDir,
      { pid, signal: 6, comm: 'crasher', exe: '/bin/crasher' },
      core,
    );
    t.equal(run.code, 0, 'the handler took the core');
    // The agent spools and retries, as for any Kafka failure: the crash is not lost, the log says why.
    const named =
      'Kafka refused the SASL credentials (PODMORTEM_COLLECTOR_KAFKA_SASL_USERNAME, PODMORTEM_COLLECTOR_KAFKA_SASL_PASSWORD_FILE)';
    await until(
      'the agent to name the refused settings',
      () => JSON.stringify(agent.logs).includes(named),
      60_000,
    );
    t.not(setup.spoolLeft().length, 0, 'the crash waits in the spool');
    t.notMatch(JSON.stringify(agent.logs), 'not-the-password', 'the password given is not logged');
  },
);

t.test('a wrong SASL password ends the start-up with status 1 naming the settings', async (t) => {
  const n = await names(t, 'pm-secured-sasl');
  const wrong = file('kafka-wrong-password', 'not-the-password');
  const indexer = await withIndexer(
    t,
    secured(n, securedEnv({ PODMORTEM_INDEXER_KAFKA_SASL_PASSWORD_FILE: wrong })),
  );
  const { code, log } = await exitOf(indexer);
  t.equal(code, 1);
  t.match(
    log,
    'Kafka refused the SASL credentials (PODMORTEM_INDEXER_KAFKA_SASL_USERNAME, PODMORTEM_INDEXER_KAFKA_SASL_PASSWORD_FILE)',
  );
  t.notMatch(log, 'Kafka not ready, retrying', 'not waited out');
  t.notMatch(log, 'not-the-password', 'the password given is not logged');
});

t.test('a wrong Elasticsearch password ends the start-up with status 1 naming the settings', async (t) => {
  const n = await names(t, 'pm-secured-espw');
  const wrong = file('es-wrong-password', 'not-the-password');
  const indexer = await withIndexer(
    t,
    secured(n, securedEnv({ PODMORTEM_INDEXER_ELASTICSEARCH_PASSWORD_FILE: wrong })),
  );
  const { code, log } = await exitOf(indexer);
  t.equal(code, 1);
  t.match(
    log,
    'Elasticsearch refused the credentials (PODMORTEM_INDEXER_ELASTICSEARCH_USERNAME, PODMORTEM_INDEXER_ELASTICSEARCH_PASSWORD_FILE)',
  );
  t.notMatch(log, 'waiting for Elasticsearch', 'not waited out');
});

t.test(
  'the query API with a wrong Elasticsearch password ends its start-up with status 1 naming the settings',
  async (t) => {
    const n = uniqueNames('pm-secured-api-espw');
    const kube = await FakeKubeApi.start();
    t.teardown(() => kube.close());
    const api = await startApi(n, await freePort(), kube.writeKubeconfig(join(dir, 'api-kubeconfig-wrong')), {
      PODMORTEM_API_ELASTICSEARCH_PASSWORD_FILE: file('api-es-wrong-password', 'not-the-password'),
    });
    t.teardown(() => stopService(api));
    const { code } = await api.exited;
    t.equal(code, 1);
    t.match(
      api.logs.join('\n'),
      'Elasticsearch refused the credentials (PODMORTEM_API_ELASTICSEARCH_USERNAME, PODMORTEM_API_ELASTICSEARCH_PASSWORD_FILE)',
    );
  },
);

t.test(
  'an API key: the right one reaches a ready indexer, a wrong one ends it naming the setting',
  async (t) => {
    const n = await names(t, 'pm-secured-apikey');
    const apiKeyEnv = (keyFile: string) =>
      securedEnv({
        PODMORTEM_INDEXER_ELASTICSEARCH_USERNAME: '',
        PODMORTEM_INDEXER_ELASTICSEARCH_PASSWORD_FILE: '',
        PODMORTEM_INDEXER_ELASTICSEARCH_API_KEY_FILE: keyFile,
      });
    const good = await withIndexer(t, secured(n, apiKeyEnv(esApiKeyFile), proxy.apiKeyUrl));
    await until('the indexer with the API key to be ready', () => good.ready(), 120_000);
    await stopIndexer(good);

    const wrong = file('es-wrong-key', Buffer.from('pm-key:wrong').toString('base64'));
    const bad = await withIndexer(t, secured(n, apiKeyEnv(wrong), proxy.apiKeyUrl));
    const { code, log } = await exitOf(bad);
    t.equal(code, 1);
    t.match(log, 'Elasticsearch refused the credentials (PODMORTEM_INDEXER_ELASTICSEARCH_API_KEY_FILE)');
  },
);

t.test('mutual TLS: with its client certificate the indexer is ready, without one it is not', async (t) => {
  const n = await names(t, 'pm-secured-mtls');
  const client = await makeClientCertificate(dir, certs, 'podmortem-indexer');
  const plainTls = {
    PODMORTEM_INDEXER_KAFKA_SASL_MECHANISM: 'none',
    PODMORTEM_INDEXER_KAFKA_SASL_USERNAME: '',
    PODMORTEM_INDEXER_KAFKA_SASL_PASSWORD_FILE: '',
  };
  const mtlsAddress = kafka.mutualTlsAddress ?? '';
  const withCert = await withIndexer(
    t,
    startIndexer({
      names: n,
      brokers: [mtlsAddress],
      elasticsearchUrl: proxy.basicUrl,
      env: securedEnv({
        ...plainTls,
        PODMORTEM_INDEXER_KAFKA_TLS_CERT_FILE: client.certFile,
        PODMORTEM_INDEXER_KAFKA_TLS_KEY_FILE: client.keyFile,
      }),
    }),
  );
  await until('the indexer with a client certificate to be ready', () => withCert.ready(), 120_000);
  await stopIndexer(withCert);

  const without = await withIndexer(
    t,
    startIndexer({
      names: n,
      brokers: [mtlsAddress],
      elasticsearchUrl: proxy.basicUrl,
      env: securedEnv(plainTls),
    }),
  );
  // The broker's TLS alert, as kafkajs reports the connection error.
  await until('the indexer without a client certificate to be refused', () =>
    without.logs.some((l) => l.includes('Kafka not ready, retrying') && l.includes('bad certificate')),
  );
  t.equal(await without.ready(), false, 'not ready: the broker wants a client certificate');
  t.ok(
    withCert.logs.some((l) => l.includes('indexer running')),
    'the one with a certificate ran',
  );
});

t.test('a missing CA file is a configuration error naming the variable (status 2)', async (t) => {
  const n = uniqueNames('pm-secured-ca');
  const missing = join(dir, 'no-such-ca.crt');
  for (const variable of ['PODMORTEM_INDEXER_KAFKA_TLS_CA_FILE', 'PODMORTEM_INDEXER_ELASTICSEARCH_CA_FILE']) {
    const indexer = await withIndexer(t, secured(n, securedEnv({ [variable]: missing })));
    const { code, log } = await exitOf(indexer);
    t.equal(code, 2, variable);
    t.match(log, `configuration: ${variable}: cannot read ${missing}`);
  }
});
