import { isIP, type LookupFunction } from 'node:net';
import { readBytes, S3_MIN_PART_BYTES, type StoreErrorCode } from '@podmortem/contract/store';
import t from 'tap';
import { privateServer } from './support/private-stack.ts';
import { freshBucket } from './support/s3.ts';
import { stack } from './support/stack.ts';

// Virtual-host addressing, the default (storageS3PathStyle false): the SDK sends a request about
// bucket B to B.<endpoint host>/key, as AWS S3 expects, and the server must take the bucket from
// the Host. SeaweedFS's gateway does so only for the domains of its -domainName, so the test runs
// a SeaweedFS of its own with -s3.domainName=localhost (the main stack keeps plain path-style).
//
// Two things stand between the test and such a request. The SDK falls back to path-style when the
// endpoint is an IP address, so the endpoint is named http://localhost:<port>. And glibc's
// resolver does not know <bucket>.localhost (RFC 6761 makes every *.localhost loopback, but only
// resolvers such as systemd-resolved implement it; /etc/hosts has the bare name alone), nor may a
// test edit the machine's resolver or rely on a public wildcard DNS. So the store is given a
// lookup (S3StoreParams.lookup, no service setting) that answers names below localhost with the
// server's address and fails for any other: the bare localhost that a path-style request would ask
// for is not found, so only virtual-host requests can reach the server.

const code = (c: StoreErrorCode) => ({ name: 'StoreError', code: c });
const DOMAIN = 'localhost';

/** Names ending in `.${domain}` resolve to `address`, every other name is not found; each asked is recorded. */
function subdomainLookup(domain: string, address: string, asked: string[]): LookupFunction {
  const family = isIP(address);
  return (hostname, options, callback) => {
    asked.push(hostname);
    process.nextTick(() => {
      if (!hostname.endsWith(`.${domain}`)) {
        const err: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${hostname}`);
        err.code = 'ENOTFOUND';
        callback(err, '', 0);
      } else if (options.all === true) callback(null, [{ address, family }]);
      else callback(null, address, family);
    });
  };
}

async function* chunks(parts: number, size: number) {
  for (let i = 0; i < parts; i++) yield Buffer.alloc(size, i);
}

async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const got: Buffer[] = [];
  for await (const chunk of body) got.push(Buffer.from(chunk));
  return Buffer.concat(got);
}

t.test('virtual-host requests (bucket.host/key) on a real SeaweedFS with -domainName', async (t) => {
  const server = await privateServer('seaweedfs', { s3DomainName: DOMAIN });
  t.teardown(() => server.destroy());
  await server.up();
  const port = new URL(server.address).port;
  const endpoint = `http://${DOMAIN}:${port}`;

  // Its own test, so that the bucket is emptied and removed before the server goes.
  await t.test('every store operation, each request addressed to the bucket host', async (t) => {
    // The bucket is made and inspected path-style at the server's IP address: the server's view.
    const b = await freshBucket(t, 'pm-vhost', server.address);
    const asked: string[] = [];
    const store = b.store({
      endpoint,
      pathStyle: false,
      lookup: subdomainLookup(DOMAIN, stack.host, asked),
      partSizeBytes: S3_MIN_PART_BYTES,
    });

    t.equal(await store.ready(), true, 'the bucket is there');
    const event = Buffer.from('{"crash":1}\n');
    t.equal((await store.putBytes('ns/p/c/1.json', event)).size, event.length, 'putBytes');
    // 6 MiB: a multipart upload (create, two parts, complete), each request virtual-host.
    const mib = 1 << 20;
    const dump = await collect(chunks(6, mib));
    const put = await store.put('ns/p/c/1.core.zst', chunks(6, mib));
    t.equal(put.size, dump.length, 'put of a stream larger than a part');
    await store.putBytes('other/p/c/2.json', event);

    const stat = await store.stat('ns/p/c/1.core.zst');
    t.same({ size: stat.size, etag: stat.etag }, { size: put.size, etag: put.etag }, 'stat');
    const range = await store.get('ns/p/c/1.core.zst', {
      start: S3_MIN_PART_BYTES - 2,
      end: S3_MIN_PART_BYTES + 1,
    });
    t.same(
      await collect(range.body),
      dump.subarray(S3_MIN_PART_BYTES - 2, S3_MIN_PART_BYTES + 2),
      'a range across the part boundary',
    );
    t.equal(range.size, dump.length, 'the range read knows the object’s size');
    t.equal((await readBytes(store, 'ns/p/c/1.json'))?.toString(), event.toString(), 'a whole read');
    t.same(
      (await store.list('ns')).map((o) => [o.key, o.size]),
      [
        ['ns/p/c/1.core.zst', dump.length],
        ['ns/p/c/1.json', event.length],
      ],
      'list',
    );
    t.same(await store.namespaces(), ['ns', 'other'], 'namespaces');
    t.same(
      await b.objectKeys(),
      ['ns/p/c/1.core.zst', 'ns/p/c/1.json', 'other/p/c/2.json'],
      'the server put each object in the bucket named by the Host, under its key',
    );

    await store.delete('ns/p/c/1.json');
    await t.rejects(store.stat('ns/p/c/1.json'), code('PM_ERR_STORE_NOT_FOUND'), 'deleted');
    t.same(await b.objectKeys(), ['ns/p/c/1.core.zst', 'other/p/c/2.json'], 'and gone on the server');

    t.ok(asked.length > 0, 'the SDK resolved the host of its requests');
    t.same([...new Set(asked)], [`${b.bucket}.${DOMAIN}`], 'the bucket host and no other was asked for');

    // The same lookup with path-style requests: the bare host is not found, so had the SDK
    // addressed any request above path-style, it would have failed.
    const pathStyle = b.store({
      endpoint,
      pathStyle: true,
      lookup: subdomainLookup(DOMAIN, stack.host, []),
      maxAttempts: 1,
    });
    await t.rejects(
      pathStyle.stat('ns/p/c/1.core.zst'),
      { ...code('PM_ERR_STORE_UNAVAILABLE'), message: /ENOTFOUND localhost/ },
      'path-style: localhost is not resolved',
    );
  });
});

t.test('without -domainName the server takes the first path segment for the bucket', async (t) => {
  // The main stack's SeaweedFS has no -domainName: a virtual-host PUT of ns/p/c/1.json is, to it,
  // object p/c/1.json of a bucket "ns" that does not exist. What the test above asserts is the
  // server's own virtual-host support, not a server that ignores the Host.
  const b = await freshBucket(t, 'pm-vhost');
  const store = b.store({
    endpoint: `http://${DOMAIN}:${new URL(stack.s3.url).port}`,
    pathStyle: false,
    lookup: subdomainLookup(DOMAIN, stack.host, []),
  });
  await t.rejects(store.putBytes('ns/p/c/1.json', Buffer.from('{}')), code('PM_ERR_STORE_REFUSED'));
  t.same(await b.objectKeys(), [], 'nothing stored in the bucket');
  await b.store().putBytes('ns/p/c/1.json', Buffer.from('{}'));
  t.same(await b.objectKeys(), ['ns/p/c/1.json'], 'the same PUT path-style is stored');
});
