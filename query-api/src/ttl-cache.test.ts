import t from 'tap';
import { TtlCache } from './ttl-cache.ts';

t.test('reuses a value until it expires; concurrent loads share one promise', async (t) => {
  let now = 0;
  let loads = 0;
  const cache = new TtlCache<number>({ ttlMs: 100, now: () => now });
  const load = () => Promise.resolve(++loads);
  t.same(await Promise.all([cache.get('k', load), cache.get('k', load)]), [1, 1]);
  now = 99;
  t.equal(await cache.get('k', load), 1);
  now = 100;
  t.equal(await cache.get('k', load), 2, 'expired');
});

t.test('a failed load is not kept', async (t) => {
  const cache = new TtlCache<number>({ ttlMs: 1000 });
  await t.rejects(
    cache.get('k', () => Promise.reject(new Error('down'))),
    { message: 'down' },
    'the load’s own error',
  );
  t.equal(await cache.get('k', () => Promise.resolve(7)), 7);
});

t.test('bounded: the oldest entries make room', async (t) => {
  const cache = new TtlCache<number>({ ttlMs: 1000, maxEntries: 3 });
  for (let i = 0; i < 10; i++) await cache.get(String(i), () => Promise.resolve(i));
  t.equal(cache.size, 3);
  t.equal(await cache.get('9', () => Promise.resolve(-1)), 9);
  t.equal(await cache.get('0', () => Promise.resolve(-1)), -1);
});

t.test('ttl 0 caches nothing', async (t) => {
  const cache = new TtlCache<number>({ ttlMs: 0 });
  let n = 0;
  await cache.get('k', () => Promise.resolve(++n));
  await cache.get('k', () => Promise.resolve(++n));
  t.equal(n, 2);
});
