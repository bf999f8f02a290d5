import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { parsePatch, patchSource, reversePatch, type FilePatch } from '../scripts/patch-deps.ts';
import { createTopicsWithLeaders } from './support/kafka-topics.ts';
import { repoDir, stack, uniqueName } from './support/stack.ts';

// kafkajs 2.2.4 under Node 24 printed "TimeoutNegativeWarning: -1796410653446 is a negative
// number" (kafkajs#1751): after every response its request queue set a timer of (-1 - now) ms
// when nothing was pending and the broker had not throttled. patches/kafkajs+2.2.4.patch, applied
// by scripts/patch-deps.ts at install, schedules nothing then. Here a real producer and consumer
// run against the local Kafka in a child with --trace-warnings, once with the installed kafkajs
// and once with a copy of it unpatched again, and the script refuses what it was not made for.

const PATCH_NAME = 'kafkajs+2.2.4.patch';
const QUEUE_FILE = 'src/network/requestQueue/index.js';
const installedKafkajs = join(repoDir, 'node_modules', 'kafkajs');
const filePatch: FilePatch = (() => {
  const [only, ...more] = parsePatch(readFileSync(join(repoDir, 'patches', PATCH_NAME), 'utf8'), PATCH_NAME);
  if (!only || more.length > 0 || only.path !== QUEUE_FILE)
    throw new Error(`${PATCH_NAME}: expected ${QUEUE_FILE} only`);
  return only;
})();
const installedQueue = readFileSync(join(installedKafkajs, QUEUE_FILE), 'utf8');
// The published 2.2.4 file, whether or not this install is patched.
const unpatchedQueue = patchSource(installedQueue, reversePatch(filePatch), 'installed kafkajs').text;
const patchedQueue = patchSource(unpatchedQueue, filePatch, 'unpatched kafkajs').text;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: repoDir, env: { ...process.env, ...env } },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

