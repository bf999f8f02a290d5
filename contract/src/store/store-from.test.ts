import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import t from 'tap';
import { loadConfig } from '../runtime/config.ts';
import { FsStore } from './fs-store.ts';
import { S3_DEFAULTS, S3_MIN_PART_BYTES, S3Store } from './s3-store.ts';
import { checkStoreSettings, storeFrom, storeSettings } from './store-from.ts';

// The store settings as a service reads them: spread into its schema beside its storageRoot,
// checked, and turned into the store they name.

const PREFIX = 'PODMORTEM_TEST_';
const Schema = Type.Object({
  storageRoot: Type.String({ minLength: 1, default: '/var/lib/podmortem/storage' }),
  ...storeSettings(),
});

function configOf(env: Record<string, string>) {
  const config = loadConfig(Schema, PREFIX, env);
  checkStoreSettings(config, PREFIX);
  return config;
}

t.test('by default the store is the storage root, as before', async (t) => {
  const store = storeFrom(configOf({ PODMORTEM_TEST_STORAGE_ROOT: '/srv/dumps' }));
  t.ok(store instanceof FsStore);
  t.equal(store.location, '/srv/dumps');
});

t.test('STORAGE_BACKEND=s3 makes an S3Store of the bucket and prefix named', async (t) => {
  const store = storeFrom(
    configOf({
      PODMORTEM_TEST_STORAGE_BACKEND: 's3',
      PODMORTEM_TEST_STORAGE_S3_BUCKET: 'dumps',
      PODMORTEM_TEST_STORAGE_S3_PREFIX: 'cluster-a/podmortem',
      PODMORTEM_TEST_STORAGE_S3_ENDPOINT: 'http://127.0.0.1:19333',
      PODMORTEM_TEST_STORAGE_S3_PATH_STYLE: 'true',
      PODMORTEM_TEST_STORAGE_S3_ACCESS_KEY_ID_FILE: '/run/secrets/s3/id',
      PODMORTEM_TEST_STORAGE_S3_SECRET_ACCESS_KEY_FILE: '/run/secrets/s3/secret',
    }),
  );
  t.ok(store instanceof S3Store);
  t.equal(store.location, 's3://dumps/cluster-a/podmortem');
  (store as S3Store).close();
});

t.test('bad S3 settings stop the service naming the variable', async (t) => {
  const s3 = { PODMORTEM_TEST_STORAGE_BACKEND: 's3', PODMORTEM_TEST_STORAGE_S3_BUCKET: 'dumps' };
  const cases: [Record<string, string>, RegExp][] = [
    [{ PODMORTEM_TEST_STORAGE_BACKEND: 's3' }, /^PODMORTEM_TEST_STORAGE_S3_BUCKET: is required/],
    [{ PODMORTEM_TEST_STORAGE_BACKEND: 'nfs' }, /^PODMORTEM_TEST_STORAGE_BACKEND: /],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_ACCESS_KEY_ID_FILE: '/id' }, /SECRET_ACCESS_KEY_FILE: .*together/],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_SECRET_ACCESS_KEY_FILE: '/s' }, /ACCESS_KEY_ID_FILE: .*together/],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_ENDPOINT: '127.0.0.1:19333' }, /S3_ENDPOINT: must be an http/],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_ENDPOINT: 'ftp://s3.local' }, /S3_ENDPOINT: must be an http/],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_REGION: '' }, /^PODMORTEM_TEST_STORAGE_S3_REGION: /],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_TIMEOUT_MS: '0' }, /^PODMORTEM_TEST_STORAGE_S3_TIMEOUT_MS: /],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_BUDGET_BYTES: '-1' }, /^PODMORTEM_TEST_STORAGE_S3_BUDGET_BYTES: /],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_PREFIX: '../up' }, /S3_PREFIX: must be/],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_PREFIX: 'a/' }, /S3_PREFIX: must be/],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_PART_SIZE_BYTES: '1024' }, /S3_PART_SIZE_BYTES: /],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_QUEUE_SIZE: '0' }, /^PODMORTEM_TEST_STORAGE_S3_QUEUE_SIZE: /],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_QUEUE_SIZE: '1.5' }, /^PODMORTEM_TEST_STORAGE_S3_QUEUE_SIZE: /],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_QUEUE_SIZE: 'two' }, /^PODMORTEM_TEST_STORAGE_S3_QUEUE_SIZE: /],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_CHECKSUM: 'MD5' }, /S3_CHECKSUM: /],
    [{ ...s3, PODMORTEM_TEST_STORAGE_S3_PATH_STYLE: 'yes' }, /S3_PATH_STYLE: must be true or false/],
  ];
  for (const [env, message] of cases)
    t.throws(() => configOf(env), { name: 'ConfigError', message }, JSON.stringify(env));
  t.doesNotThrow(
    () => configOf({ PODMORTEM_TEST_STORAGE_S3_PREFIX: '../ignored' }),
    'S3 settings are not checked for the filesystem backend',
  );
});

