import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { envName } from '@podmortem/contract/runtime';
import { FsStore, type Store } from '@podmortem/contract/store';
import type { Test } from 'tap';
import { freshBucket, type S3Settings } from './s3.ts';

// The two store backends for one test suite: each test that runs over storage loops over
// BACKENDS and opens the one it is in, so the same assertions hold of the filesystem and of the
// S3 server (a bucket of the test's own), never two copies of the suite.

export type BackendName = 'fs' | 's3';

export const BACKENDS: readonly BackendName[] = ['fs', 's3'];

export interface Backend {
  name: BackendName;
  /** What the test reads and seeds through, the same objects the services see. */
  store: Store;
  /** A service's storage variables for this backend: `env('PODMORTEM_COLLECTOR_')`. */
  env(servicePrefix: string): Record<string, string>;
  /** A service's configuration overrides for this backend (loadConfig / readConfig). */
  settings: { storageRoot: string } & Partial<S3Settings>;
  /** Every key held, sorted: what a service left behind, whatever the backend. */
  keys(): Promise<string[]>;
}

async function walk(root: string, base = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(root, base), { withFileTypes: true })) {
    const rel = base === '' ? entry.name : `${base}/${entry.name}`;
    if (entry.isDirectory()) out.push(...(await walk(root, rel)));
    else out.push(rel);
  }
  return out;
}

/**
 * The backend `name` for test `t`, removed when it ends: fs on `where.root` (a fresh temporary
 * folder when absent), s3 on a fresh bucket of the local stack's server or of the server at
 * `where.endpoint` (a private one the test may stop).
 */
export async function openBackend(
  t: Test,
  name: BackendName,
  where: { root?: string; endpoint?: string } = {},
): Promise<Backend> {
  const root = where.root;
  if (name === 'fs') {
    const dir = root ?? (await mkdtemp(join(tmpdir(), 'pm-store-')));
    if (root === undefined) t.teardown(() => rm(dir, { recursive: true, force: true }));
    const settings = { storageRoot: dir, storageBackend: 'fs' as const };
    return {
      name,
      store: new FsStore({ root: dir }),
      env: (prefix) => ({
        [envName(prefix, 'storageBackend')]: 'fs',
        [envName(prefix, 'storageRoot')]: dir,
      }),
      settings,
      keys: async () => (await walk(dir)).sort(),
    };
  }
  const bucket = await freshBucket(t, 'pm-test', where.endpoint);
  const s3 = await bucket.settings();
  const store = bucket.store();
  // Services on the s3 backend never read the root; a folder that does not exist proves it.
  const storageRoot = join(tmpdir(), `pm-no-root-${bucket.bucket}`);
  return {
    name,
    store,
    env: (prefix) =>
      Object.fromEntries(
        Object.entries({ ...s3, storageRoot }).map(([key, value]) => [envName(prefix, key), String(value)]),
      ),
    settings: { ...s3, storageRoot },
    keys: () => bucket.objectKeys(),
  };
}
