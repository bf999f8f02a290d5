import { readFile } from 'node:fs/promises';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { LookupFunction } from 'node:net';
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  type _Object,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { keySegments } from '../storage-layout.ts';
import {
  checkedSegments,
  dumpBytes,
  isNamespaceFolder,
  isStoreError,
  StoreError,
  type ByteRange,
  type ObjectRead,
  type Store,
  type StoredObject,
} from './store.ts';

// The store in an S3-compatible bucket (AWS S3, GCS's S3 interoperability, Ceph RGW, SeaweedFS,
// MinIO): a key is an object key, below an optional prefix. Atomicity is the object store's own:
// a single PUT, or a multipart upload completed only once every part is in, makes an object
// visible whole or not at all; a failed upload is aborted, so neither a partial object nor (where
// the server honours the abort) its parts remain, and an object it would have replaced is intact.
// Streams are uploaded in parts of partSizeBytes, at most queueSize at once, so memory stays
// about (queueSize + 1) × partSizeBytes whatever the dump's size. S3 has no folders: a "folder" is
// a key prefix, so a key with objects below it is told apart from a missing object by one listing,
// and delete() looks before it removes, so it never takes a folder's worth of objects on servers
// that map keys onto a file tree. Every request has a timeout: a server that does not answer (or
// stops sending) is a PM_ERR_STORE_UNAVAILABLE, never a hang.

export type S3Credentials =
  | { accessKeyId: string; secretAccessKey: string }
  /** Files holding the key id and the secret, as a mounted Kubernetes Secret: re-read as they change. */
  | { accessKeyIdFile: string; secretAccessKeyFile: string };

export interface S3StoreParams {
  bucket: string;
  /** Default us-east-1 (what S3-compatible servers that ignore regions expect). */
  region?: string;
  /** The server's URL; absent: AWS S3's endpoint for the region. */
  endpoint?: string;
  /** Prefix of every key ('/'-separated safe segments), so one bucket can hold several installations. */
  prefix?: string;
  /** Path-style requests (endpoint/bucket/key) rather than virtual-host ones (bucket.endpoint/key). */
  pathStyle?: boolean;
  /** Absent: the SDK's default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, web identity, …). */
  credentials?: S3Credentials;
  /** Longest a request may take to connect or stay silent, and a metadata request in all. */
  timeoutMs?: number;
  /** Bytes this store may hold; freeBytes() is this minus what the prefix holds. Absent: no bound. */
  budgetBytes?: number;
  /** Bytes of one part of a multipart upload (at least 5 MiB, S3's minimum). */
  partSizeBytes?: number;
  /** Parts uploaded at once (at least 1); memory per upload is about (queueSize + 1) parts. */
  queueSize?: number;
  /** SHA256: every PUT and part carries its SHA-256, which the server checks; off: none sent. */
  checksum?: 'SHA256' | 'off';
  /** Attempts of one request by the SDK (transient failures) before the error is the caller's. */
  maxAttempts?: number;
  /**
   * How the endpoint's host names are resolved; absent: the system's resolver (dns.lookup). Not a
   * service setting: a deployment resolves bucket.endpoint names through its DNS. It is for a
   * caller whose server answers names the system resolver does not know, such as a test's
   * virtual-host requests to <bucket>.localhost, which glibc does not resolve.
   */
  lookup?: LookupFunction;
}

export const S3_DEFAULTS = {
  region: 'us-east-1',
  timeoutMs: 30_000,
  partSizeBytes: 8 * 1024 * 1024,
  queueSize: 2,
  checksum: 'SHA256',
  maxAttempts: 3,
} as const;

/** S3's smallest part but the last. */
export const S3_MIN_PART_BYTES = 5 * 1024 * 1024;

/**
 * The SDK keeps credentials until 5 minutes before they expire: expiring 10 minutes after they
 * were read, credential files are read again at most every 5 minutes (a rotated Secret is picked
 * up), not for every request.
 */
