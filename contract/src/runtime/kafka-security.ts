import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Type } from '@sinclair/typebox';
import type { SASLOptions } from 'kafkajs';
import { configRule, envName } from './config.ts';
import { ConfigError, messageOf, PodmortemError } from './errors.ts';

// How every service that talks to Kafka secures the connection: TLS (a CA of its own, a client
// certificate for mutual TLS) and SASL (PLAIN or SCRAM). The settings below are spread into each
// service's schema, so PODMORTEM_<SERVICE>_KAFKA_TLS and the rest have the same names everywhere.
// Secrets come from files (mounted Kubernetes Secrets), read once at start; a file that cannot be
// read is a ConfigError naming its variable, before anything connects.

export const KAFKA_SASL_MECHANISMS = ['none', 'plain', 'scram-sha-256', 'scram-sha-512'] as const;
export type KafkaSaslMechanism = (typeof KAFKA_SASL_MECHANISMS)[number];

/** The Kafka security settings of a service's configuration schema. */
export function kafkaSecuritySettings() {
  return {
    kafkaTls: Type.Boolean({
      default: false,
      description: 'Kafka: connect over TLS (the brokers’ SSL or SASL_SSL listener)',
    }),
    kafkaTlsCaFile: Type.String({
      default: '',
      description:
        "Kafka TLS: PEM file of the CA(s) the brokers' certificates are checked against; empty: Node's CAs",
    }),
    kafkaTlsCertFile: Type.String({
      default: '',
      description:
        'Kafka TLS: PEM file of the client certificate (mutual TLS); set together with the key file',
    }),
    kafkaTlsKeyFile: Type.String({
      default: '',
      description: "Kafka TLS: PEM file of the client certificate's private key (a mounted Secret)",
    }),
    kafkaTlsServerName: Type.String({
      default: '',
      description:
        "Kafka TLS: the name every broker's certificate is checked against; empty: each broker's own host",
    }),
    kafkaSaslMechanism: Type.Union(
      KAFKA_SASL_MECHANISMS.map((m) => Type.Literal(m)),
      {
        default: 'none',
        description: 'Kafka SASL: none, plain (only over TLS), scram-sha-256 or scram-sha-512',
      },
    ),
    kafkaSaslUsername: Type.String({
      default: '',
      description: 'Kafka SASL: the user name (or the _KAFKA_SASL_USERNAME_FILE setting)',
    }),
    kafkaSaslUsernameFile: Type.String({
      default: '',
      description:
        'Kafka SASL: file holding the user name (a mounted Secret), instead of the _KAFKA_SASL_USERNAME setting',
    }),
    kafkaSaslPasswordFile: Type.String({
      default: '',
      description: 'Kafka SASL: file holding the password (a mounted Secret); required with a mechanism',
    }),
  };
}

export interface KafkaSecuritySettings {
  kafkaTls: boolean;
  kafkaTlsCaFile: string;
  kafkaTlsCertFile: string;
  kafkaTlsKeyFile: string;
  kafkaTlsServerName: string;
  kafkaSaslMechanism: KafkaSaslMechanism;
  kafkaSaslUsername: string;
  kafkaSaslUsernameFile: string;
  kafkaSaslPasswordFile: string;
}

/** What createKafka needs: the kafkajs options, and the variables to name when the broker refuses. */
export interface KafkaSecurity {
  ssl?: ConnectionOptions | true;
  sasl?: SASLOptions;
  /** The variables that hold the SASL credentials, named when the broker refuses them. */
  credentialVariables: string[];
}

/** A setting's file, read whole; unreadable or empty is a ConfigError naming the variable. */
export function readSettingFile(variable: string, path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(variable, `cannot read ${path}: ${messageOf(err)}`);
  }
  if (text.trim() === '') throw new ConfigError(variable, `${path} is empty`);
  return text;
}

/** A secret's file: one value, without the newline an editor or `echo` leaves at its end. */
export function readSecretFile(variable: string, path: string): string {
  return readSettingFile(variable, path).replace(/\r?\n$/, '');
}

/**
 * Checks the combinations of the settings and reads every file they name, so that a bad one is a
 * ConfigError naming its variable at load time; returns what createKafka takes.
 */