function tempDir(t: Test, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// The child: an idempotent producer (as the services' SessionProducer) sends one record and a
// consumer group reads it back. The code path that warned runs deterministically: every response
// from the broker (the very first one is ApiVersions at connect) calls checkPendingRequests, which
// calls scheduleCheckPendingRequests with an empty queue, and the local broker never throttles.
// The child counts those calls (the wrapper changes nothing else) so the test knows the path ran;
// Node prints the warning at most once a process, at the first such timer.
const child = `
import { createRequire } from 'node:module';
const require = createRequire(process.env.KAFKAJS_DIR + '/package.json');
const { Kafka, logLevel } = require('./index.js');
const RequestQueue = require('./src/network/requestQueue/index.js');
let idleChecks = 0;
const schedule = RequestQueue.prototype.scheduleCheckPendingRequests;
RequestQueue.prototype.scheduleCheckPendingRequests = function () {
  if (!this.throttleCheckTimeoutId && this.pending.length === 0 && this.throttledUntil <= Date.now()) idleChecks++;
  return schedule.call(this);
};
const { BROKERS, TOPIC, GROUP } = process.env;
const kafka = new Kafka({ clientId: 'kafkajs-patch-test', brokers: BROKERS.split(','), logLevel: logLevel.NOTHING });
const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
await producer.connect();
await producer.send({ topic: TOPIC, acks: -1, messages: [{ value: 'ping' }] });
const consumer = kafka.consumer({ groupId: GROUP });
await consumer.connect();
await consumer.subscribe({ topic: TOPIC, fromBeginning: true });
const received = await new Promise((resolve, reject) => {
  consumer.run({ eachMessage: async ({ message }) => resolve(String(message.value)) }).catch(reject);
});
await consumer.disconnect();
await producer.disconnect();
console.log(JSON.stringify({ received, idleChecks }));
`;

t.test('a producer and a consumer on the patched kafkajs print no TimeoutNegativeWarning', async (t) => {
  const admin = new Kafka({
    clientId: 'kafkajs-patch-test',
    brokers: stack.kafkaBrokers,
    logLevel: logLevel.NOTHING,
  }).admin();
  await admin.connect();
  const topic = uniqueName('kafkajs-patch');
  const groups: string[] = [];
  t.teardown(async () => {
    await admin.deleteGroups(groups).catch(() => undefined);
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  });
  await createTopicsWithLeaders(admin, [{ topic, numPartitions: 1 }]);

  async function roundTrip(
    kafkajsDir: string,
  ): Promise<{ stderr: string; received: unknown; idleChecks: unknown }> {
    const group = uniqueName('kafkajs-patch');
    groups.push(group);
    const result = await run(['--trace-warnings', '--input-type=module', '--eval', child], {
      KAFKAJS_DIR: kafkajsDir,
      BROKERS: stack.kafkaBrokers.join(','),
      TOPIC: topic,
      GROUP: group,
    });
    t.equal(result.code, 0, 'the child exits 0', { stderr: result.stderr });
    const { received, idleChecks } = JSON.parse(result.stdout) as { received: unknown; idleChecks: unknown };
    return { stderr: result.stderr, received, idleChecks };
  }

  t.equal(installedQueue, patchedQueue, `node_modules/kafkajs/${QUEUE_FILE} is patched (npm ci applies it)`);
  const patched = await roundTrip(installedKafkajs);
  t.equal(patched.received, 'ping', 'the consumer read what the producer sent');
  t.ok(
    Number(patched.idleChecks) > 0,
    'the queue scheduled a check with nothing pending (the path that warned)',
  );
  t.notMatch(patched.stderr, /TimeoutNegativeWarning/, 'no negative timer');

  // The same run on a copy of kafkajs without the patch: the warning this test looks for is real.
  const copy = join(tempDir(t, 'kafkajs-unpatched-'), 'kafkajs');
  cpSync(installedKafkajs, copy, { recursive: true });
  writeFileSync(join(copy, QUEUE_FILE), unpatchedQueue);
  const unpatched = await roundTrip(copy);
  t.equal(unpatched.received, 'ping', 'the unpatched copy reads it too');
  t.match(
    unpatched.stderr,
    /TimeoutNegativeWarning: -\d+ is a negative number[\s\S]*scheduleCheckPendingRequests/,
    'unpatched, the same run warns, from scheduleCheckPendingRequests',
  );
});

t.test('scripts/patch-deps.ts patches kafkajs 2.2.4 once and refuses anything else', async (t) => {
  const root = tempDir(t, 'patch-deps-');
  cpSync(join(repoDir, 'patches'), join(root, 'patches'), { recursive: true });
  writeFileSync(join(root, 'package.json'), JSON.stringify({ workspaces: ['svc'] }));
  const pkgJson = readFileSync(join(installedKafkajs, 'package.json'), 'utf8');
  // The root's copy and a workspace's own copy, as npm installs two versions.
  const copies = ['node_modules/kafkajs', 'svc/node_modules/kafkajs'].map((dir) => join(root, dir));
  for (const dir of copies) {
    mkdirSync(join(dir, 'src/network/requestQueue'), { recursive: true });
    writeFileSync(join(dir, 'package.json'), pkgJson);
    writeFileSync(join(dir, QUEUE_FILE), unpatchedQueue);
  }
  const script = ['scripts/patch-deps.ts', '--root', root];
  const queues = () => copies.map((dir) => readFileSync(join(dir, QUEUE_FILE), 'utf8'));

  const first = await run(script);
  t.equal(first.code, 0, first.stderr);
  t.match(first.stdout, /node_modules\/kafkajs\/src\/network\/requestQueue\/index\.js: patched/);
  t.match(first.stdout, /svc\/node_modules\/kafkajs\/src\/network\/requestQueue\/index\.js: patched/);
  t.same(queues(), [patchedQueue, patchedQueue], 'both copies patched');
  t.not(patchedQueue, unpatchedQueue, 'the patch changes the file');

  const second = await run(script);
  t.equal(second.code, 0, second.stderr);
  t.equal(second.stdout.match(/: already patched/g)?.length, 2, 'a second run changes nothing');
  t.same(queues(), [patchedQueue, patchedQueue]);

  const workspaceCopy = copies[1] ?? '';
  writeFileSync(
    join(workspaceCopy, QUEUE_FILE),
    unpatchedQueue.replace('CHECK_PENDING_REQUESTS_INTERVAL\n', 'CHECK_PENDING_REQUESTS_INTERVAL * 2\n'),
  );
  const changed = await run(script);
  t.equal(changed.code, 1, 'an unexpected source fails the install');
  t.match(
    changed.stderr,
    /kafkajs@2\.2\.4 svc\/node_modules\/kafkajs\/src\/network\/requestQueue\/index\.js \(patches\/kafkajs\+2\.2\.4\.patch\): line 315 is ".*INTERVAL \* 2", the patch expects ".*INTERVAL"; the file is neither the source the patch was made from nor its patched form/,
  );

  writeFileSync(
    join(workspaceCopy, 'package.json'),
    pkgJson.replace('"version": "2.2.4"', '"version": "2.2.5"'),
  );
  const upgraded = await run(script);
  t.equal(upgraded.code, 1, 'another version fails the install');
  t.match(
    upgraded.stderr,
    /patches\/kafkajs\+2\.2\.4\.patch is for kafkajs 2\.2\.4, but svc\/node_modules\/kafkajs is kafkajs 2\.2\.5: check whether 2\.2\.5 still needs the change/,
  );

  rmSync(join(root, 'svc'), { recursive: true });
  rmSync(join(root, 'node_modules'), { recursive: true });
  const missing = await run(script);
  t.equal(missing.code, 1, 'a patch for a package that is not installed fails the install');
  t.match(missing.stderr, /patches\/kafkajs\+2\.2\.4\.patch: kafkajs is not installed/);
});