const CREDENTIAL_FILE_LIFETIME_MS = 10 * 60_000;

/** S3 error names meaning the backend has no room (or quota) for the object. */
const FULL = new Set([
  'EntityTooLarge',
  'QuotaExceeded',
  'InsufficientStorage',
  'StorageFull',
  'XMinioStorageFull',
]);
/** Answers meaning the request itself will not be served: the bucket, the credentials, the rights. */
const REFUSED = new Set([
  'NoSuchBucket',
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'InvalidToken',
  'ExpiredToken',
  'AllAccessDisabled',
  'AuthorizationHeaderMalformed',
  'PermanentRedirect',
]);
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
]);

class CredentialsFileError extends Error {
  constructor(file: string, cause: unknown) {
    super(`cannot read the S3 credentials file ${file}: ${(cause as Error).message}`, { cause });
    this.name = 'CredentialsFileError';
  }
}

async function readSecretFile(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CredentialsFileError(file, err);
  }
  const value = text.trim();
  if (value === '') throw new CredentialsFileError(file, new Error('empty'));
  return value;
}

function credentialsOf(credentials: S3Credentials | undefined): S3ClientConfig['credentials'] {
  if (credentials === undefined) return undefined;
  if ('accessKeyId' in credentials) return credentials;
  const { accessKeyIdFile, secretAccessKeyFile } = credentials;
  return async () => ({
    accessKeyId: await readSecretFile(accessKeyIdFile),
    secretAccessKey: await readSecretFile(secretAccessKeyFile),
    expiration: new Date(Date.now() + CREDENTIAL_FILE_LIFETIME_MS),
  });
}

/**
 * Agents resolving host names by `lookup`, with the SDK's own defaults (keep-alive, 50 sockets).
 * Agents, not agent options: from options the SDK makes its agents itself, but a request that
 * expects 100-continue (an upload part) gets a fresh agent without them, resolved the system's way.
 */
function agentsResolvingBy(lookup: LookupFunction): { httpAgent: HttpAgent; httpsAgent: HttpsAgent } {
  const options = { keepAlive: true, maxSockets: 50, lookup };
  return { httpAgent: new HttpAgent(options), httpsAgent: new HttpsAgent(options) };
}

function statusOf(err: S3ServiceException): number | undefined {
  return err.$metadata.httpStatusCode;
}

function isMissing(err: unknown): boolean {
  return (
    err instanceof S3ServiceException &&
    err.name !== 'NoSuchBucket' &&
    (err.name === 'NoSuchKey' || err.name === 'NotFound' || statusOf(err) === 404)
  );
}

function isNetworkFailure(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = 'code' in err ? String(err.code) : '';
  return (
    NETWORK_CODES.has(code) ||
    err.name === 'TimeoutError' ||
    err.name === 'AbortError' ||
    err.name === 'RequestTimeout'
  );
}

function unquoted(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '');
}

function isReadable(body: unknown): body is Readable {
  return body instanceof Readable;
}

export class S3Store implements Store {
  readonly location: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  private readonly budgetBytes: number | undefined;
  private readonly partSizeBytes: number;
  private readonly queueSize: number;
  private readonly checksum: 'SHA256' | 'off';

