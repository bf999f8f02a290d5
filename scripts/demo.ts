// The whole pipeline on the local stack, as a user would see it: a real program with a real bug
// crashes inside a pod-shaped cgroup, the kernel hands its core to podmortem's handler, and the
// crash is then found, analysed (every thread unwound, a title and a signature), downloaded and
// put in context through the query API and the CLI.
//
//   npm run demo                 run it, print a summary, stop everything it started
//   npm run demo -- --keep       leave the stack and the services running until Ctrl-C
//   npm run demo -- --summary-json FILE   also write the summary as JSON (used by the e2e test)
//   npm run demo -- --storage s3 dumps and events in a bucket of the stack's S3 server (default fs)
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
} from '@aws-sdk/client-s3';
import { Client } from '@elastic/elasticsearch';
import { Kafka, logLevel } from 'kafkajs';
import {
  ANALYSIS_REQUEST_TOPIC,
  ANALYSIS_TOPIC,
  DUMP_DELETION_TOPIC,
  DUMP_REMOVAL_TOPIC,
  CRASH_DLQ_TOPIC,
  CRASH_TOPIC,
  type CrashEvent,
} from '@podmortem/contract';
import { FakeKubeApi } from '../test/support/fake-kube-api.ts';
import { OtlpReceiver } from '../test/support/otlp-receiver.ts';
import { lockCorePattern } from '../test/support/core-pattern-lock.ts';
import { freePort } from '../test/support/ports.ts';
import { stackS3Client } from '../test/support/s3.ts';
import { repoDir, stack } from '../test/support/stack.ts';
import { createPodCgroup, type PodCgroup } from '../test/support/pod-cgroup.ts';
import { EXIT } from '../query-api/src/cli/client.ts';
import { PodTelemetry } from './demo/pod-telemetry.ts';

const run = promisify(execFile);
const CORE_PATTERN = '/proc/sys/kernel/core_pattern';

