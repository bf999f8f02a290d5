import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { configTable } from '@podmortem/contract/runtime';
import { CollectorConfigSchema, ENV_PREFIX, loadCollectorConfig } from '../collector/src/agent/config.ts';
import { AGENT_MAIN } from './support/collector-agent.ts';
import { repoDir } from './support/stack.ts';

// The agent's configuration: validated before anything starts; a bad value exits non-zero with a
// message naming the variable.

const NODE = join(repoDir, 'node_modules/node/bin/node');

function runMain(env: Record<string, string>) {
  return spawnSync(NODE, ['--disable-warning=ExperimentalWarning', AGENT_MAIN], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
}

t.test('defaults, and values read from PODMORTEM_COLLECTOR_* variables', async (t) => {
  const c = loadCollectorConfig({
    PODMORTEM_COLLECTOR_NODE_NAME: 'node-a',
    PODMORTEM_COLLECTOR_KAFKA_BROKERS: 'k1:9092, k2:9092',
    PODMORTEM_COLLECTOR_MANAGE_CORE_PATTERN: 'false',
    PODMORTEM_COLLECTOR_CONCURRENCY: '8',
  });
  t.equal(c.nodeName, 'node-a');
  t.same(c.kafkaBrokers, ['k1:9092', 'k2:9092']);
  t.equal(c.manageCorePattern, false);
  t.equal(c.concurrency, 8);
  t.equal(c.kafkaTopic, 'podmortem.crashes');
  t.equal(c.spoolDir, '/var/lib/podmortem/spool');
});

t.test('bad values exit non-zero before anything starts, naming the variable', async (t) => {
  const cases: [Record<string, string>, RegExp][] = [
    [{}, /PODMORTEM_COLLECTOR_NODE_NAME/],
    // Not a name Kubernetes gives a node: every event would name it, and be refused.
    [{ PODMORTEM_COLLECTOR_NODE_NAME: 'Node_A' }, /PODMORTEM_COLLECTOR_NODE_NAME/],
    [{ PODMORTEM_COLLECTOR_NODE_NAME: '../etc' }, /PODMORTEM_COLLECTOR_NODE_NAME/],
    [
      { PODMORTEM_COLLECTOR_NODE_NAME: 'n', PODMORTEM_COLLECTOR_CONCURRENCY: 'many' },
      /PODMORTEM_COLLECTOR_CONCURRENCY: must be a number/,
    ],
    [
      { PODMORTEM_COLLECTOR_NODE_NAME: 'n', PODMORTEM_COLLECTOR_CONCURRENCY: '0' },
      /PODMORTEM_COLLECTOR_CONCURRENCY/,
    ],
    [
      { PODMORTEM_COLLECTOR_NODE_NAME: 'n', PODMORTEM_COLLECTOR_MANAGE_CORE_PATTERN: 'yes' },
      /PODMORTEM_COLLECTOR_MANAGE_CORE_PATTERN: must be true or false/,
    ],
    [
      { PODMORTEM_COLLECTOR_NODE_NAME: 'n', PODMORTEM_COLLECTOR_OTLP_ENDPOINT: 'otel:4318' },
      /PODMORTEM_COLLECTOR_OTLP_ENDPOINT/,
    ],
    [
      { PODMORTEM_COLLECTOR_NODE_NAME: 'n', PODMORTEM_COLLECTOR_HANDLER_COMPRESSION: 'gzip' },
      /PODMORTEM_COLLECTOR_HANDLER_COMPRESSION/,
    ],
    [
      { PODMORTEM_COLLECTOR_NODE_NAME: 'n', PODMORTEM_COLLECTOR_OPS_PORT: '70000' },
      /PODMORTEM_COLLECTOR_OPS_PORT/,
    ],
  ];
  for (const [env, message] of cases) {
    const r = runMain(env);
    t.equal(r.status, 2, `exit 2 for ${JSON.stringify(env)}`);
    t.match(r.stderr, message);
    t.equal(r.stdout, '', 'nothing started, nothing logged');
  }
});

t.test('a handler that cannot be installed stops the agent with a clear error', async (t) => {
  const dir = mkdtempSync('/tmp/pmcfg-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const blocker = join(dir, 'file');
  writeFileSync(blocker, 'a file where the install folder should be');
  const r = runMain({
    PODMORTEM_COLLECTOR_NODE_NAME: 'n',
    PODMORTEM_COLLECTOR_HANDLER_INSTALL_DIR: join(blocker, 'bin'),
    PODMORTEM_COLLECTOR_SPOOL_DIR: join(dir, 'spool'),
    PODMORTEM_COLLECTOR_STATE_DIR: join(dir, 'state'),
    PODMORTEM_COLLECTOR_OPS_PORT: '0',
    PODMORTEM_COLLECTOR_MANAGE_CORE_PATTERN: 'false',
  });
  t.equal(r.status, 1);
  t.match(r.stdout, /PM_ERR_HANDLER_INSTALL/);
  t.match(r.stdout, /collector agent failed to start/);
});

t.test('every setting is documented for the README', async (t) => {
  const table = configTable(CollectorConfigSchema, ENV_PREFIX);
  for (const key of Object.keys(CollectorConfigSchema.properties)) {
    const prop = CollectorConfigSchema.properties[key as keyof typeof CollectorConfigSchema.properties];
    t.ok(prop.description, `${key} has a description`);
  }
  t.match(table, /\| `PODMORTEM_COLLECTOR_NODE_NAME` \| \(required\) \|/);
});
