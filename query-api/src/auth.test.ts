import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { Counter } from 'prom-client';
import t, { type Test } from 'tap';
import { Access, tokenHash, type AccessParams } from './auth.ts';
import { ApiError } from './errors.ts';
import { LoginLimiter } from './login-limiter.ts';
import {
  KubeUnavailableError,
  type AccessAttributes,
  type Caller,
  type KubeReviews,
} from './kube-reviews.ts';
import { createTelemetry, type Telemetry } from './telemetry.ts';

// Access against an in-process fake of the two Kubernetes reviews: which header is a token, how
// review answers and failures become 401, 403 and 503, what is cached, and which namespaces a
// search may cover.

const alice: Caller = { username: 'alice', uid: 'u-1', groups: ['dev', 'ops'] };
const TOKEN = 'tok.alice-1';

/** Answers from tables; records every review it is asked for. */
class FakeReviews implements KubeReviews {
  readonly tokens = new Map<string, Caller>([[TOKEN, alice]]);
  /** `verb namespace[/subresource]` the callers may do (namespace '' is cluster-wide). */
  readonly allowed = new Set<string>();
  tokenReviews: string[] = [];
  accessReviews: AccessAttributes[] = [];
  failure: Error | undefined;
  inFlight = 0;
  mostInFlight = 0;

  async reviewToken(token: string): Promise<Caller | undefined> {
    this.tokenReviews.push(token);
    await sleep(1);
    if (this.failure !== undefined) throw this.failure;
    return this.tokens.get(token);
  }

  async reviewAccess(_caller: Caller, attrs: AccessAttributes): Promise<boolean> {
    this.accessReviews.push(attrs);
    this.inFlight++;
    this.mostInFlight = Math.max(this.mostInFlight, this.inFlight);
    await sleep(1);
    this.inFlight--;
    if (this.failure !== undefined) throw this.failure;
    const what = `${attrs.verb} ${attrs.namespace}${attrs.subresource ? `/${attrs.subresource}` : ''}`;
    return this.allowed.has(what);
  }
}

const ADDRESS = '192.0.2.1';

interface Setup {
  access: Access;
  reviews: FakeReviews;
  telemetry: Telemetry;
  indexLookups: () => number;
}

function setup(options: Partial<AccessParams> & { index?: string[] } = {}): Setup {
  const { index = [], ...overrides } = options;
  const reviews = new FakeReviews();
  const telemetry = createTelemetry(undefined, false);
  let lookups = 0;
  const access = new Access({
    reviews,
    telemetry,
    logger: pino({ level: 'silent' }),
    ttlMs: 60_000,
    namespaceTtlMs: 60_000,
    indexNamespaces: () => {
      lookups++;
      return Promise.resolve(index);
    },
    logins: new LoginLimiter({ max: 1000, windowMs: 60_000 }),
    ...overrides,
  });
  return { access, reviews, telemetry, indexLookups: () => lookups };
}

async function count<L extends string>(counter: Counter<L>, labels: Partial<Record<L, string>>) {
  const { values } = await counter.get();
  const matches = values.filter((v) =>
    Object.entries(labels).every(([k, want]) => v.labels[k as L] === want),
  );
  return matches.reduce((sum, v) => sum + v.value, 0);
}

/** The ApiError a promise rejects with (fails the test when it resolves or rejects otherwise). */
async function apiError(t: Test, promise: Promise<unknown>): Promise<ApiError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ApiError)) {
    t.fail(`expected an ApiError, got ${String(err)}`);
    throw new Error('not an ApiError');
  }
  return err;
}

