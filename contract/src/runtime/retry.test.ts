import t from 'tap';
import { retry, backoffDelay, retryDefaults, retryPolicy } from './retry.ts';
import { PodmortemError, RetriesExhaustedError } from './errors.ts';

const fast = { initialMs: 1, maxMs: 2 };

t.test('a passing failure is retried until it succeeds', async (t) => {
  let calls = 0;
  const retried: number[] = [];
  const value = await retry(
    'flaky',
    async () => {
      calls++;
      if (calls < 3) throw new Error('ECONNREFUSED');
      return 'ok';
    },
    { ...fast, onRetry: (_err, attempt) => retried.push(attempt) },
  );
  t.equal(value, 'ok');
  t.equal(calls, 3);
  t.same(retried, [1, 2]);
});

t.test('exhausted retries end in a typed error that keeps the cause', async (t) => {
  const cause = new Error('broker down');
  const err = await retry(
    'send',
    async () => {
      throw cause;
    },
    { ...fast, retries: 2 },
  ).catch((e: unknown) => e);
  t.type(err, RetriesExhaustedError);
  t.equal((err as RetriesExhaustedError).attempts, 3);
  t.equal((err as RetriesExhaustedError).cause, cause);
  t.match((err as Error).message, /send: gave up after 3 attempts: broker down/);
});

t.test('programmer errors and non-retriable errors are thrown at once', async (t) => {
  for (const error of [
    new TypeError('x is undefined'),
    new PodmortemError('PM_ERR_BAD', 'bad', { retriable: false }),
  ]) {
    let calls = 0;
    await t.rejects(
      retry(
        'once',
        async () => {
          calls++;
          throw error;
        },
        fast,
      ),
      error,
    );
    t.equal(calls, 1, error.message);
  }
});

t.test('an abort stops the waiting', async (t) => {
  const controller = new AbortController();
  const p = retry(
    'forever',
    async () => {
      throw new Error('down');
    },
    { retries: Infinity, initialMs: 60_000, maxMs: 60_000, jitter: 0, signal: controller.signal },
  );
  controller.abort();
  await t.rejects(p, { name: 'AbortError' });
});

t.test('backoff grows by the factor up to the ceiling, jitter below it', async (t) => {
  const o = { ...retryDefaults, initialMs: 100, maxMs: 1000, jitter: 0 };
  t.same(
    [1, 2, 3, 4, 5].map((a) => backoffDelay(a, o)),
    [100, 200, 400, 800, 1000],
  );
  t.equal(
    backoffDelay(3, { ...o, jitter: 1 }, () => 0.5),
    200,
  );
});

t.test("a service's policy: its settings over the defaults, its own idea of what is retriable", async (t) => {
  const policy = retryPolicy({ retries: 1, initialMs: 1, maxMs: 1 });
  t.match(policy, { retries: 1, initialMs: 1, maxMs: 1, factor: retryDefaults.factor, jitter: 1 });
  t.equal(policy.retriable(new TypeError('bug')), false, 'programmer errors are not, by default');
  let calls = 0;
  const fail = async () => {
    calls++;
    throw new TypeError('bug');
  };
  await t.rejects(retry('strict', fail, policy), TypeError);
  t.equal(calls, 1);
  calls = 0;
  await t.rejects(retry('lenient', fail, { ...policy, retriable: () => true }), RetriesExhaustedError);
  t.equal(calls, 2, 'retries: 1 is two attempts');
});
