import t from 'tap';
import { Type } from '@sinclair/typebox';
import { checkConsumerGroupTimings, configTable, envName, loadConfig } from './config.ts';
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