t.test('tokens are held as their sha256', async (t) => {
  t.equal(tokenHash('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

t.test('no Authorization header is a 401 that asks for a bearer token', async (t) => {
  const { access, reviews, telemetry } = setup();
  for (const header of [undefined, '']) {
    const err = await apiError(t, access.authenticate(header, ADDRESS));
    t.match(err, {
      statusCode: 401,
      code: 'PM_ERR_UNAUTHENTICATED',
      message: 'headers/authorization: a bearer token is required',
      headers: { 'www-authenticate': 'Bearer realm="podmortem"' },
    });
  }
  t.equal(await count(telemetry.authentications, { result: 'missing' }), 2);
  t.same(reviews.tokenReviews, [], 'nothing to review');
});

t.test('a header that is not "Bearer <token>" is a 401 without a review', async (t) => {
  const { access, reviews, telemetry } = setup();
  const headers = [
    `Basic ${TOKEN}`,
    `bearer ${TOKEN}`,
    'Bearer ',
    `Bearer  ${TOKEN}`,
    `Bearer ${TOKEN} extra`,
    'Bearer tok"en',
    `Bearer ${'a'.repeat(8193)}`,
  ];
  for (const header of headers) {
    const err = await apiError(t, access.authenticate(header, ADDRESS));
    t.match(
      err,
      {
        statusCode: 401,
        code: 'PM_ERR_UNAUTHENTICATED',
        message: 'headers/authorization must be "Bearer <token>"',
      },
      header.slice(0, 40),
    );
  }
  t.equal(await count(telemetry.authentications, { result: 'rejected' }), headers.length);
  t.same(reviews.tokenReviews, []);
});

t.test('a token TokenReview knows is its caller; one it does not know is a 401', async (t) => {
  const { access, reviews, telemetry } = setup();
  t.same(await access.authenticate(`Bearer ${TOKEN}`, ADDRESS), alice);
  const longest = `${'a'.repeat(8191)}=`;
  reviews.tokens.set(longest, { username: 'bob', groups: [] });
  t.same(
    await access.authenticate(`Bearer ${longest}`, ADDRESS),
    { username: 'bob', groups: [] },
    '8192 characters',
  );
  t.same(reviews.tokenReviews, [TOKEN, longest], 'the token itself is reviewed');

  const err = await apiError(t, access.authenticate('Bearer not-a-token', ADDRESS));
  t.match(err, { statusCode: 401, code: 'PM_ERR_UNAUTHENTICATED', message: 'the bearer token is not valid' });
  t.equal(await count(telemetry.authentications, { result: 'authenticated' }), 2);
  t.equal(await count(telemetry.authentications, { result: 'rejected' }), 1);
});

t.test('TokenReview answers are cached per token, the unknown ones too', async (t) => {
  const { access, reviews } = setup();
  await Promise.all([
    access.authenticate(`Bearer ${TOKEN}`, ADDRESS),
    access.authenticate(`Bearer ${TOKEN}`, ADDRESS),
  ]);
  await access.authenticate(`Bearer ${TOKEN}`, ADDRESS);
  for (let i = 0; i < 2; i++) await apiError(t, access.authenticate('Bearer unknown', ADDRESS));
  t.same(reviews.tokenReviews, [TOKEN, 'unknown'], 'one review per token');
});

t.test('TokenReview answers expire after ttlMs; with 0 nothing is kept', async (t) => {
  const short = setup({ ttlMs: 20 });
  await short.access.authenticate(`Bearer ${TOKEN}`, ADDRESS);
  await sleep(40);
  await short.access.authenticate(`Bearer ${TOKEN}`, ADDRESS);
  t.equal(short.reviews.tokenReviews.length, 2, 'reviewed again once expired');

  const none = setup({ ttlMs: 0 });
  await none.access.authenticate(`Bearer ${TOKEN}`, ADDRESS);
  await none.access.authenticate(`Bearer ${TOKEN}`, ADDRESS);
  t.equal(none.reviews.tokenReviews.length, 2);
});

t.test('an unreachable Kubernetes API is a 503, and the failure is not cached', async (t) => {
  const { access, reviews, telemetry } = setup();
  reviews.failure = new KubeUnavailableError('TokenReview', new Error('connect ECONNREFUSED'));
  const err = await apiError(t, access.authenticate(`Bearer ${TOKEN}`, ADDRESS));
  t.match(err, {
    statusCode: 503,
    code: 'PM_ERR_AUTH_UNAVAILABLE',
    message: 'the Kubernetes API did not answer the TokenReview that checks the caller; retry later',
  });
  t.equal(await count(telemetry.authentications, { result: 'unavailable' }), 1);
  t.equal(await count(telemetry.backendErrors, { backend: 'kubernetes' }), 1);

  reviews.failure = undefined;
  t.same(await access.authenticate(`Bearer ${TOKEN}`, ADDRESS), alice, 'reviewed again once it is back');
  t.equal(reviews.tokenReviews.length, 2);
});

t.test('other review failures pass through unchanged', async (t) => {
  const { access, reviews, telemetry } = setup();
  const bug = new TypeError('a bug');
  reviews.failure = bug;
  await t.rejects(access.authenticate(`Bearer ${TOKEN}`, ADDRESS), bug);
  await t.rejects(access.mayRead(alice, 'team-a'), bug);
  t.equal(await count(telemetry.backendErrors, { backend: 'kubernetes' }), 2, 'still a backend error');
});

t.test('mayRead asks SubjectAccessReview for get in the namespace, or cluster-wide', async (t) => {
  const { access, reviews, telemetry } = setup();
  reviews.allowed.add('get team-a');
  reviews.allowed.add('get team-a/dump');
  reviews.allowed.add('get ');
  t.equal(await access.mayRead(alice, 'team-a'), true);
  t.equal(await access.mayRead(alice, 'team-b'), false);
  t.equal(await access.mayRead(alice, 'team-a', 'dump'), true);
  t.equal(await access.mayRead(alice, undefined), true, 'a host process: cluster-wide rights');
  t.same(reviews.accessReviews, [
    { verb: 'get', namespace: 'team-a', subresource: undefined },
    { verb: 'get', namespace: 'team-b', subresource: undefined },
    { verb: 'get', namespace: 'team-a', subresource: 'dump' },
    { verb: 'get', namespace: '', subresource: undefined },
  ]);
  t.equal(await count(telemetry.accessReviews, { verb: 'get', allowed: 'true' }), 3);
  t.equal(await count(telemetry.accessReviews, { verb: 'get', allowed: 'false' }), 1);
});

t.test('access decisions are cached per caller identity and question', async (t) => {
  const { access, reviews, telemetry } = setup();
  reviews.allowed.add('get team-a');
  await access.mayRead(alice, 'team-a');
  await access.mayRead({ ...alice, groups: ['ops', 'dev'] }, 'team-a');
  t.equal(reviews.accessReviews.length, 1, 'the order of the groups does not matter');

  await access.mayRead(alice, 'team-a', 'dump');
  await access.can(alice, { verb: 'list', namespace: 'team-a' });
  await access.mayRead({ ...alice, uid: 'u-2' }, 'team-a');
  await access.mayRead({ ...alice, groups: ['dev'] }, 'team-a');
  await access.mayRead({ ...alice, username: 'mallory' }, 'team-a');
  t.equal(reviews.accessReviews.length, 6, 'another subresource, verb, uid, group set or user: asked again');
  t.equal(await count(telemetry.accessReviews, {}), 6, 'only cache misses are counted');
});

t.test('a SubjectAccessReview the API cannot answer is a 503, not a denial', async (t) => {
  const { access, reviews } = setup();
  reviews.allowed.add('get team-a');
  reviews.failure = new KubeUnavailableError('SubjectAccessReview', new Error('503 Service Unavailable'));
  const err = await apiError(t, access.mayRead(alice, 'team-a'));
  t.match(err, { statusCode: 503, code: 'PM_ERR_AUTH_UNAVAILABLE' });
  reviews.failure = undefined;
  t.equal(await access.mayRead(alice, 'team-a'), true, 'not cached');
});

t.test('a search of one namespace needs list there, else 403', async (t) => {
  const { access, reviews, indexLookups } = setup({ index: ['team-a', 'team-b'] });
  reviews.allowed.add('list team-a');
  t.same(await access.listScope(alice, 'team-a'), { all: false, namespaces: ['team-a'] });
  const err = await apiError(t, access.listScope(alice, 'team-b'));
  t.match(err, {
    statusCode: 403,
    code: 'PM_ERR_FORBIDDEN',
    message: 'alice may not list coredumps.podmortem.io in namespace team-b',
  });
  t.equal(indexLookups(), 0, 'the index is not asked');
  t.same(
    reviews.accessReviews.map((a) => a.namespace),
    ['team-a', 'team-b'],
    'no cluster-wide review either',
  );
});

t.test('a search of every namespace: all of them with cluster-wide list', async (t) => {
  const { access, reviews, indexLookups } = setup({ index: ['team-a'] });
  reviews.allowed.add('list ');
  t.same(await access.listScope(alice), { all: true });
  t.equal(indexLookups(), 0);
  t.same(reviews.accessReviews, [{ verb: 'list', namespace: '' }]);
});

t.test('a search of every namespace: else those of the index the caller may list', async (t) => {
  const index = Array.from({ length: 40 }, (_, i) => `ns-${String(i).padStart(2, '0')}`);
  const { access, reviews, indexLookups } = setup({ index });
  for (const ns of ['ns-03', 'ns-17', 'ns-39']) reviews.allowed.add(`list ${ns}`);
  t.same(
    await access.listScope(alice),
    { all: false, namespaces: ['ns-03', 'ns-17', 'ns-39'] },
    'index order',
  );
  t.equal(reviews.accessReviews.length, 41, 'cluster-wide, then each namespace');
  t.equal(reviews.mostInFlight, 16, 'sixteen reviews at a time');

  t.same(await access.listScope({ ...alice, username: 'bob' }), {
    all: false,
    namespaces: ['ns-03', 'ns-17', 'ns-39'],
  });
  t.equal(indexLookups(), 1, 'the namespaces of the index are cached');
});

t.test('a search of every namespace: 403 when the caller may list none with crashes', async (t) => {
  const { access } = setup({ index: ['team-a', 'team-b'] });
  const err = await apiError(t, access.listScope(alice));
  t.match(err, {
    statusCode: 403,
    code: 'PM_ERR_FORBIDDEN',
    message:
      'alice may not list coredumps.podmortem.io in any namespace that has crashes ' +
      '(querystring/namespace names one to search)',
  });
  const empty = setup({ index: [] });
  t.match(await apiError(t, empty.access.listScope(alice)), { statusCode: 403 }, 'an empty index too');
});

t.test('the namespaces of the index expire after namespaceTtlMs', async (t) => {
  const { access, reviews, indexLookups } = setup({ index: ['team-a'], namespaceTtlMs: 20 });
  reviews.allowed.add('list team-a');
  await access.listScope(alice);
  await access.listScope(alice);
  t.equal(indexLookups(), 1);
  await sleep(40);
  await access.listScope(alice);
  t.equal(indexLookups(), 2);
});

t.test('an address guessing tokens, in parallel too, causes at most `max` TokenReviews', async (t) => {
  const { access, reviews, telemetry } = setup({ logins: new LoginLimiter({ max: 5, windowMs: 60_000 }) });
  const answers = await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      access.authenticate(`Bearer guess-${i}`, ADDRESS).then(
        () => 200,
        (err: unknown) => (err instanceof ApiError ? err.statusCode : 500),
      ),
    ),
  );
  t.equal(reviews.tokenReviews.length, 5, 'five reviews');
  t.same(
    [answers.filter((s) => s === 401).length, answers.filter((s) => s === 429).length],
    [5, 35],
    'five 401s, the rest 429 before any review',
  );
  t.equal(await count(telemetry.authentications, { result: 'limited' }), 35);
  const limited = await apiError(t, access.authenticate(`Bearer ${TOKEN}`, ADDRESS));
  t.match(limited, { statusCode: 429, code: 'PM_ERR_RATE_LIMITED' });
  t.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After in seconds');
  t.same(await access.authenticate(`Bearer ${TOKEN}`, '192.0.2.2'), alice, 'another address is not limited');
  await apiError(t, access.authenticate('Bearer guess-0', ADDRESS));
  t.equal(reviews.tokenReviews.length, 6, 'a refused token already known is answered from the cache');
});
