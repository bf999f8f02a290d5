import t from 'tap';
import { Type } from '@sinclair/typebox';
import {
  checkConsumerGroupTimings,
  closestName,
  configTable,
  envName,
  loadConfig,
  settingsText,
  unknownSettings,
  urlSetting,
} from './config.ts';
import { ConfigError } from './errors.ts';

const schema = Type.Object({
  listenPort: Type.Integer({ minimum: 1, maximum: 65535, default: 8080, description: 'HTTP port' }),
  kafkaBrokers: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, default: ['127.0.0.1:9092'] }),
  manageCorePattern: Type.Boolean({ default: true }),
  nodeName: Type.String({ minLength: 1, description: 'Node name' }),
});

t.test('variables are named PREFIX_SNAKE_CASE', async (t) => {
  t.equal(envName('PODMORTEM_X_', 'kafkaBrokers'), 'PODMORTEM_X_KAFKA_BROKERS');
});

t.test('defaults fill what the environment leaves out, values are coerced', async (t) => {
  t.same(loadConfig(schema, 'P_', { P_NODE_NAME: 'n1' }), {
    listenPort: 8080,
    kafkaBrokers: ['127.0.0.1:9092'],
    manageCorePattern: true,
    nodeName: 'n1',
  });
  t.same(
    loadConfig(schema, 'P_', {
      P_NODE_NAME: 'n1',
      P_LISTEN_PORT: '9000',
      P_KAFKA_BROKERS: 'a:1, b:2',
      P_MANAGE_CORE_PATTERN: 'false',
    }),
    { listenPort: 9000, kafkaBrokers: ['a:1', 'b:2'], manageCorePattern: false, nodeName: 'n1' },
  );
});

