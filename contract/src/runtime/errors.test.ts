import t from 'tap';
import {
  ConfigError,
  defineErrors,
  isProgrammerError,
  isRetriable,
  PodmortemError,
  registryOptions,
} from './errors.ts';

t.test('a registry keeps its codes as given, frozen', async (t) => {
  const errors = defineErrors({
    PM_ERR_A: { retriable: true, message: 'a passed' },
    PM_ERR_B: { retriable: false, status: 404, message: 'no b' },
  });
  t.same(errors.PM_ERR_B, { retriable: false, status: 404, message: 'no b' });
  t.ok(Object.isFrozen(errors));
});

t.test('a malformed entry is refused when the registry is defined', async (t) => {
  t.throws(() => defineErrors({ ERR_A: { retriable: false, message: 'x' } }), /ERR_A is not PM_ERR_\*/);
  t.throws(() => defineErrors({ PM_ERR_A: { retriable: false, message: '' } }), /has no message/);
  t.throws(
    () => defineErrors({ PM_ERR_A: { retriable: false, status: 200, message: 'x' } }),
    /status 200 is not an HTTP error status/,
  );
});

t.test("an error made from a registry entry carries the entry's retriable and status", async (t) => {
  const cause = new Error('root');
  const def = { retriable: true, status: 503, message: 'down' };
  const e = new PodmortemError('PM_ERR_DOWN', 'down: now', registryOptions(def, cause));
  t.equal(e.retriable, true);
  t.equal(e.status, 503);
  t.equal(e.cause, cause);
  t.same(registryOptions({ retriable: false, message: 'x' }), { retriable: false }, 'nothing unset added');
});

t.test('isRetriable: our errors say so, programmer errors never, other I/O errors are', async (t) => {
  t.equal(isRetriable(new PodmortemError('PM_ERR_X', 'x', { retriable: true })), true);
  t.equal(isRetriable(new ConfigError('PODMORTEM_X', 'bad')), false);
  for (const e of [new TypeError('t'), new RangeError('r'), new SyntaxError('s'), new ReferenceError('f')]) {
    t.equal(isProgrammerError(e), true, e.name);
    t.equal(isRetriable(e), false, e.name);
  }
  t.equal(isProgrammerError(new Error('ECONNRESET')), false);
  t.equal(isRetriable(new Error('ECONNRESET')), true);
  t.equal(isRetriable(Object.assign(new Error('kafkajs'), { retriable: false })), false, 'a library flag');
});