  constructor(params: S3StoreParams) {
    if (params.bucket === '') throw new RangeError('S3Store: no bucket');
    const prefix = params.prefix ?? '';
    if (prefix !== '' && 'refused' in keySegments(prefix))
      throw new RangeError(`S3Store: prefix ${JSON.stringify(prefix)} is not '/'-separated safe segments`);
    this.partSizeBytes = params.partSizeBytes ?? S3_DEFAULTS.partSizeBytes;
    if (this.partSizeBytes < S3_MIN_PART_BYTES)
      throw new RangeError(`S3Store: parts must be at least ${S3_MIN_PART_BYTES} bytes`);
    this.bucket = params.bucket;
    this.prefix = prefix === '' ? '' : `${prefix}/`;
    this.location = `s3://${params.bucket}/${prefix}`;
    this.timeoutMs = params.timeoutMs ?? S3_DEFAULTS.timeoutMs;
    this.budgetBytes = params.budgetBytes;
    this.queueSize = params.queueSize ?? S3_DEFAULTS.queueSize;
    // The SDK's Upload would take 0 for its own default of 4 rather than refuse it.
    if (!Number.isSafeInteger(this.queueSize) || this.queueSize < 1)
      throw new RangeError('S3Store: the queue size must be a whole number of parts, at least 1');
    this.checksum = params.checksum ?? S3_DEFAULTS.checksum;
    const credentials = credentialsOf(params.credentials);
    this.client = new S3Client({
      region: params.region ?? S3_DEFAULTS.region,
      ...(params.endpoint === undefined ? {} : { endpoint: params.endpoint }),
      ...(credentials === undefined ? {} : { credentials }),
      forcePathStyle: params.pathStyle ?? false,
      maxAttempts: params.maxAttempts ?? S3_DEFAULTS.maxAttempts,
      // Checksums only when asked for: servers without flexible checksums refuse the headers.
      requestChecksumCalculation: this.checksum === 'off' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
      responseChecksumValidation: this.checksum === 'off' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
      // Idle, not total: a 2 GiB dump may take long to move, but never silently.
      requestHandler: {
        connectionTimeout: this.timeoutMs,
        socketTimeout: this.timeoutMs,
        ...(params.lookup === undefined ? {} : agentsResolvingBy(params.lookup)),
      },
    });
  }

