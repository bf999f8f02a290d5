import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { envName } from '@podmortem/contract/runtime';
import { S3Store, type S3StoreParams, type StoreSettings } from '@podmortem/contract/store';
import type { Test } from 'tap';
import { stack, uniqueName } from './stack.ts';

// A bucket of its own on the local stack's S3 server (SeaweedFS, deploy/local/seaweedfs.sh) for
// one test, removed with everything in it when the test ends; and the settings that reach it:
// S3Store parameters, a service's configuration overrides, or its PODMORTEM_<SERVICE>_* variables.

/** The store settings of a service's configuration (storeSettings() keys) that are not defaults. */
export type S3Settings = Pick<
  StoreSettings,
  | 'storageBackend'
  | 'storageS3Endpoint'
  | 'storageS3Region'
  | 'storageS3Bucket'
  | 'storageS3Prefix'
  | 'storageS3PathStyle'
  | 'storageS3AccessKeyIdFile'
  | 'storageS3SecretAccessKeyFile'
>;

/** An S3 client of the local stack's server (or a private one at `endpoint`), with its one access key. */
export function stackS3Client(endpoint = stack.s3.url): S3Client {
  return new S3Client({
    endpoint,
    region: stack.s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: stack.s3.accessKeyId, secretAccessKey: stack.s3.secretAccessKey },
  });
}

/** The S3Store parameters of `bucket` on the local stack's server, path-style, the stack's key. */
export function stackS3Params(bucket: string, extra: Partial<S3StoreParams> = {}): S3StoreParams {
  return {
    bucket,
    endpoint: stack.s3.url,
    region: stack.s3.region,
    pathStyle: true,
    credentials: { accessKeyId: stack.s3.accessKeyId, secretAccessKey: stack.s3.secretAccessKey },
    timeoutMs: 10_000,
    ...extra,
  };
}

export interface TestBucket {
  bucket: string;
  /** The parameters of an S3Store on it. */
  params: S3StoreParams;
  /** A store on the bucket (below `prefix` when given), closed when the test ends. */
  store(extra?: Partial<S3StoreParams>): S3Store;
  /** Every object key in the bucket, prefix and foreign names included. */
  objectKeys(): Promise<string[]>;
  /** Multipart uploads begun and neither completed nor aborted. */
  openUploads(): Promise<string[]>;
  /**
   * A service's settings for the bucket (below `prefix` when given), for loadConfig's overrides:
   * the stack's key in two files, as a mounted Secret would hold it.
   */
  settings(prefix?: string): Promise<S3Settings>;
  /** The same as the variables of a service: `env('PODMORTEM_COLLECTOR_')`. */
  env(servicePrefix: string, prefix?: string): Promise<Record<string, string>>;
}

/**
 * Creates a bucket named for no other run, removed with its objects and uploads when `t` ends; on
 * the stack's server, or on a private one (test/support/private-stack.ts) at `endpoint`.
 */
export async function freshBucket(t: Test, prefix = 'pm-test', endpoint = stack.s3.url): Promise<TestBucket> {
  const client = stackS3Client(endpoint);
  const bucket = uniqueName(prefix).toLowerCase().slice(0, 63);
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const stores: S3Store[] = [];
  const objectKeys = async () => {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          ...(token === undefined ? {} : { ContinuationToken: token }),
        }),
      );
      for (const o of page.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key);
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return keys.sort();
  };
  const uploads = async () =>
    (await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [];
  t.teardown(async () => {
    for (const store of stores) store.close();
    for (const u of await uploads())
      await client.send(
        new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }),
      );
    for (const key of await objectKeys())
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
    client.destroy();
  });
  const params = stackS3Params(bucket, { endpoint });
  let secretDir: Promise<string> | undefined;
  const credentialFiles = () =>
    (secretDir ??= (async () => {
      const dir = await mkdtemp(join(tmpdir(), 'pm-s3-secret-'));
      t.teardown(() => rm(dir, { recursive: true, force: true }));
      await writeFile(join(dir, 'access-key-id'), stack.s3.accessKeyId, { mode: 0o600 });
      await writeFile(join(dir, 'secret-access-key'), stack.s3.secretAccessKey, { mode: 0o600 });
      return dir;
    })());
  const settings = async (prefix = ''): Promise<S3Settings> => {
    const dir = await credentialFiles();
    return {
      storageBackend: 's3',
      storageS3Endpoint: endpoint,
      storageS3Region: stack.s3.region,
      storageS3Bucket: bucket,
      storageS3Prefix: prefix,
      storageS3PathStyle: true,
      storageS3AccessKeyIdFile: join(dir, 'access-key-id'),
      storageS3SecretAccessKeyFile: join(dir, 'secret-access-key'),
    };
  };
  return {
    bucket,
    params,
    store: (extra = {}) => {
      const store = new S3Store({ ...params, ...extra });
      stores.push(store);
      return store;
    },
    objectKeys,
    openUploads: async () => (await uploads()).map((u) => u.Key ?? ''),
    settings,
    env: async (servicePrefix, prefix) =>
      Object.fromEntries(
        Object.entries(await settings(prefix)).map(([key, value]) => [
          envName(servicePrefix, key),
          String(value),
        ]),
      ),
  };
}