const { values: options } = parseArgs({
  options: {
    keep: { type: 'boolean', default: false },
    'summary-json': { type: 'string' },
    storage: { type: 'string', default: 'fs' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (options.help) {
  console.log(`usage: npm run demo [-- --keep] [-- --summary-json FILE] [-- --storage fs|s3]

Runs the whole podmortem pipeline on the local stack (Kafka, Elasticsearch, Prometheus, SeaweedFS)
and crashes a real program in a pod-shaped cgroup. Needs root (kernel.core_pattern, cgroups).
  --keep               leave the stack and the services running until Ctrl-C
  --summary-json FILE  also write the summary as JSON
  --storage fs|s3      where the collector, the analyzer and the query API keep dumps and events:
                       fs (default) a storage root folder, s3 a bucket of the stack's S3 server
                       (SeaweedFS), made for the run and removed after it unless --keep`);
  process.exit(0);
}
if (options.storage !== 'fs' && options.storage !== 's3') {
  console.error(`--storage must be fs or s3, not ${JSON.stringify(options.storage)}`);
  process.exit(2);
}
const storage: 'fs' | 's3' = options.storage;

let stepNo = 0;
function step(text: string): void {
  stepNo++;
  console.log(`\n\x1b[1m[${stepNo}] ${text}\x1b[0m`);
}
function say(text: string): void {
  console.log(`    ${text}`);
}

const workDir = join(stack.stackDir, 'demo');
/** kernel.core_pattern before the agent, as the agent left it on shutdown, and after the demo. */
const corePattern: { before?: string; leftByAgent?: string; after?: string } = {};
let summaryOut: Record<string, unknown> | undefined;
const cleanups: (() => Promise<void> | void)[] = [];
const children: { name: string; child: ChildProcess }[] = [];

async function cleanup(): Promise<void> {
  for (const fn of cleanups.reverse()) {
    try {
      await fn();
    } catch (err) {
      console.error(`    cleanup: ${(err as Error).message}`);
    }
  }
  cleanups.length = 0;
}

/** The bucket of an s3 run: one of its own, so a run never sees another's objects. */
const demoBucket = `podmortem-demo-${randomBytes(4).toString('hex')}`;

/** A service's storage variables (prefix PODMORTEM_<SERVICE>_) for the chosen backend. */
function storageEnv(prefix: string): Record<string, string> {
  if (storage === 'fs') return { [`${prefix}STORAGE_ROOT`]: join(workDir, 'storage') };
  return {
    [`${prefix}STORAGE_BACKEND`]: 's3',
    [`${prefix}STORAGE_S3_ENDPOINT`]: stack.s3.url,
    [`${prefix}STORAGE_S3_REGION`]: stack.s3.region,
    [`${prefix}STORAGE_S3_BUCKET`]: demoBucket,
    [`${prefix}STORAGE_S3_PATH_STYLE`]: 'true',
    [`${prefix}STORAGE_S3_ACCESS_KEY_ID_FILE`]: join(workDir, 's3', 'access-key-id'),
    [`${prefix}STORAGE_S3_SECRET_ACCESS_KEY_FILE`]: join(workDir, 's3', 'secret-access-key'),
  };
}

/** Where the dump at `key` is kept, if it is there: a path or an s3:// address. */
async function dumpLocation(key: string): Promise<string | undefined> {
  if (storage === 'fs') {
    const path = join(workDir, 'storage', key);
    return existsSync(path) ? path : undefined;
  }
  const client = stackS3Client();
  try {
    await client.send(new HeadObjectCommand({ Bucket: demoBucket, Key: key }));
    return `s3://${demoBucket}/${key}`;
  } catch {
    return undefined;
  } finally {
    client.destroy();
  }
}

/** Creates the s3 run's bucket and its key files; removed with its objects by the cleanup. */
async function createDemoBucket(keep: boolean): Promise<void> {
  mkdirSync(join(workDir, 's3'), { recursive: true });
  writeFileSync(join(workDir, 's3', 'access-key-id'), stack.s3.accessKeyId, { mode: 0o600 });
  writeFileSync(join(workDir, 's3', 'secret-access-key'), stack.s3.secretAccessKey, { mode: 0o600 });
  const client = stackS3Client();
  await client.send(new CreateBucketCommand({ Bucket: demoBucket }));
  say(`bucket ${demoBucket} on ${stack.s3.url}`);
  cleanups.push(async () => {
    if (keep) {
      say(`--keep: bucket ${demoBucket} kept`);
      client.destroy();
      return;
    }
    let removed = 0;
    for (;;) {
      const page = await client.send(new ListObjectsV2Command({ Bucket: demoBucket }));
      const keys = (page.Contents ?? []).flatMap((o) => (o.Key === undefined ? [] : [o.Key]));
      if (keys.length === 0) break;
      for (const key of keys) await client.send(new DeleteObjectCommand({ Bucket: demoBucket, Key: key }));
      removed += keys.length;
    }
    await client.send(new DeleteBucketCommand({ Bucket: demoBucket }));
    client.destroy();
    say(`bucket ${demoBucket} removed with its ${removed} objects`);
  });
}

function startService(name: string, script: string, env: Record<string, string>): ChildProcess {
  const log = createWriteStream(join(workDir, `${name}.log`));
  const child = spawn(process.execPath, [join(repoDir, script)], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  children.push({ name, child });
  cleanups.push(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    if ((await Promise.race([exited.then(() => 'exited'), sleep(30_000, 'late')])) === 'late')
      child.kill('SIGKILL');
    say(`${name} stopped`);
  });
  return child;
}

async function waitReady(name: string, url: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const child = children.find((c) => c.name === name)?.child;
    if (child && child.exitCode !== null) {
      throw new Error(`${name} exited with ${String(child.exitCode)}; see ${join(workDir, `${name}.log`)}`);
    }
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline)
      throw new Error(`${name} not ready after ${timeoutMs} ms; see ${join(workDir, `${name}.log`)}`);
    await sleep(250);
  }
}

/** Runs the podmortem CLI as a user would; its progress (stderr) follows what it printed. */
async function cli(args: string[], token: string, server: string): Promise<string> {
  const { stdout, stderr } = await run(join(repoDir, 'query-api/bin/podmortem'), args, {
    env: { ...process.env, PODMORTEM_SERVER: server, PODMORTEM_TOKEN: token },
  });
  return stdout + stderr;
}

type Analysis = NonNullable<CrashEvent['analysis']>;
type Frame = NonNullable<Analysis['frames']>[number];

/** `price_order at order-parser.c:37`, or without debug info `?? in order-parser+0x1185`. */
function frameText(f: Frame): string {
  const where =
    f.file !== undefined
      ? `at ${f.file}${f.line === undefined ? '' : `:${f.line}`}`
      : `in ${f.module ?? '?'}${f.offset === undefined ? '' : `+0x${f.offset.toString(16)}`}`;
  return `${f.function ?? '??'} ${where}`;
}

/**
 * The crash as the query API serves it, asked again until the indexer has merged the analyzer's
 * analysis into it (its status set), with a line of progress every few seconds.
 */
async function waitForAnalysis(crashId: string, token: string, server: string): Promise<Analysis> {
  const timeoutMs = 120_000;
  const started = Date.now();
  let lastSaid = started;
  for (;;) {
    const event = JSON.parse(await cli(['info', crashId, '--json'], token, server)) as CrashEvent;
    if (event.analysis?.status !== undefined) {
      say(`analysis merged after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return event.analysis;
    }
    const analyzer = children.find((c) => c.name === 'analyzer')?.child;
    if (analyzer && analyzer.exitCode !== null)
      throw new Error(
        `the analyzer exited with ${String(analyzer.exitCode)}; see ${join(workDir, 'analyzer.log')}`,
      );
    if (Date.now() - started > timeoutMs)
      throw new Error(`no analysis of ${crashId} after ${timeoutMs / 1000} s; see the logs in ${workDir}`);
    if (Date.now() - lastSaid >= 5000) {
      say(`waiting for the analysis … ${Math.round((Date.now() - started) / 1000)} s`);
      lastSaid = Date.now();
    }
    await sleep(500);
  }
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split('\n')
    .map((l) => `      ${l}`)
    .join('\n');
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error('the demo needs root: it sets kernel.core_pattern and creates cgroups');
  rmSync(workDir, { recursive: true, force: true });
  for (const d of ['spool', 'storage', 'state', 'build', 'analyzer'])
    mkdirSync(join(workDir, d), { recursive: true });

  step(`The local stack: Kafka, Elasticsearch, Prometheus, SeaweedFS; storage: ${storage}`);
  // status exits non-zero when a server is stopped; its output still says which.
  const before = await run('bash', [join(repoDir, 'deploy/local/stack.sh'), 'status']).then(
    (r) => r.stdout,
    (e: unknown) => (e as { stdout: string }).stdout,
  );
  const wasRunning = ['kafka', 'elasticsearch', 'prometheus', 'seaweedfs'].filter((c) =>
    before.includes(`${c}: running`),
  );
  const stackUp = spawn('bash', [join(repoDir, 'deploy/local/stack.sh'), 'up'], { stdio: 'inherit' });
  const [code] = (await once(stackUp, 'exit')) as [number | null];
  if (code !== 0) throw new Error('the local stack did not come up');
  const startedByUs = ['kafka', 'elasticsearch', 'prometheus', 'seaweedfs'].filter(
    (c) => !wasRunning.includes(c),
  );
  if (!options.keep && startedByUs.length > 0) {
    cleanups.push(async () => {
      await run('bash', [join(repoDir, 'deploy/local/stack.sh'), 'down', ...startedByUs]);
      say(`stopped ${startedByUs.join(', ')}`);
    });
  }

  if (storage === 's3') await createDemoBucket(options.keep);
  else say(`storage root ${join(workDir, 'storage')}`);

  const kafka = new Kafka({
    clientId: 'podmortem-demo',
    brokers: stack.kafkaBrokers,
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [
      { topic: CRASH_TOPIC, numPartitions: 3 },
      { topic: ANALYSIS_TOPIC, numPartitions: 3 },
      { topic: ANALYSIS_REQUEST_TOPIC, numPartitions: 3 },
      { topic: DUMP_REMOVAL_TOPIC, numPartitions: 3 },
      { topic: DUMP_DELETION_TOPIC, numPartitions: 3 },
      { topic: CRASH_DLQ_TOPIC, numPartitions: 1 },
    ],
    waitForLeaders: true,
  });
  await admin.disconnect();
  say(
    `topics ${CRASH_TOPIC}, ${ANALYSIS_TOPIC}, ${ANALYSIS_REQUEST_TOPIC}, ${DUMP_REMOVAL_TOPIC}, ${DUMP_DELETION_TOPIC} and ${CRASH_DLQ_TOPIC} ready`,
  );

  step('A Kubernetes API stand-in that knows the pod, and an OTLP receiver');
  const kube = await FakeKubeApi.start();
  cleanups.push(() => kube.close());
  // The node as Kubernetes names nodes (a DNS-1123 subdomain), whatever this host is called.
  const node =
    hostname()
      .toLowerCase()
      .replace(/[^a-z0-9.-]+/g, '-')
      .replace(/\.{2,}/g, '.')
      .replace(/^[-.]+|[-.]+$/g, '') || 'node';
  const podUid = randomUUID();
  const containerId = randomBytes(32).toString('hex');
  const pod = {
    namespace: 'shop',
    // A ReplicaSet's pod: a new name each run, so its context holds this run's logs and crashes.
    name: `order-parser-6f7c9d-${randomBytes(3).toString('hex').slice(0, 5)}`,
    uid: podUid,
    nodeName: node,
    labels: { app: 'order-parser' },
    owner: { kind: 'ReplicaSet', name: 'order-parser-6f7c9d' },
    containers: [
      {
        name: 'parser',
        image: 'registry.example/shop/order-parser:1.4.2',
        imageID: `registry.example/shop/order-parser@sha256:${randomBytes(32).toString('hex')}`,
        containerID: `containerd://${containerId}`,
      },
    ],
  };
  kube.addPod(pod);
  // Listed, so retention never takes the demo pod's namespace for a deleted one.
  kube.addNamespace(pod.namespace);
  const userToken = `demo-${randomBytes(16).toString('hex')}`;
  kube.addToken(userToken, { username: 'demo-sre@example.com', groups: ['sre'] });
  kube.grant({
    user: 'demo-sre@example.com',
    namespace: 'shop',
    verbs: ['list', 'get'],
    group: 'podmortem.io',
    resource: 'coredumps',
    subresource: '*',
  });
  const kubeconfig = kube.writeKubeconfig(join(workDir, 'kubeconfig'));
  say(
    `pod ${pod.namespace}/${pod.name} (uid ${podUid}) on node ${node}, container parser = ${containerId.slice(0, 12)}…`,
  );
  const otlp = await OtlpReceiver.start();
  cleanups.push(() => otlp.close());
  say(`OTLP/HTTP receiver on ${otlp.url}`);

  step('podmortem: indexer, analyzer, retention, query API, collector agent');
  const [indexerPort, analyzerPort, retentionPort, apiPort, apiOpsPort, agentPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  startService('indexer', 'indexer/src/main.ts', {
    PODMORTEM_INDEXER_KAFKA_BROKERS: stack.kafkaBrokers.join(','),
    PODMORTEM_INDEXER_ELASTICSEARCH_URL: stack.elasticsearchUrl,
    PODMORTEM_INDEXER_OPS_HOST: '127.0.0.1',
    PODMORTEM_INDEXER_OPS_PORT: String(indexerPort),
  });
  await waitReady('indexer', `http://127.0.0.1:${indexerPort}/readyz`);
  say(`indexer ready (metrics http://127.0.0.1:${indexerPort}/metrics)`);
  startService('analyzer', 'analyzer/src/main.ts', {
    PODMORTEM_ANALYZER_KAFKA_BROKERS: stack.kafkaBrokers.join(','),
    ...storageEnv('PODMORTEM_ANALYZER_'),
    PODMORTEM_ANALYZER_WORK_DIR: join(workDir, 'analyzer'),
    PODMORTEM_ANALYZER_OPS_HOST: '127.0.0.1',
    PODMORTEM_ANALYZER_OPS_PORT: String(analyzerPort),
  });
  await waitReady('analyzer', `http://127.0.0.1:${analyzerPort}/readyz`);
  say(`analyzer ready (metrics http://127.0.0.1:${analyzerPort}/metrics)`);
  // Its default rules keep a fresh crash's core for 30 days; it performs `podmortem delete`.
  startService('retention', 'retention/src/main.ts', {
    PODMORTEM_RETENTION_KAFKA_BROKERS: stack.kafkaBrokers.join(','),
    ...storageEnv('PODMORTEM_RETENTION_'),
    PODMORTEM_RETENTION_KUBECONFIG: kubeconfig,
    PODMORTEM_RETENTION_OPS_HOST: '127.0.0.1',
    PODMORTEM_RETENTION_OPS_PORT: String(retentionPort),
  });
  await waitReady('retention', `http://127.0.0.1:${retentionPort}/readyz`);
  say(`retention ready (metrics http://127.0.0.1:${retentionPort}/metrics)`);

  const api = `http://127.0.0.1:${apiPort}`;
  startService('query-api', 'query-api/src/main.ts', {
    PODMORTEM_API_HOST: '127.0.0.1',
    PODMORTEM_API_PORT: String(apiPort),
    PODMORTEM_API_ELASTICSEARCH_URL: stack.elasticsearchUrl,
    PODMORTEM_API_PROMETHEUS_URL: stack.prometheusUrl,
    ...storageEnv('PODMORTEM_API_'),
    PODMORTEM_API_KUBECONFIG: kubeconfig,
    PODMORTEM_API_OPS_HOST: '127.0.0.1',
    PODMORTEM_API_OPS_PORT: String(apiOpsPort),
  });
  await waitReady('query-api', `${api}/readyz`);
  say(`query API ready on ${api} (OpenAPI ${api}/docs)`);

  const release = await lockCorePattern();
  cleanups.push(release);
  const originalPattern = readFileSync(CORE_PATTERN, 'utf8').trim();
  corePattern.before = originalPattern;
  // Runs after the agent stopped and before the lock is released: what the agent left is recorded
  // (the e2e test checks the agent restored it), then the demo makes sure it is restored anyway.
  cleanups.push(() => {
    const now = readFileSync(CORE_PATTERN, 'utf8').trim();
    corePattern.leftByAgent = now;
    if (now !== originalPattern) {
      writeFileSync(CORE_PATTERN, originalPattern);
      say(`core_pattern restored by the demo to ${JSON.stringify(originalPattern)}`);
    } else {
      say(`core_pattern is back to ${JSON.stringify(originalPattern)}`);
    }
  });
  startService('collector', 'collector/src/agent/main.ts', {
    PODMORTEM_COLLECTOR_NODE_NAME: node,
    PODMORTEM_COLLECTOR_SPOOL_DIR: join(workDir, 'spool'),
    ...storageEnv('PODMORTEM_COLLECTOR_'),
    PODMORTEM_COLLECTOR_STORAGE_MIN_FREE_BYTES: '0',
    PODMORTEM_COLLECTOR_STATE_DIR: join(workDir, 'state'),
    PODMORTEM_COLLECTOR_HANDLER_INSTALL_DIR: join(workDir, 'bin'),
    PODMORTEM_COLLECTOR_KAFKA_BROKERS: stack.kafkaBrokers.join(','),
    PODMORTEM_COLLECTOR_OTLP_ENDPOINT: otlp.url,
    PODMORTEM_COLLECTOR_KUBECONFIG: kubeconfig,
    PODMORTEM_COLLECTOR_OPS_HOST: '127.0.0.1',
    PODMORTEM_COLLECTOR_OPS_PORT: String(agentPort),
  });
  await waitReady('collector', `http://127.0.0.1:${agentPort}/readyz`);
  say(`collector agent ready; kernel.core_pattern = ${readFileSync(CORE_PATTERN, 'utf8').trim()}`);

  step('A real program with a real bug crashes in the pod');
  const build = join(workDir, 'build');
  await run('gcc', [
    '-g',
    '-O0',
    '-o',
    join(build, 'order-parser'),
    join(repoDir, 'scripts/demo/order-parser.c'),
  ]);
  say(
    'built scripts/demo/order-parser.c with -g (price_order() dereferences the NULL that find_customer() returns for an unknown customer)',
  );
  const cgroup: PodCgroup = createPodCgroup(podUid, containerId);
  cleanups.push(() => cgroup.remove());
  say(`cgroup ${cgroup.path}`);
  const telemetry = new PodTelemetry(cgroup, {
    namespace: pod.namespace,
    pod: pod.name,
    container: 'parser',
  });
  telemetry.start();
  const crash = await cgroup.run(
    join(build, 'order-parser'),
    [join(repoDir, 'scripts/demo/orders.txt')],
    (line) => {
      telemetry.logLine(line);
      say(`  | ${line}`);
    },
  );
  const es = new Client({ node: stack.elasticsearchUrl });
  const logsIndex = `logs-demo-${new Date().toISOString().slice(0, 10).replaceAll('-', '.')}`;
  const shipped = await telemetry.ship(stack.prometheusUrl, es, logsIndex);
  await es.close();
  say(
    `as cAdvisor and a log shipper would: ${shipped.samples} memory/CPU samples to Prometheus, ` +
      `${shipped.lines} log lines to ${logsIndex}`,
  );
  say(`the process ended with signal ${crash.signal ?? 'none'}${crash.coreDumped ? ' (core dumped)' : ''}`);
  if (crash.signal !== 'SIGSEGV')
    throw new Error(`expected SIGSEGV, got ${crash.signal ?? `exit ${String(crash.code)}`}`);

  step('Found through the query API: podmortem list');
  let listing = '';
  const deadline = Date.now() + 90_000;
  let crashId: string | undefined;
  while (Date.now() < deadline) {
    let found: string;
    try {
      found = await cli(['list', '--namespace', 'shop', '--pod-uid', podUid, '--json'], userToken, api);
    } catch (err) {
      // Exit 6: unavailable for a moment (the first crash's index still starting); asked again.
      if ((err as { code?: unknown }).code !== EXIT.unavailable) throw err;
      await sleep(500);
      continue;
    }
    crashId = (JSON.parse(found) as { crash: { id: string } }[])[0]?.crash.id;
    if (crashId) break;
    await sleep(500);
  }
  if (!crashId)
    throw new Error('the crash did not reach the query API within 90 s; see the logs in ' + workDir);
  listing = await cli(['list', '--namespace', 'shop', '--pod', pod.name, '--since', '1h'], userToken, api);
  say(indent(listing));

  step('Analysed: the analyzer unwinds every thread of the core, the indexer merges the result');
  const analysis = await waitForAnalysis(crashId, userToken, api);
  say(`analysis   ${analysis.status ?? '?'}${analysis.reason ? ` (${analysis.reason})` : ''}`);
  say(`title      ${analysis.title ?? '(none)'}`);
  say(`signature  ${analysis.signature ?? '(none)'}`);
  const crashing = analysis.threads?.find((th) => th.crashing);
  const topFrames = (crashing?.frames ?? analysis.frames ?? []).slice(0, 5);
  say(`the crashing thread${crashing ? ` (tid ${crashing.tid})` : ''}, innermost first:`);
  topFrames.forEach((f, i) => say(`  #${i}  ${frameText(f)}`));

  step(`podmortem info ${crashId}`);
  const info = await cli(['info', crashId], userToken, api);
  say(indent(info));
  const event = JSON.parse(await cli(['info', crashId, '--json'], userToken, api)) as {
    kubernetes: { namespace: string; pod: { name: string } };
    signal: { name: string };
    dump: { sha256: string; path?: string };
  };

  step(`podmortem dump ${crashId} -o …  (sha256 verified)`);
  const dumpFile = join(workDir, `${crashId}.core`);
  say(indent(await cli(['dump', crashId, '-o', dumpFile, '--progress'], userToken, api)));
  say(`saved ${dumpFile}: the sha256 of the raw core matches the event's`);

  step(`podmortem context ${crashId}`);
  say(indent(await cli(['context', crashId], userToken, api)));

  const otlpRecord = otlp.withAttribute('podmortem.crash.id', crashId)[0];
  const summary = {
    crashId,
    storage: { backend: storage, dump: await dumpLocation(event.dump.path ?? '') },
    namespace: event.kubernetes.namespace,
    pod: event.kubernetes.pod.name,
    signal: event.signal.name,
    sha256: event.dump.sha256,
    dumpFile,
    otlpLogRecord: otlpRecord !== undefined,
    analysis: {
      status: analysis.status,
      title: analysis.title,
      signature: analysis.signature,
      topFunctions: topFrames.map((f) => f.function ?? '??'),
    },
    api,
  };

  step('Summary');
  say(`crash      ${summary.crashId}`);
  say(`pod        ${summary.namespace}/${summary.pod} (container parser)`);
  say(`signal     ${summary.signal}`);
  say(`stored     ${summary.storage.dump ?? 'nowhere'} (${storage})`);
  say(`analysis   ${summary.analysis.title ?? summary.analysis.status ?? 'none'}`);
  say(`dump       ${dumpFile}, sha256 ${summary.sha256} (verified)`);
  say(`OTel log   ${summary.otlpLogRecord ? 'received by the OTLP receiver' : 'NOT received'}`);
  say('where to look next:');
  say(`  the API and its OpenAPI page   ${api}/docs`);
  say(`  the services' logs             ${workDir}/*.log`);
  say(`  the crashes in Elasticsearch   alias podmortem-crashes on ${stack.elasticsearchUrl}`);
  say(
    `  Grafana dashboards and alerts  grafana/dashboards, grafana/provisioning (README: Grafana and Kibana)`,
  );
  say('  Kibana data view and searches  grafana/kibana/podmortem.ndjson (Saved Objects → Import)');
  summaryOut = summary;

  if (options.keep) {
    // The token stays in a 0600 kubeconfig, never on the screen: the CLI reads it from there.
    const userKubeconfig = kube.writeKubeconfig(join(workDir, 'user-kubeconfig'), userToken);
    say('\n--keep: the stack and the services stay up; Ctrl-C stops the services (the stack stays).');
    say(`  export PODMORTEM_SERVER=${api} KUBECONFIG=${userKubeconfig}`);
    say(`  query-api/bin/podmortem list --namespace shop`);
    await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  }
}

process.once('SIGTERM', () => {
  void cleanup().then(() => process.exit(143));
});
if (!options.keep) {
  process.once('SIGINT', () => {
    void cleanup().then(() => process.exit(130));
  });
}

try {
  await main();
  step('Cleaning up');
  await cleanup();
  if (options['summary-json'] && summaryOut) {
    corePattern.after = readFileSync(CORE_PATTERN, 'utf8').trim();
    writeFileSync(options['summary-json'], JSON.stringify({ ...summaryOut, corePattern }, null, 2));
  }
} catch (err) {
  console.error(`\ndemo failed: ${(err as Error).message}`);
  step('Cleaning up');
  await cleanup();
  process.exitCode = 1;
}
