import { Type } from '@sinclair/typebox';
import t from 'tap';
import { loadConfig } from '../runtime/config.ts';
import { FsStore } from './fs-store.ts';
import { S3Store } from './s3-store.ts';
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
