import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// Where the local stack listens: deploy/local/stack.env, overridden by the environment, exactly
// as the stack scripts read it. Every integration test takes its connection settings from here.

export const repoDir = fileURLToPath(new URL('../..', import.meta.url));

function stackSetting(key: string): string {
  const fromEnv = process.env[key];
  if (fromEnv) return fromEnv;
  const file = readFileSync(new URL('../../deploy/local/stack.env', import.meta.url), 'utf8');
  for (const line of file.split('\n')) {
    const [k, ...rest] = line.split('=');
    if (k === key) return rest.join('=');
  }
  throw new Error(`deploy/local/stack.env has no ${key}`);
}

const host = stackSetting('PODMORTEM_STACK_HOST');

export const stack = {
  host,
  kafkaBrokers: [`${host}:${stackSetting('PODMORTEM_KAFKA_PORT')}`],
  elasticsearchUrl: `http://${host}:${stackSetting('PODMORTEM_ES_PORT')}`,
  prometheusUrl: `http://${host}:${stackSetting('PODMORTEM_PROMETHEUS_PORT')}`,
  /** SeaweedFS's S3 endpoint and the one access key of the local stack (deploy/local/seaweedfs.sh). */
  s3: {
    url: `http://${host}:${stackSetting('PODMORTEM_S3_PORT')}`,
    region: stackSetting('PODMORTEM_S3_REGION'),
    accessKeyId: stackSetting('PODMORTEM_S3_ACCESS_KEY'),
    secretAccessKey: stackSetting('PODMORTEM_S3_SECRET_KEY'),
  },
  stackDir: process.env.PODMORTEM_STACK_DIR ?? `${repoDir}.stack`,
};

/** A name no other test run uses, for topics, groups and indices. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}