  async put(key: string, body: AsyncIterable<Uint8Array>): Promise<StoredObject> {
    const objectKey = this.objectKey(key);
    // The source's own failure (a spool file unreadable) is the caller's, unchanged. Only what
    // reading the source threw counts: when the upload fails with the source unfinished, the SDK
    // stops reading and the stream throws an AbortError into this generator at its yield, which
    // `yield* body` would have caught here as the source's, hiding the server's failure.
    let sourceFailure: { err: unknown } | undefined;
    const guarded = async function* () {
      const source = body[Symbol.asyncIterator]();
      let finished = false;
      try {
        for (;;) {
          let next: IteratorResult<Uint8Array>;
          try {
            next = await source.next();
          } catch (err) {
            finished = true;
            sourceFailure = { err };
            throw err;
          }
          if (next.done === true) {
            finished = true;
            return;
          }
          yield next.value;
        }
      } finally {
        // Left early, as `for await` would, the source is closed (its spool file released).
        if (!finished) await source.return?.();
      }
    };
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.bucket,
        Key: objectKey,
        Body: Readable.from(guarded(), { objectMode: false }),
        ...(this.checksum === 'off' ? {} : { ChecksumAlgorithm: this.checksum }),
      },
      partSize: this.partSizeBytes,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (err) {
      if (sourceFailure !== undefined) throw sourceFailure.err;
      throw this.failure(key, err);
    }
    return this.stat(key);
  }

  async putBytes(key: string, data: Uint8Array): Promise<StoredObject> {
    const objectKey = this.objectKey(key);
    await this.send(key, (abortSignal) =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: objectKey,
          Body: data,
          ContentLength: data.byteLength,
          ...(this.checksum === 'off' ? {} : { ChecksumAlgorithm: this.checksum }),
        }),
        { abortSignal },
      ),
    );
    return this.stat(key);
  }

  async get(key: string, range?: ByteRange): Promise<ObjectRead> {
    const objectKey = this.objectKey(key);
    const start = range?.start ?? 0;
    const ranged = start > 0 || range?.end !== undefined;
    let out;
    try {
      // No overall deadline here: it would cut the body of a large dump; the idle timeout holds.
      out = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: objectKey,
          ...(ranged ? { Range: `bytes=${start}-${range?.end ?? ''}` } : {}),
        }),
      );
    } catch (err) {
      if (isMissing(err)) throw await this.missing(key, err);
      // A range that starts at or past the end: no bytes, as a file read there gives.
      if (err instanceof S3ServiceException && (err.name === 'InvalidRange' || statusOf(err) === 416))
        return { ...(await this.stat(key)), body: Readable.from([]) };
      throw this.failure(key, err);
    }
    const body = out.Body;
    if (!isReadable(body)) throw new StoreError('PM_ERR_STORE_UNAVAILABLE', key, 'the server sent no body');
    const total = ranged ? Number(/\/(\d+)$/.exec(out.ContentRange ?? '')?.[1]) : out.ContentLength;
    if (total === undefined || !Number.isSafeInteger(total)) {
      body.destroy();
      throw new StoreError('PM_ERR_STORE_UNAVAILABLE', key, 'the server sent no object size');
    }
    return {
      key,
      size: total,
      mtime: out.LastModified ?? new Date(0),
      etag: unquoted(out.ETag),
      body,
    };
  }

  async stat(key: string): Promise<StoredObject> {
    const objectKey = this.objectKey(key);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey }), {
        abortSignal: AbortSignal.timeout(this.timeoutMs),
      });
      return {
        key,
        size: head.ContentLength ?? 0,
        mtime: head.LastModified ?? new Date(0),
        etag: unquoted(head.ETag),
      };
    } catch (err) {
      if (isMissing(err)) throw await this.missing(key, err);
      throw this.failure(key, err);
    }
  }

  async list(folder: string): Promise<StoredObject[]> {
    checkedSegments(folder);
    const found = await this.listUnder(folder, `${this.objectKey(folder)}/`);
    if (found.length === 0) {
      // Nothing below it: an object of that name is no folder, anything else is an empty one.
      try {
        await this.stat(folder);
        throw new StoreError('PM_ERR_STORE_NOT_A_FILE', folder, 'not a folder');
      } catch (err) {
        if (isStoreError(err, 'PM_ERR_STORE_NOT_FOUND')) return [];
        throw err;
      }
    }
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** The common prefixes one level below the prefix (S3 has no folders), page by page. */
  async namespaces(): Promise<string[]> {
    const found = new Set<string>();
    let token: string | undefined;
    do {
      const page = await this.send(this.location, (abortSignal) =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Delimiter: '/',
            ...(this.prefix === '' ? {} : { Prefix: this.prefix }),
            ...(token === undefined ? {} : { ContinuationToken: token }),
          }),
          { abortSignal },
        ),
      );
      for (const common of page.CommonPrefixes ?? []) {
        const listed = common.Prefix ?? '';
        if (!listed.startsWith(this.prefix) || !listed.endsWith('/')) continue;
        const name = listed.slice(this.prefix.length, -1);
        if (isNamespaceFolder(name)) found.add(name);
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return [...found].sort();
  }

  async delete(key: string): Promise<void> {
    const objectKey = this.objectKey(key);
    try {
      await this.stat(key);
    } catch (err) {
      // A folder is NOT_A_FILE, as stat says.
      if (isStoreError(err, 'PM_ERR_STORE_NOT_FOUND')) return;
      throw err;
    }
    await this.send(key, (abortSignal) =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: objectKey }), { abortSignal }),
    );
  }

  async usage(namespace: string): Promise<number> {
    return dumpBytes(await this.list(namespace));
  }

  /**
   * The budget less the bytes of every object under the prefix (one listing of them all), or
   * undefined without a budget: a bucket has no free space of its own to report.
   */
  async freeBytes(): Promise<number | undefined> {
    if (this.budgetBytes === undefined) return undefined;
    const all = await this.listUnder(this.location, this.prefix);
    return Math.max(0, this.budgetBytes - all.reduce((sum, o) => sum + o.size, 0));
  }

  async ready(): Promise<boolean> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), {
        abortSignal: AbortSignal.timeout(this.timeoutMs),
      });
      return true;
    } catch {
      return false;
    }
  }

  /** Closes the client's connections; the store is not used after. */
  close(): void {
    this.client.destroy();
  }

  private objectKey(key: string): string {
    checkedSegments(key);
    return this.prefix + key;
  }

  /** A request bounded in all by the timeout, its failure as the store's error. */
  private async send<T>(key: string, request: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    try {
      return await request(AbortSignal.timeout(this.timeoutMs));
    } catch (err) {
      throw this.failure(key, err);
    }
  }

  /** No object under the key: a folder when objects lie below it, else not found. */
  private async missing(key: string, cause: unknown): Promise<StoreError> {
    const below = await this.send(key, (abortSignal) =>
      this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${this.prefix}${key}/`, MaxKeys: 1 }),
        { abortSignal },
      ),
    );
    return (below.KeyCount ?? below.Contents?.length ?? 0) > 0
      ? new StoreError('PM_ERR_STORE_NOT_A_FILE', key, 'not a regular file', cause)
      : new StoreError('PM_ERR_STORE_NOT_FOUND', key, 'not found', cause);
  }

  /** Every object whose key starts with `objectPrefix`, as store keys; foreign names are skipped. */
  private async listUnder(what: string, objectPrefix: string): Promise<StoredObject[]> {
    const found: StoredObject[] = [];
    let token: string | undefined;
    do {
      const page = await this.send(what, (abortSignal) =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            ...(objectPrefix === '' ? {} : { Prefix: objectPrefix }),
            ...(token === undefined ? {} : { ContinuationToken: token }),
          }),
          { abortSignal },
        ),
      );
      for (const object of page.Contents ?? []) {
        const facts = this.factsOfListed(object);
        if (facts) found.push(facts);
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return found;
  }

  private factsOfListed(object: _Object): StoredObject | undefined {
    const objectKey = object.Key ?? '';
    if (!objectKey.startsWith(this.prefix)) return undefined;
    const key = objectKey.slice(this.prefix.length);
    if ('refused' in keySegments(key)) return undefined;
    return {
      key,
      size: object.Size ?? 0,
      mtime: object.LastModified ?? new Date(0),
      etag: unquoted(object.ETag),
    };
  }

  /** What the server or the network said, as the store's error; anything else unchanged. */
  private failure(key: string, err: unknown): unknown {
    if (err instanceof StoreError) return err;
    if (err instanceof CredentialsFileError)
      return new StoreError('PM_ERR_STORE_REFUSED', key, err.message, err);
    if (err instanceof S3ServiceException) {
      const status = statusOf(err);
      const said = `${err.name}${status === undefined ? '' : ` (HTTP ${status})`}: ${err.message}`;
      if (FULL.has(err.name) || status === 507)
        return new StoreError('PM_ERR_STORE_FULL', key, `${this.location}: ${said}`, err);
      if (err.name === 'NoSuchBucket')
        return new StoreError('PM_ERR_STORE_REFUSED', key, `bucket ${this.bucket} does not exist`, err);
      if (REFUSED.has(err.name) || status === 401 || status === 403)
        return new StoreError(
          'PM_ERR_STORE_REFUSED',
          key,
          `${this.location} refused the request: ${said}`,
          err,
        );
      if (status === undefined || status >= 500 || status === 429 || err.name === 'SlowDown')
        return new StoreError('PM_ERR_STORE_UNAVAILABLE', key, `${this.location}: ${said}`, err);
      return new StoreError(
        'PM_ERR_STORE_REFUSED',
        key,
        `${this.location} refused the request: ${said}`,
        err,
      );
    }
    if (isNetworkFailure(err)) {
      const why =
        err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')
          ? `no answer within ${this.timeoutMs} ms`
          : (err as Error).message;
      return new StoreError('PM_ERR_STORE_UNAVAILABLE', key, `${this.location} unreachable: ${why}`, err);
    }
    return err;
  }
}
