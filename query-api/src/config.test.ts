import t from 'tap';
import { configTable } from '@podmortem/contract/runtime';
import { CONFIG_PREFIX, ConfigSchema, logsFieldsOf, readConfig } from './config.ts';

t.test('defaults, and values from PODMORTEM_API_* variables', async (t) => {
  const c = readConfig({});
  t.equal(c.port, 8080);
  t.equal(c.crashIndex, 'podmortem-crashes');
  t.equal(c.logsFields, 'ecs');
  const d = readConfig({
    PODMORTEM_API_PORT: '9000',
    PODMORTEM_API_LOGS_FIELDS: 'otel',
    PODMORTEM_API_DOCS: 'false',
  });
  t.equal(d.port, 9000);
  t.equal(d.docs, false);
  t.equal(logsFieldsOf(d).pod, 'resource.attributes.k8s.pod.name');
});

t.test('a bad value names its variable', async (t) => {
  for (const [key, value] of [
    ['PODMORTEM_API_PORT', 'http'],
    ['PODMORTEM_API_PORT', '70000'],
    ['PODMORTEM_API_LOGS_FIELDS', 'splunk'],
    ['PODMORTEM_API_CRASH_INDEX', 'Bad Index'],
    ['PODMORTEM_API_MAX_PAGE_SIZE', '0'],
  ] as const) {
    t.throws(
      () => readConfig({ [key]: value }),
      { name: 'ConfigError', key, message: new RegExp(`^${key}: `) },
      `${key}=${value}`,
    );
  }
});

t.test('field overrides win over the preset', async (t) => {
  const f = logsFieldsOf(readConfig({ PODMORTEM_API_LOGS_MESSAGE_FIELD: 'log' }));
  t.same(f, {
    namespace: 'kubernetes.namespace',
    pod: 'kubernetes.pod.name',
    container: 'kubernetes.container.name',
    message: 'log',
    timestamp: '@timestamp',
  });
});

t.test('every key is documented for the README table', async (t) => {
  const rows = configTable(ConfigSchema, CONFIG_PREFIX)
    .split('\n')
    .slice(2)
    .filter((l) => l !== '');
  const keys = Object.keys(ConfigSchema.properties);
  t.equal(rows.length, keys.length, 'a row for each key of the schema');
  for (const line of rows) t.match(line, /^\| `PODMORTEM_API_[A-Z0-9_]+` \| .+ \| .+ \|$/);
  t.match(rows.join('\n'), '`PODMORTEM_API_STORAGE_ROOT`', 'named as the environment spells it');
});

t.test('trustProxy takes addresses and CIDRs, and names a bad entry', async (t) => {
  t.same(readConfig({ PODMORTEM_API_TRUST_PROXY: '10.0.0.1,10.1.0.0/16,fd00::/8' }).trustProxy, [
    '10.0.0.1',
    '10.1.0.0/16',
    'fd00::/8',
  ]);
  t.same(readConfig({}).trustProxy, [], 'none by default');
  for (const bad of ['ingress', '10.0.0.0/33', '10.0.0.1/8/1', 'fd00::/129'])
    t.throws(
      () => readConfig({ PODMORTEM_API_TRUST_PROXY: bad }),
      { message: /PODMORTEM_API_TRUST_PROXY/ },
      `${bad} refused, naming the variable`,
    );
});
