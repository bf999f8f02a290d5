import { Type } from '@sinclair/typebox';
import { configRule, envName } from './config.ts';
import { messageOf, PodmortemError } from './errors.ts';
import { readSecretFile, readSettingFile } from './kafka-security.ts';

// How the services that talk to Elasticsearch (the indexer, the query API) reach a secured
// cluster: https with a CA of its own, and basic credentials or an API key from files (mounted
// Kubernetes Secrets), read once at start. The client itself is each service's (the contract does
// not depend on @elastic/elasticsearch): it spreads elasticsearchClientOptions into its
// constructor and passes the client through namingElasticsearchRefusals.

/** The Elasticsearch security settings of a service's schema (its elasticsearchUrl stays its own). */
export function elasticsearchSettings() {
  return {
    elasticsearchCaFile: Type.String({
      default: '',
      description:
        "Elasticsearch: PEM file of the CA(s) an https URL's certificate is checked against; empty: Node's CAs",
    }),
    elasticsearchUsername: Type.String({
      default: '',
      description: 'Elasticsearch: user of basic authentication; set together with the password file',
    }),
    elasticsearchPasswordFile: Type.String({
      default: '',
      description: 'Elasticsearch: file holding the basic authentication password (a mounted Secret)',
    }),
    elasticsearchApiKeyFile: Type.String({
      default: '',
      description:
        'Elasticsearch: file holding an API key (the encoded id:key, a mounted Secret), instead of basic authentication',
    }),
  };
}

export interface ElasticsearchSettings {
  elasticsearchUrl: string;
  elasticsearchCaFile: string;
  elasticsearchUsername: string;
  elasticsearchPasswordFile: string;
  elasticsearchApiKeyFile: string;
}

/** What a service's client is built from (see elasticsearchClientOptions). */
export interface ElasticsearchConnection {
  node: string;
  tls?: { ca: string };
  auth?: { username: string; password: string } | { apiKey: string };
  /** The variables that hold the credentials, named when the cluster refuses them. */
  credentialVariables: string[];
}

/**
 * Checks the combinations of the settings and reads the files they name, so that a bad one is a
 * ConfigError naming its variable at load time.
 */
export function elasticsearchConnection(
  settings: ElasticsearchSettings,
  prefix: string,
): ElasticsearchConnection {
  const must = configRule(prefix);
  const name = (key: keyof ElasticsearchSettings) => envName(prefix, key);
  const s = settings;
  const https = s.elasticsearchUrl.startsWith('https://');
  must(
    s.elasticsearchCaFile === '' || https,
    'elasticsearchCaFile',
    `is set but ${name('elasticsearchUrl')} is not an https URL`,
  );
  must(
    (s.elasticsearchUsername === '') === (s.elasticsearchPasswordFile === ''),
    s.elasticsearchUsername === '' ? 'elasticsearchUsername' : 'elasticsearchPasswordFile',
    'the user and the password file are set together',
  );
  must(
    s.elasticsearchApiKeyFile === '' || s.elasticsearchUsername === '',
    'elasticsearchApiKeyFile',
    `is set together with ${name('elasticsearchUsername')}: one way to authenticate`,
  );
  // Basic credentials and an API key travel as they are: not over plain http.
  must(
    https || (s.elasticsearchUsername === '' && s.elasticsearchApiKeyFile === ''),
    'elasticsearchUrl',
    'must be an https URL when credentials are set (they would travel in the clear)',
  );

  const connection: ElasticsearchConnection = { node: s.elasticsearchUrl, credentialVariables: [] };
  if (s.elasticsearchCaFile !== '')
    connection.tls = { ca: readSettingFile(name('elasticsearchCaFile'), s.elasticsearchCaFile) };
  if (s.elasticsearchUsername !== '') {
    const password = readSecretFile(name('elasticsearchPasswordFile'), s.elasticsearchPasswordFile);
    connection.auth = { username: s.elasticsearchUsername, password };
    connection.credentialVariables = [name('elasticsearchUsername'), name('elasticsearchPasswordFile')];
  } else if (s.elasticsearchApiKeyFile !== '') {
    connection.auth = { apiKey: readSecretFile(name('elasticsearchApiKeyFile'), s.elasticsearchApiKeyFile) };
    connection.credentialVariables = [name('elasticsearchApiKeyFile')];
  }
  return connection;
}

/** The client options of a connection: node, tls and auth, to spread beside the service's own. */
export function elasticsearchClientOptions(connection: ElasticsearchConnection): {
  node: string;
  tls?: { ca: string };
  auth?: { username: string; password: string } | { apiKey: string };
} {
  return {
    node: connection.node,
    ...(connection.tls ? { tls: connection.tls } : {}),
    ...(connection.auth ? { auth: connection.auth } : {}),
  };
}

/** The cluster (or the proxy in front of it) refused the credentials: no retry helps. */
export class ElasticsearchAuthError extends PodmortemError {
  constructor(variables: string[], cause: unknown) {
    const which = variables.length === 0 ? 'none are set' : variables.join(', ');
    super(
      'PM_ERR_ELASTICSEARCH_AUTH',
      `Elasticsearch refused the credentials (${which}): ${messageOf(cause)}`,
      {
        retriable: false,
        cause,
      },
    );
    this.name = 'ElasticsearchAuthError';
  }
}

/** Whether an error of the Elasticsearch client is a 401 answer. */
export function isElasticsearchUnauthorized(err: unknown): boolean {
  if (!(err instanceof Error) || err.name !== 'ResponseError') return false;
  const meta = (err as Error & { meta?: { statusCode?: unknown } }).meta;
  return meta?.statusCode === 401;
}

/**
 * The client, its every request turning a 401 into an ElasticsearchAuthError that names the
 * credentials' variables (the client's own error names neither, and the answer is the same on
 * every retry). Typed by what it touches, so the contract needs no Elasticsearch client.
 */
export function namingElasticsearchRefusals<C extends { transport: object }>(
  client: C,
  connection: Pick<ElasticsearchConnection, 'credentialVariables'>,
): C {
  // The transport's request is overloaded; the wrapper passes every form through unchanged.
  const transport = client.transport as { request: (...args: unknown[]) => Promise<unknown> };
  const request = transport.request.bind(transport);
  transport.request = (...args: unknown[]) =>
    request(...args).catch((err: unknown) => {
      throw isElasticsearchUnauthorized(err)
        ? new ElasticsearchAuthError(connection.credentialVariables, err)
        : err;
    });
  return client;
}