export function kafkaSecurity(settings: KafkaSecuritySettings, prefix: string): KafkaSecurity {
  const must = configRule(prefix);
  const name = (key: keyof KafkaSecuritySettings) => envName(prefix, key);
  const s = settings;
  if (!s.kafkaTls) {
    for (const key of [
      'kafkaTlsCaFile',
      'kafkaTlsCertFile',
      'kafkaTlsKeyFile',
      'kafkaTlsServerName',
    ] as const)
      must(s[key] === '', key, `is set but ${name('kafkaTls')} is false`);
  }
  must(
    (s.kafkaTlsCertFile === '') === (s.kafkaTlsKeyFile === ''),
    s.kafkaTlsCertFile === '' ? 'kafkaTlsCertFile' : 'kafkaTlsKeyFile',
    'the client certificate and its key are set together',
  );
  if (s.kafkaSaslMechanism === 'none') {
    for (const key of ['kafkaSaslUsername', 'kafkaSaslUsernameFile', 'kafkaSaslPasswordFile'] as const)
      must(s[key] === '', key, `is set but ${name('kafkaSaslMechanism')} is none`);
  } else {
    must(
      (s.kafkaSaslUsername === '') !== (s.kafkaSaslUsernameFile === ''),
      'kafkaSaslUsername',
      `one of it and ${name('kafkaSaslUsernameFile')} is required with SASL ${s.kafkaSaslMechanism}`,
    );
    must(
      s.kafkaSaslPasswordFile !== '',
      'kafkaSaslPasswordFile',
      `is required with SASL ${s.kafkaSaslMechanism}`,
    );
    // PLAIN sends the password itself; SCRAM only proves it knows it.
    must(
      s.kafkaSaslMechanism !== 'plain' || s.kafkaTls,
      'kafkaSaslMechanism',
      `plain sends the password in the clear: it needs ${name('kafkaTls')}=true`,
    );
  }

  const security: KafkaSecurity = { credentialVariables: [] };
  if (s.kafkaTls) {
    const ssl: ConnectionOptions = {};
    if (s.kafkaTlsCaFile !== '') ssl.ca = readSettingFile(name('kafkaTlsCaFile'), s.kafkaTlsCaFile);
    if (s.kafkaTlsCertFile !== '') {
      ssl.cert = readSettingFile(name('kafkaTlsCertFile'), s.kafkaTlsCertFile);
      ssl.key = readSettingFile(name('kafkaTlsKeyFile'), s.kafkaTlsKeyFile);
    }
    if (s.kafkaTlsServerName !== '') ssl.servername = s.kafkaTlsServerName;
    security.ssl = Object.keys(ssl).length === 0 ? true : ssl;
  }
  if (s.kafkaSaslMechanism !== 'none') {
    const usernameVariable = name(s.kafkaSaslUsername === '' ? 'kafkaSaslUsernameFile' : 'kafkaSaslUsername');
    const username =
      s.kafkaSaslUsername === ''
        ? readSecretFile(usernameVariable, s.kafkaSaslUsernameFile)
        : s.kafkaSaslUsername;
    const password = readSecretFile(name('kafkaSaslPasswordFile'), s.kafkaSaslPasswordFile);
    security.sasl = { mechanism: s.kafkaSaslMechanism, username, password };
    security.credentialVariables = [usernameVariable, name('kafkaSaslPasswordFile')];
  }
  return security;
}

/** The broker refused the SASL credentials: no retry helps, the configuration must change. */
export class KafkaAuthError extends PodmortemError {
  constructor(variables: string[], cause: unknown) {
    super(
      'PM_ERR_KAFKA_AUTH',
      `Kafka refused the SASL credentials (${variables.join(', ')}): ${messageOf(cause)}`,
      { retriable: false, cause },
    );
    this.name = 'KafkaAuthError';
  }
}

/** kafkajs' SASL failure, wherever kafkajs wrapped it (a cause, or its originalError). */
export function isSaslAuthenticationError(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; depth++) {
    if (e.name === 'KafkaJSSASLAuthenticationError') return true;
    const wrapped = e as Error & { originalError?: unknown };
    e = wrapped.originalError ?? wrapped.cause;
  }
  return false;
}

/** The error as a KafkaAuthError naming the credentials' variables when it is a SASL refusal. */
export function namedKafkaAuthError(err: unknown, variables: string[]): unknown {
  if (variables.length === 0 || err instanceof KafkaAuthError || !isSaslAuthenticationError(err)) return err;
  return new KafkaAuthError(variables, err);
}
