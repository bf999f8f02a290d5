import t from 'tap';
import { LoginLimiter } from './login-limiter.ts';

// The pre-authentication limit on its own, with a clock the test moves.

function limiter(max: number, maxAddresses?: number) {
  let now = 1_000_000;
  const l = new LoginLimiter({
    max,
    windowMs: 60_000,
    now: () => now,
    ...(maxAddresses ? { maxAddresses } : {}),
  });
  return { l, advance: (ms: number) => (now += ms) };
}

t.test('reviews in flight and refused tokens count; a success gives its slot back', async (t) => {
  const { l } = limiter(3);
  t.equal(l.reserve('a'), 0);
  t.equal(l.reserve('a'), 0);
  t.equal(l.reserve('a'), 0);
  t.equal(l.reserve('a'), 60_000, 'three in flight: the fourth waits for the window');
  l.release('a');
  t.equal(l.reserve('a'), 0, 'an answered review frees its slot');
  l.failed('a');
  l.release('a');
  l.release('a');
  l.release('a');
  t.equal(l.reserve('a'), 0);
  t.equal(l.reserve('a'), 0);
  t.equal(l.reserve('a'), 60_000, 'one refusal and two in flight fill the three slots');
  t.equal(l.reserve('b'), 0, 'another address has its own window');
});

t.test('the window ends: the address may try again', async (t) => {
  const { l, advance } = limiter(1);
  l.reserve('a');
  l.failed('a');
  l.release('a');
  advance(59_000);
  t.equal(l.reserve('a'), 1000, 'the time left');
  advance(1000);
  t.equal(l.reserve('a'), 0, 'a new window');
  l.release('a');
  l.release('a');
  t.equal(l.reserve('a'), 0, 'releasing more than reserved is harmless');
});

t.test('memory is bounded: expired windows go first, then the oldest', async (t) => {
  const { l, advance } = limiter(1, 3);
  l.failed('a');
  advance(30_000);
  l.failed('b');
  l.failed('c');
  advance(31_000);
  l.failed('d');
  t.equal(l.size, 3, 'a expired and was dropped for d');
  l.failed('e');
  t.equal(l.size, 3, 'b, the oldest left, was dropped for e');
  t.equal(l.reserve('c'), 29_000, 'c is still limited');
  t.equal(l.reserve('b'), 0, 'b was forgotten');
});