t.test('STORAGE_S3_QUEUE_SIZE: the parts an upload holds while the server has not answered', async (t) => {
  // A server that takes connections and never answers. Each of an upload's queue-size senders
  // takes the next part of the dump and waits for the server (to create the multipart upload), and
  // nothing reads on: what the store has taken of the dump is the queue size in parts and less
  // than one part more, the memory bound the setting's description names.
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        silent.close(() => resolve());
      }),
  );
  // Credentials from files, so that the SDK does not go looking for them on the network.
  const dir = await mkdtemp(join(tmpdir(), 'pm-store-from-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'id'), 'id');
  await writeFile(join(dir, 'secret'), 'secret');
  const s3 = {
    PODMORTEM_TEST_STORAGE_BACKEND: 's3',
    PODMORTEM_TEST_STORAGE_S3_BUCKET: 'dumps',
    PODMORTEM_TEST_STORAGE_S3_ENDPOINT: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`,
    PODMORTEM_TEST_STORAGE_S3_PATH_STYLE: 'true',
    PODMORTEM_TEST_STORAGE_S3_ACCESS_KEY_ID_FILE: join(dir, 'id'),
    PODMORTEM_TEST_STORAGE_S3_SECRET_ACCESS_KEY_FILE: join(dir, 'secret'),
    PODMORTEM_TEST_STORAGE_S3_PART_SIZE_BYTES: String(S3_MIN_PART_BYTES),
    PODMORTEM_TEST_STORAGE_S3_TIMEOUT_MS: '500',
  };
  const mib = 1 << 20;
  const partMiB = S3_MIN_PART_BYTES / mib;
  const cases: [number, Record<string, string>][] = [
    [S3_DEFAULTS.queueSize, {}],
    [1, { PODMORTEM_TEST_STORAGE_S3_QUEUE_SIZE: '1' }],
    [4, { PODMORTEM_TEST_STORAGE_S3_QUEUE_SIZE: '4' }],
  ];
  for (const [queueSize, env] of cases) {
    const store = storeFrom(configOf({ ...s3, ...env })) as S3Store;
    t.teardown(() => store.close());
    let taken = 0;
    // 1 MiB chunks, far more than any queue size here holds.
    const dump = async function* () {
      for (let i = 0; i < 10 * partMiB; i++) {
        taken += 1;
        yield Buffer.alloc(mib, i);
      }
    };
    // Until the server is given up on (three attempts of the timeout), so everything the store
    // would read ahead while waiting has been read.
    await t.rejects(
      store.put('ns/p/c/1.core.zst', dump()),
      { name: 'StoreError', code: 'PM_ERR_STORE_UNAVAILABLE' },
      `queue size ${queueSize}: no answer, unavailable`,
    );
    // A part is cut once more than a part is buffered: queueSize parts take queueSize × 5 + 1 chunks.
    t.ok(taken > queueSize * partMiB, `queue size ${queueSize}: its parts taken (${taken} MiB)`);
    t.ok(
      taken <= (queueSize + 1) * partMiB,
      `queue size ${queueSize}: less than one part more (${taken} MiB of at most ${(queueSize + 1) * partMiB})`,
    );
  }
});
