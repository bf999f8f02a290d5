import { Type } from '@sinclair/typebox';
import { configRule } from '../runtime/config.ts';
import { keySegments } from '../storage-layout.ts';
import { FsStore } from './fs-store.ts';
import { S3_DEFAULTS, S3_MIN_PART_BYTES, S3Store, type S3StoreParams } from './s3-store.ts';
import type { Store } from './store.ts';

// The one place a service turns its configuration into its store: the settings below are spread
// into each service's schema beside its storageRoot, so PODMORTEM_<SERVICE>_STORAGE_BACKEND=s3
// moves the collector, the query API and the analyzer alike, with the same variable names.

/** The store settings of a service's configuration schema (its storageRoot stays its own). */
export function storeSettings() {
  return {
    storageBackend: Type.Union([Type.Literal('fs'), Type.Literal('s3')], {
      default: 'fs',
      description:
        'Where dumps and events are kept: fs (the storage root, an NFS volume) or s3 (an S3-compatible bucket)',
    }),
    storageS3Endpoint: Type.String({
      default: '',
      description: "S3: the server's URL (http://host:port); empty: AWS S3's endpoint for the region",
    }),
    storageS3Region: Type.String({ minLength: 1, default: S3_DEFAULTS.region, description: 'S3: region' }),
    storageS3Bucket: Type.String({
      default: '',
      description: 'S3: bucket (required with the s3 backend; it must exist)',
    }),
    storageS3Prefix: Type.String({
      default: '',
      description:
        "S3: prefix of every key ('/'-separated), so installations can share a bucket; empty: none",
    }),
    storageS3PathStyle: Type.Boolean({
      default: false,
      description:
        'S3: path-style requests (endpoint/bucket/key), as MinIO, SeaweedFS and Ceph RGW without wildcard DNS need; false: virtual-host (bucket.endpoint/key)',
    }),
    storageS3AccessKeyIdFile: Type.String({
      default: '',
      description:
        "S3: file holding the access key id (a mounted Secret, re-read as it changes); empty: the SDK's default chain (AWS_ACCESS_KEY_ID, web identity, …)",
    }),
    storageS3SecretAccessKeyFile: Type.String({
      default: '',
      description: 'S3: file holding the secret access key; set together with the key id file',
    }),
    storageS3TimeoutMs: Type.Integer({
      minimum: 1,
      default: S3_DEFAULTS.timeoutMs,
      description: 'S3: longest a request may take to connect or stay silent (and a metadata request in all)',
    }),
    storageS3BudgetBytes: Type.Integer({
      minimum: 0,
      default: 0,
      description:
        'S3: bytes the bucket (below the prefix) may hold, for the free-space floor; 0: no bound (free space is not checked)',
    }),
    storageS3PartSizeBytes: Type.Integer({
      minimum: S3_MIN_PART_BYTES,
      default: S3_DEFAULTS.partSizeBytes,
      description: 'S3: part size of multipart uploads; memory per upload is about (queue size + 1) parts',
    }),
    storageS3QueueSize: Type.Integer({
      minimum: 1,
      default: S3_DEFAULTS.queueSize,
      description:
        'S3: parts of a multipart upload sent at once; each costs a part of memory (about (queue size + 1) × part size per upload) and may speed uploads to a distant server',
    }),
    storageS3Checksum: Type.Union([Type.Literal('SHA256'), Type.Literal('off')], {
      default: S3_DEFAULTS.checksum,
      description:
        'S3: SHA256 sends each upload’s (and part’s) SHA-256 for the server to check; off sends none',
    }),
  };
}

export interface StoreSettings {
  storageRoot: string;
  storageBackend: 'fs' | 's3';
  storageS3Endpoint: string;
  storageS3Region: string;
  storageS3Bucket: string;
  storageS3Prefix: string;
  storageS3PathStyle: boolean;
  storageS3AccessKeyIdFile: string;
  storageS3SecretAccessKeyFile: string;
  storageS3TimeoutMs: number;
  storageS3BudgetBytes: number;
  storageS3PartSizeBytes: number;
  storageS3QueueSize: number;
  storageS3Checksum: 'SHA256' | 'off';
}

/**
 * What storeSettings() must satisfy beyond each value's own type, for a service's loadConfig to
 * call with its prefix: a ConfigError naming the variable.
 */
export function checkStoreSettings(settings: StoreSettings, prefix: string): void {
  if (settings.storageBackend !== 's3') return;
  const must = configRule(prefix);
  must(settings.storageS3Bucket !== '', 'storageS3Bucket', 'is required when the storage backend is s3');
  must(
    (settings.storageS3AccessKeyIdFile === '') === (settings.storageS3SecretAccessKeyFile === ''),
    settings.storageS3AccessKeyIdFile === '' ? 'storageS3AccessKeyIdFile' : 'storageS3SecretAccessKeyFile',
    'the key id file and the secret file are set together',
  );
  if (settings.storageS3Endpoint !== '')
    must(
      URL.canParse(settings.storageS3Endpoint) &&
        /^https?:$/.test(new URL(settings.storageS3Endpoint).protocol),
      'storageS3Endpoint',
      'must be an http or https URL (http://host:port)',
    );
  must(
    settings.storageS3Prefix === '' || !('refused' in keySegments(settings.storageS3Prefix)),
    'storageS3Prefix',
    "must be '/'-separated segments of letters, digits, '.', '_' and '-'",
  );
}

function s3Params(settings: StoreSettings): S3StoreParams {
  return {
    bucket: settings.storageS3Bucket,
    region: settings.storageS3Region,
    ...(settings.storageS3Endpoint === '' ? {} : { endpoint: settings.storageS3Endpoint }),
    ...(settings.storageS3Prefix === '' ? {} : { prefix: settings.storageS3Prefix }),
    pathStyle: settings.storageS3PathStyle,
    ...(settings.storageS3AccessKeyIdFile === ''
      ? {}
      : {
          credentials: {
            accessKeyIdFile: settings.storageS3AccessKeyIdFile,
            secretAccessKeyFile: settings.storageS3SecretAccessKeyFile,
          },
        }),
    timeoutMs: settings.storageS3TimeoutMs,
    ...(settings.storageS3BudgetBytes === 0 ? {} : { budgetBytes: settings.storageS3BudgetBytes }),
    partSizeBytes: settings.storageS3PartSizeBytes,
    queueSize: settings.storageS3QueueSize,
    checksum: settings.storageS3Checksum,
  };
}

/** The store a service's configuration names. */
export function storeFrom(settings: StoreSettings): Store {
  return settings.storageBackend === 's3'
    ? new S3Store(s3Params(settings))
    : new FsStore({ root: settings.storageRoot });
}
