import { S3Store, type S3StoreParams } from '@podmortem/contract/store';

// A process of its own that streams a generated body of argv[3] bytes through S3Store.put under
// the key argv[4], with the S3Store parameters argv[2] (JSON), and prints what it stored and its
// own peak RSS: the memory an upload costs, apart from the test runner's. Every chunk is a new
// buffer of 64 KiB (a file stream's), filled with its index, so a store that kept what it had sent
// would show it in the RSS.

const [paramsJson = '{}', sizeArg = '0', key = 'ns/p/c/big.core.zst'] = process.argv.slice(2);
const params = JSON.parse(paramsJson) as S3StoreParams;
const size = Number(sizeArg);
const CHUNK = 64 << 10;

async function* body(): AsyncGenerator<Buffer> {
  for (let sent = 0, i = 0; sent < size; sent += CHUNK, i++)
    yield Buffer.alloc(Math.min(CHUNK, size - sent), i & 0xff);
}

const store = new S3Store(params);
const started = performance.now();
const stored = await store.put(key, body());
store.close();
console.log(
  JSON.stringify({
    size: stored.size,
    ms: Math.round(performance.now() - started),
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  }),
);
