import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { S3Store, type S3StoreParams } from '@podmortem/contract/store';
import type { Test } from 'tap';
import { stack, uniqueName } from './stack.ts';

// A bucket of its own on the local stack's S3 server (SeaweedFS, deploy/local/seaweedfs.sh) for
// one test, removed with everything in it when the test ends; and the settings that reach it.

/** An S3 client of the local stack's server, with its one access key. */
export function stackS3Client(): S3Client {
  return new S3Client({
    endpoint: stack.s3.url,
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
}

/** Creates a bucket named for no other run, removed with its objects and uploads when `t` ends. */
export async function freshBucket(t: Test, prefix = 'pm-test'): Promise<TestBucket> {
  const client = stackS3Client();
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
  const params = stackS3Params(bucket);
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
  };
}
