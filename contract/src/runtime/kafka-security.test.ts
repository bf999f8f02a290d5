import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import t, { type Test } from 'tap';
import { loadConfig } from './config.ts';
import {
  elasticsearchConnection,
  elasticsearchSettings,
  isElasticsearchUnauthorized,
} from './elasticsearch-client.ts';
import { ConfigError } from './errors.ts';
import {
  KafkaAuthError,
  kafkaSecurity,
  kafkaSecuritySettings,
  namedKafkaAuthError,
} from './kafka-security.ts';

// The combinations of the Kafka and Elasticsearch security settings, checked at load time: each
// refusal a ConfigError naming the variable, each file read (a secret without its final newline).

const dir = mkdtempSync(join(tmpdir(), 'pm-security-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
const ca = file('ca.crt', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
const password = file('password', 's3cret\n');
const empty = file('empty', '\n');
const missing = join(dir, 'missing');

const P = 'PODMORTEM_X_';
const kafkaSchema = Type.Object(kafkaSecuritySettings());
const kafka = (env: Record<string, string>) => kafkaSecurity(loadConfig(kafkaSchema, P, env), P);
const esSchema = Type.Object({ elasticsearchUrl: Type.String(), ...elasticsearchSettings() });
const es = (env: Record<string, string>) => elasticsearchConnection(loadConfig(esSchema, P, env), P);

function refuses(t: Test, fn: () => unknown, variable: string, message: RegExp) {
  try {
    fn();
    t.fail(`expected a ConfigError naming ${variable}`);
  } catch (err) {
    t.ok(err instanceof ConfigError, 'a ConfigError');
    t.equal((err as ConfigError).key, variable);
    t.match((err as Error).message, message);
  }
}

t.test('Kafka: plaintext by default, TLS with a CA, SCRAM with files', async (t) => {
  t.same(kafka({}), { credentialVariables: [] });
  t.same(kafka({ PODMORTEM_X_KAFKA_TLS: 'true' }), { ssl: true, credentialVariables: [] }, "Node's CAs");
  const secured = kafka({
    PODMORTEM_X_KAFKA_TLS: 'true',
    PODMORTEM_X_KAFKA_TLS_CA_FILE: ca,
    PODMORTEM_X_KAFKA_TLS_SERVER_NAME: 'kafka.example',
    PODMORTEM_X_KAFKA_SASL_MECHANISM: 'scram-sha-512',
    PODMORTEM_X_KAFKA_SASL_USERNAME_FILE: file('user', 'indexer\n'),
    PODMORTEM_X_KAFKA_SASL_PASSWORD_FILE: password,
  });
  t.match(secured.ssl, { servername: 'kafka.example' });
  t.match(secured.ssl, { ca: /BEGIN CERTIFICATE/ });
  t.same(secured.sasl, { mechanism: 'scram-sha-512', username: 'indexer', password: 's3cret' });
  t.same(secured.credentialVariables, [
    'PODMORTEM_X_KAFKA_SASL_USERNAME_FILE',
    'PODMORTEM_X_KAFKA_SASL_PASSWORD_FILE',
  ]);
  const mtls = kafka({
    PODMORTEM_X_KAFKA_TLS: 'true',
    PODMORTEM_X_KAFKA_TLS_CERT_FILE: ca,
    PODMORTEM_X_KAFKA_TLS_KEY_FILE: password,
  });
  t.match(mtls.ssl, { cert: /BEGIN CERTIFICATE/, key: 's3cret\n' });
});

t.test('Kafka: each bad combination or file names its variable', async (t) => {
  refuses(
    t,
    () => kafka({ PODMORTEM_X_KAFKA_TLS_CA_FILE: ca }),
    `${P}KAFKA_TLS_CA_FILE`,
    /KAFKA_TLS is false/,
  );
  refuses(
    t,
    () => kafka({ PODMORTEM_X_KAFKA_TLS: 'true', PODMORTEM_X_KAFKA_TLS_CERT_FILE: ca }),
    `${P}KAFKA_TLS_KEY_FILE`,
    /set together/,
  );
  refuses(t, () => kafka({ PODMORTEM_X_KAFKA_SASL_USERNAME: 'u' }), `${P}KAFKA_SASL_USERNAME`, /is none/);
  refuses(
    t,
    () =>
      kafka({
        PODMORTEM_X_KAFKA_SASL_MECHANISM: 'scram-sha-256',
        PODMORTEM_X_KAFKA_SASL_PASSWORD_FILE: password,
      }),
    `${P}KAFKA_SASL_USERNAME`,
    /is required with SASL scram-sha-256/,
  );
  refuses(
    t,
    () => kafka({ PODMORTEM_X_KAFKA_SASL_MECHANISM: 'scram-sha-256', PODMORTEM_X_KAFKA_SASL_USERNAME: 'u' }),
    `${P}KAFKA_SASL_PASSWORD_FILE`,
    /is required/,
  );
  refuses(
    t,
    () =>
      kafka({
        PODMORTEM_X_KAFKA_SASL_MECHANISM: 'plain',
        PODMORTEM_X_KAFKA_SASL_USERNAME: 'u',
        PODMORTEM_X_KAFKA_SASL_PASSWORD_FILE: password,
      }),
    `${P}KAFKA_SASL_MECHANISM`,
    /in the clear/,
  );
  refuses(
    t,
    () => kafka({ PODMORTEM_X_KAFKA_TLS: 'true', PODMORTEM_X_KAFKA_TLS_CA_FILE: missing }),
    `${P}KAFKA_TLS_CA_FILE`,
    /cannot read/,
  );
  refuses(
    t,
    () =>
      kafka({
        PODMORTEM_X_KAFKA_SASL_MECHANISM: 'scram-sha-512',
        PODMORTEM_X_KAFKA_SASL_USERNAME: 'u',
        PODMORTEM_X_KAFKA_SASL_PASSWORD_FILE: empty,
      }),
    `${P}KAFKA_SASL_PASSWORD_FILE`,
    /is empty/,
  );
  refuses(t, () => kafka({ PODMORTEM_X_KAFKA_SASL_MECHANISM: 'gssapi' }), `${P}KAFKA_SASL_MECHANISM`, /./);
});

t.test(
  'a SASL refusal, however kafkajs wrapped it, becomes a KafkaAuthError naming the variables',
  async (t) => {
    const sasl = Object.assign(new Error('SASL SCRAM SHA512 authentication failed'), {
      name: 'KafkaJSSASLAuthenticationError',
    });
    const wrapped = Object.assign(new Error('retries exhausted'), { originalError: sasl });
    const named = namedKafkaAuthError(wrapped, ['A_USERNAME', 'A_PASSWORD_FILE']);
    t.ok(named instanceof KafkaAuthError);
    t.match(
      (named as Error).message,
      /^Kafka refused the SASL credentials \(A_USERNAME, A_PASSWORD_FILE\): /,
    );
    t.equal((named as KafkaAuthError).retriable, false);
    const other = new Error('ECONNREFUSED');
    t.equal(namedKafkaAuthError(other, ['A']), other, 'other errors pass through');
    t.equal(namedKafkaAuthError(sasl, []), sasl, 'nothing to name without SASL settings');
  },
);

t.test('Elasticsearch: CA for https, basic or API key, never credentials over http', async (t) => {
  t.same(es({ PODMORTEM_X_ELASTICSEARCH_URL: 'http://es:9200' }), {
    node: 'http://es:9200',
    credentialVariables: [],
  });
  const basic = es({
    PODMORTEM_X_ELASTICSEARCH_URL: 'https://es:9200',
    PODMORTEM_X_ELASTICSEARCH_CA_FILE: ca,
    PODMORTEM_X_ELASTICSEARCH_USERNAME: 'indexer',
    PODMORTEM_X_ELASTICSEARCH_PASSWORD_FILE: password,
  });
  t.same(basic.auth, { username: 'indexer', password: 's3cret' });
  t.match(basic.tls, { ca: /BEGIN CERTIFICATE/ });
  t.same(basic.credentialVariables, [`${P}ELASTICSEARCH_USERNAME`, `${P}ELASTICSEARCH_PASSWORD_FILE`]);
  const key = es({
    PODMORTEM_X_ELASTICSEARCH_URL: 'https://es:9200',
    PODMORTEM_X_ELASTICSEARCH_API_KEY_FILE: password,
  });
  t.same(key.auth, { apiKey: 's3cret' });
  t.same(key.credentialVariables, [`${P}ELASTICSEARCH_API_KEY_FILE`]);

  refuses(
    t,
    () => es({ PODMORTEM_X_ELASTICSEARCH_URL: 'http://es:9200', PODMORTEM_X_ELASTICSEARCH_CA_FILE: ca }),
    `${P}ELASTICSEARCH_CA_FILE`,
    /not an https URL/,
  );
  refuses(
    t,
    () => es({ PODMORTEM_X_ELASTICSEARCH_URL: 'https://es:9200', PODMORTEM_X_ELASTICSEARCH_USERNAME: 'u' }),
    `${P}ELASTICSEARCH_PASSWORD_FILE`,
    /set together/,
  );
  refuses(
    t,
    () =>
      es({
        PODMORTEM_X_ELASTICSEARCH_URL: 'https://es:9200',
        PODMORTEM_X_ELASTICSEARCH_USERNAME: 'u',
        PODMORTEM_X_ELASTICSEARCH_PASSWORD_FILE: password,
        PODMORTEM_X_ELASTICSEARCH_API_KEY_FILE: password,
      }),
    `${P}ELASTICSEARCH_API_KEY_FILE`,
    /one way to authenticate/,
  );
  refuses(
    t,
    () =>
      es({
        PODMORTEM_X_ELASTICSEARCH_URL: 'http://es:9200',
        PODMORTEM_X_ELASTICSEARCH_API_KEY_FILE: password,
      }),
    `${P}ELASTICSEARCH_URL`,
    /in the clear/,
  );
  refuses(
    t,
    () =>
      es({ PODMORTEM_X_ELASTICSEARCH_URL: 'https://es:9200', PODMORTEM_X_ELASTICSEARCH_CA_FILE: missing }),
    `${P}ELASTICSEARCH_CA_FILE`,
    /cannot read/,
  );
});

t.test('a 401 of the Elasticsearch client is told from other answers', async (t) => {
  const answer = (statusCode: number) =>
    Object.assign(new Error('x'), { name: 'ResponseError', meta: { statusCode } });
  t.equal(isElasticsearchUnauthorized(answer(401)), true);
  t.equal(isElasticsearchUnauthorized(answer(403)), false);
  t.equal(isElasticsearchUnauthorized(new Error('ECONNREFUSED')), false);
});
