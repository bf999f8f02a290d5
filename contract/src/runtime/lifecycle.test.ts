import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeDeadline, InFlight } from './lifecycle.ts';
import { OpsServer } from './ops-server.ts';
import { Registry, Counter } from 'prom-client';

t.test('beforeDeadline gives the result, or the fallback once the deadline passed', async (t) => {
  t.equal(await beforeDeadline(Promise.resolve('done'), Date.now() + 1000, 'late'), 'done');
  t.equal(await beforeDeadline(sleep(5000, 'done'), Date.now() + 10, 'late'), 'late');
});

t.test('the ops server serves metrics and probes; shutdown is safe before start and twice', async (t) => {
  const registry = new Registry();
  new Counter({ name: 'pm_test_total', help: 'test', registers: [registry] }).inc(3);
  let ready = false;
  const server = new OpsServer({ host: '127.0.0.1', port: 0, registry, ready: () => ready });
  await server.shutdown();
  await server.start();
  const base = `http://127.0.0.1:${server.port}`;
  t.match(await (await fetch(`${base}/metrics`)).text(), /pm_test_total 3/);
  t.equal((await fetch(`${base}/healthz`)).status, 200);
  t.equal((await fetch(`${base}/readyz`)).status, 503);
  ready = true;
  t.equal((await fetch(`${base}/readyz`)).status, 200);
  t.equal((await fetch(`${base}/nope`)).status, 404);
  t.equal((await fetch(`${base}/metrics`, { method: 'POST' })).status, 405);
  await server.shutdown();
  await server.shutdown();
  await t.rejects(fetch(`${base}/healthz`));
});

t.test(
  'InFlight: settled waits for the work tracked, failed or not, and no longer than the deadline',
  async (t) => {
    const inFlight = new InFlight();
    let release: () => void = () => undefined;
    const slow = inFlight.track(new Promise<void>((resolve) => (release = resolve)));
    const failed = inFlight.track(Promise.reject(new Error('boom')));
    await t.rejects(failed, /boom/, 'the caller still sees the work fail');
    const started = Date.now();
    await inFlight.settled(Date.now() + 50);
    t.ok(Date.now() - started >= 40, 'the deadline bounds the wait on unfinished work');
    let settled = false;
    const waiting = inFlight.settled(Date.now() + 10_000).then(() => (settled = true));
    await sleep(20);
    t.equal(settled, false, 'not before the work is done');
    release();
    await slow;
    await waiting;
    t.equal(settled, true);
    const idle = inFlight.settled(Date.now() + 60_000).then(() => 'settled');
    t.equal(
      await beforeDeadline(idle, Date.now() + 10_000, 'waited'),
      'settled',
      'nothing left in flight: at once',
    );
  },
);
