import { FsStore, readBytes, S3Store, storeFrom, type Store } from '@podmortem/contract/store';
import t from 'tap';
import { loadAnalyzerConfig } from '../analyzer/src/config.ts';
import { loadCollectorConfig } from '../collector/src/agent/config.ts';
import { readConfig } from '../query-api/src/config.ts';
import { freshBucket } from './support/s3.ts';

// PODMORTEM_<SERVICE>_STORAGE_BACKEND=s3 moves each service that keeps or reads dumps onto the
// bucket its variables name, on the local stack's real S3 server: what the collector writes there,
// the query API and the analyzer read. Without the variable each keeps its storage root.

const services: [string, string, (env: Record<string, string>) => Parameters<typeof storeFrom>[0]][] = [
  [
    'collector agent',
    'PODMORTEM_COLLECTOR_',
    (env) => loadCollectorConfig({ PODMORTEM_COLLECTOR_NODE_NAME: 'n1', ...env }),
  ],
  ['query API', 'PODMORTEM_API_', (env) => readConfig(env)],
  ['analyzer', 'PODMORTEM_ANALYZER_', (env) => loadAnalyzerConfig(env)],
];

t.test('the filesystem stays the default of every service', async (t) => {
  for (const [name, prefix, load] of services) {
    const store = storeFrom(load({ [`${prefix}STORAGE_ROOT`]: '/srv/podmortem' }));
    t.ok(store instanceof FsStore, name);
    t.equal(store.location, '/srv/podmortem', name);
  }
});

t.test(
  'STORAGE_BACKEND=s3: every service on the one bucket and prefix, credentials from files',
  async (t) => {
    const bucket = await freshBucket(t);
    const stores: Store[] = [];
    for (const [name, prefix, load] of services) {
      const store = storeFrom(load(await bucket.env(prefix, 'cluster-a')));
      t.ok(store instanceof S3Store, name);
      t.teardown(() => (store as S3Store).close());
      stores.push(store);
    }
    const [collector, api, analyzer] = stores as [Store, Store, Store];
    await collector.putBytes('ns/p/c/1.json', Buffer.from('{"crash":1}'));
    t.equal((await readBytes(api, 'ns/p/c/1.json'))?.toString(), '{"crash":1}', 'the query API reads it');
    t.equal((await readBytes(analyzer, 'ns/p/c/1.json'))?.toString(), '{"crash":1}', 'the analyzer reads it');
    t.same(await bucket.objectKeys(), ['cluster-a/ns/p/c/1.json'], 'below the prefix');
  },
);

t.test('S3 without a bucket stops each service naming its variable', async (t) => {
  for (const [name, prefix, load] of services)
    t.throws(
      () => load({ [`${prefix}STORAGE_BACKEND`]: 's3' }),
      { name: 'ConfigError', message: new RegExp(`^${prefix}STORAGE_S3_BUCKET: is required`) },
      name,
    );
});

t.test('a queue size of 0 stops each service naming its variable', async (t) => {
  for (const [name, prefix, load] of services)
    t.throws(
      () =>
        load({
          [`${prefix}STORAGE_BACKEND`]: 's3',
          [`${prefix}STORAGE_S3_BUCKET`]: 'dumps',
          [`${prefix}STORAGE_S3_QUEUE_SIZE`]: '0',
        }),
      { name: 'ConfigError', message: new RegExp(`^${prefix}STORAGE_S3_QUEUE_SIZE: `) },
      name,
    );
});