t.test('a bad value fails naming the variable', async (t) => {
  const cases: [Record<string, string>, string, RegExp][] = [
    [{ P_NODE_NAME: 'n', P_LISTEN_PORT: 'eighty' }, 'P_LISTEN_PORT', /must be a number/],
    [{ P_NODE_NAME: 'n', P_LISTEN_PORT: '70000' }, 'P_LISTEN_PORT', /<= 65535/],
    [{ P_NODE_NAME: 'n', P_MANAGE_CORE_PATTERN: 'maybe' }, 'P_MANAGE_CORE_PATTERN', /true or false/],
    [{ P_NODE_NAME: 'n', P_LISTEN_PORT: '8.5' }, 'P_LISTEN_PORT', /must be integer/],
    [{ P_NODE_NAME: 'n', P_KAFKA_BROKERS: ' , ' }, 'P_KAFKA_BROKERS', /fewer than 1/],
    [{}, 'P_NODE_NAME', /required/],
  ];
  for (const [env, key, message] of cases) {
    const err = (() => {
      try {
        loadConfig(schema, 'P_', env);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    t.type(err, ConfigError, key);
    t.equal((err as ConfigError).key, key);
    t.match((err as ConfigError).message, message, key);
  }
});

t.test('the README table lists every variable with its default', async (t) => {
  const table = configTable(schema, 'P_');
  t.match(table, '| `P_LISTEN_PORT` | `8080` | HTTP port |');
  t.match(table, '| `P_KAFKA_BROKERS` | `127.0.0.1:9092` |');
  t.match(table, '| `P_NODE_NAME` | (required) | Node name |');
});

t.test(
  'consumer-group timings: heartbeats within a third of the session, backoff below its ceiling',
  async (t) => {
    const good = { heartbeatIntervalMs: 3000, sessionTimeoutMs: 9000, retryInitialMs: 200, retryMaxMs: 200 };
    t.doesNotThrow(() => checkConsumerGroupTimings(good, 'PM_X_'));
    t.throws(() => checkConsumerGroupTimings({ ...good, heartbeatIntervalMs: 3001 }, 'PM_X_'), {
      name: 'ConfigError',
      message: 'PM_X_HEARTBEAT_INTERVAL_MS: must be at most a third of PM_X_SESSION_TIMEOUT_MS (9000)',
    });
    t.throws(() => checkConsumerGroupTimings({ ...good, retryInitialMs: 201 }, 'PM_X_'), {
      name: 'ConfigError',
      message: 'PM_X_RETRY_INITIAL_MS: must not exceed PM_X_RETRY_MAX_MS (200)',
    });
  },
);

t.test('the closest name is the one fewest edits away, the first of equals', async (t) => {
  const names = ['P_KAFKA_BROKERS', 'P_KAFKA_TOPIC', 'P_LISTEN_PORT'];
  t.equal(closestName('P_KAFKA_BROKER', names), 'P_KAFKA_BROKERS', 'a letter missing');
  t.equal(closestName('P_KAFKA_BROKERSS', names), 'P_KAFKA_BROKERS', 'a letter too many');
  t.equal(closestName('P_LISTEN_PROT', names), 'P_LISTEN_PORT', 'two letters swapped');
  t.equal(closestName('P_KAFKA_TOPICS', names), 'P_KAFKA_TOPIC');
  t.equal(closestName('P_X', ['P_AB', 'P_CD']), 'P_AB', 'equals: the first');
  t.equal(closestName('P_X', []), undefined);
});

t.test("unknown variables: the prefix's only, sorted, each with its closest setting", async (t) => {
  t.same(
    unknownSettings(schema, 'P_', {
      P_NODE_NAME: 'n',
      P_NODENAME: 'n',
      P_KAFKA_BROKER: 'k:1',
      Q_KAFKA_BROKER: 'k:1',
      PATH: '/bin',
    }),
    [
      { variable: 'P_KAFKA_BROKER', closest: 'P_KAFKA_BROKERS' },
      { variable: 'P_NODENAME', closest: 'P_NODE_NAME' },
    ],
  );
  t.same(unknownSettings(schema, 'P_', { P_NODE_NAME: 'n' }), []);
});

const choices = Type.Object({
  backend: Type.Union([Type.Literal('fs'), Type.Literal('s3')], { default: 'fs', description: 'Backend' }),
  docs: Type.Boolean({ default: true }),
  esUrl: urlSetting('http://es:9200', 'Elasticsearch URL'),
  grafanaUrl: urlSetting('', 'Grafana URL; empty = none'),
});

function configErrorOf(run: () => unknown): string {
  try {
    run();
  } catch (e) {
    if (e instanceof ConfigError) return e.message;
    throw e;
  }
  throw new Error('no ConfigError');
}

t.test('a union of literals and a boolean: the message lists the allowed values', async (t) => {
  t.equal(
    configErrorOf(() => loadConfig(choices, 'P_', { P_BACKEND: 'nfs' })),
    'P_BACKEND: must be one of fs, s3, got "nfs"',
  );
  t.equal(
    configErrorOf(() => loadConfig(choices, 'P_', { P_DOCS: 'maybe' })),
    'P_DOCS: must be true or false (or 1 or 0), got "maybe"',
  );
  t.equal(
    configErrorOf(() => loadConfig(choices, 'P_', {}, { backend: 'nfs' as 'fs' })),
    'P_BACKEND: must be one of fs, s3',
    'an override is checked by the schema, with the same words',
  );
  t.equal(loadConfig(choices, 'P_', { P_BACKEND: 's3' }).backend, 's3');
  t.equal(
    configErrorOf(() => loadConfig(schema, 'P_', {})),
    'P_NODE_NAME: is required (it has no default)',
  );
});

t.test(
  'a URL setting must be an http(s) URL, or empty where its default is; the value is not repeated',
  async (t) => {
    for (const bad of ['not-a-url', '::', 'http://', 'ftp://es:21', 'es:9200', 'http://user:secret@', ' ']) {
      const message = configErrorOf(() => loadConfig(choices, 'P_', { P_ES_URL: bad }));
      t.equal(message, 'P_ES_URL: must be an http or https URL (http://host:port)', JSON.stringify(bad));
    }
    t.equal(
      configErrorOf(() => loadConfig(choices, 'P_', { P_ES_URL: '' })),
      'P_ES_URL: must be an http or https URL (http://host:port)',
      'empty where the default is not',
    );
    t.equal(
      configErrorOf(() => loadConfig(choices, 'P_', { P_GRAFANA_URL: 'grafana:3000' })),
      'P_GRAFANA_URL: must be an http or https URL (http://host:port), or empty',
    );
    const ok = loadConfig(choices, 'P_', {
      P_ES_URL: 'https://u:p@es.example:9243/prefix',
      P_GRAFANA_URL: '',
    });
    t.equal(ok.esUrl, 'https://u:p@es.example:9243/prefix');
    t.equal(ok.grafanaUrl, '');
    t.equal(
      loadConfig(choices, 'P_', { P_GRAFANA_URL: 'http://[::1]:3000/' }).grafanaUrl,
      'http://[::1]:3000/',
    );
  },
);

t.test(
  'the terminal rendering: each variable with its default as a shell word, the meaning wrapped below',
  async (t) => {
    const wide = Type.Object({
      query: Type.String({
        default: "sum(rate(x{a='b'}[5m]))",
        description:
          'A long description that has to be wrapped because it does not fit in the forty columns asked for',
      }),
      empty: Type.String({ default: '', description: 'Empty by default' }),
      backend: choices.properties.backend,
      brokers: schema.properties.kafkaBrokers,
      nodeName: schema.properties.nodeName,
    });
    t.equal(
      settingsText(wide, 'P_', 40),
      [
        "  P_QUERY='sum(rate(x{a='\\''b'\\''}[5m]))'",
        '      A long description that has to be',
        '      wrapped because it does not fit in',
        '      the forty columns asked for',
        "  P_EMPTY=''",
        '      Empty by default',
        '  P_BACKEND=fs',
        '      Backend (one of: fs, s3)',
        '  P_BROKERS=127.0.0.1:9092',
        '  P_NODE_NAME (required)',
        '      Node name',
      ].join('\n'),
    );
  },
);
