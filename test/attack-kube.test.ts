import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import { AttackCounter, secretsOf, type Answer } from './support/attack-count.ts';
import { startAttackTarget } from './support/attack-target.ts';
import { addUser, bearer } from './support/query-api.ts';

// The Kubernetes API under attack, and tokens at volume, against the real API over HTTP: a
// Kubernetes API that takes requests and never answers them, one that refuses connections, and
// an address trying random tokens by the thousand, in parallel. Every request on every
// authenticated route is answered — a 503 that names the review and no address, a 401, a 429 —
// none hangs, none leaks, none is a 500; a guessing address costs the Kubernetes API a bounded
// number of TokenReviews; and the API serves its callers again as soon as Kubernetes answers.

const TOKEN_REVIEWS = 'POST /apis/authentication.k8s.io/v1/tokenreviews';
const FAILURE_MAX = 20;
const target = await startAttackTarget({
  kubeTimeoutMs: 1000,
  authFailureMax: FAILURE_MAX,
  authFailureWindowMs: 600_000,
});
t.teardown(() => target.close());
const { h } = target;
const c = new AttackCounter('kube API and tokens');
const { a, b, host } = target.crashes;
const forbidden = [...secretsOf(b, target.buildIds.b), ...secretsOf(host, target.buildIds.host)];

// Each part of the attack from a loopback address of its own: the failed-login limit counts per
// address, so one part's failures do not decide the next one's answers.
let nextAddress = 10;
const address = () => `127.0.0.${nextAddress++}`;

const routes = [
  '/v1/crashes',
  '/v1/crashes?namespace=team-a',
  `/v1/crashes/${a.event.crash.id}`,
  `/v1/crashes/${a.event.crash.id}/dump`,
  `/v1/crashes/${a.event.crash.id}/context`,
  '/v1/namespaces/team-a/pods/api-0/dumps.tar.gz',
  '/v1/stats',
  '/v1/groups',
  `/buildid/${target.buildIds.a}/executable`,
];

function kubeAddressIn(t: Test, r: Answer, what: string): void {
  const text = r.body.toString('utf8');
  t.notMatch(text, new URL(h.kube.url).host, `${what}: the Kubernetes API's address is not told`);
  t.notMatch(text, /\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b/, `${what}: no IP address at all`);
  t.notMatch(text, /ECONN|ETIMEDOUT|EHOSTUNREACH|socket/i, `${what}: no socket error`);
}

/** Every route, in parallel, each by a user never seen (no cached review): the answers. */
async function everyRouteAsStrangers(from: string): Promise<(Answer | undefined)[]> {
  return Promise.all(
    routes.map((url, i) => {
      const token = addUser(h.kube, `stranger-${from}-${i}`, ['team-a']);
      return c.send(`${target.url}${url}`, {
        headers: bearer(token),
        secrets: forbidden,
        from,
        expect5xx: [503],
      });
    }),
  );
}

t.test('a Kubernetes API that takes requests and never answers: 503s, no hang', async (t) => {
  h.kube.stall();
  t.teardown(() => h.kube.stall(false));
  const from = address();
  const answers = await everyRouteAsStrangers(from);
  for (const [i, r] of answers.entries()) {
    if (!r) continue;
    t.equal(r.status, 503, `${routes[i] ?? ''}: 503`);
    kubeAddressIn(t, r, routes[i] ?? '');
  }
  for (const url of ['/healthz', '/readyz']) {
    t.equal((await c.send(`${target.url}${url}`, { from }))?.status, 200, `${url} answers meanwhile`);
  }
  h.kube.stall(false);
  const again = await everyRouteAsStrangers(address());
  t.same(
    again.map((r) => r?.status),
    routes.map(() => 200),
    'every route serves again once the Kubernetes API answers',
  );
});

t.test('a Kubernetes API that refuses connections: 503s naming no address', async (t) => {
  await h.kube.stop();
  t.teardown(() => h.kube.restart());
  const answers = await everyRouteAsStrangers(address());
  for (const [i, r] of answers.entries()) {
    if (!r) continue;
    t.equal(r.status, 503, `${routes[i] ?? ''}: 503`);
    kubeAddressIn(t, r, routes[i] ?? '');
  }
  await h.kube.restart();
  const again = await everyRouteAsStrangers(address());
  t.same(
    again.map((r) => r?.status),
    routes.map(() => 200),
    'every route serves again once the Kubernetes API is back',
  );
});

t.test('the same bad token again and again: one TokenReview', async (t) => {
  const from = address();
  const token = `tok-${randomBytes(24).toString('base64url')}`;
  const before = h.kube.requests.get(TOKEN_REVIEWS) ?? 0;
  for (let i = 0; i < 10; i++) {
    const r = await c.send(`${target.url}/v1/crashes`, { headers: bearer(token), from });
    t.equal(r?.status, 401, `attempt ${i + 1}: 401`);
  }
  t.equal((h.kube.requests.get(TOKEN_REVIEWS) ?? 0) - before, 1, 'the refusal is remembered');
});

t.test('random tokens at volume, in parallel, on every route', async (t) => {
  const from = address();
  const before = h.kube.requests.get(TOKEN_REVIEWS) ?? 0;
  const statuses = new Map<number, number>();
  const total = 2000;
  for (let i = 0; i < total; i += 100) {
    const batch = await Promise.all(
      Array.from({ length: 100 }, (_, j) =>
        c.send(`${target.url}${routes[(i + j) % routes.length] ?? '/v1/crashes'}`, {
          headers: bearer(`tok-${randomBytes(24).toString('base64url')}`),
          secrets: [...forbidden, ...secretsOf(a, target.buildIds.a)],
          from,
        }),
      ),
    );
    for (const r of batch) if (r) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
  }
  const reviews = (h.kube.requests.get(TOKEN_REVIEWS) ?? 0) - before;
  t.comment(
    `${total} random tokens from one address: ${reviews} TokenReviews, answers ${JSON.stringify([...statuses])}`,
  );
  t.ok(reviews <= FAILURE_MAX, `at most ${FAILURE_MAX} TokenReviews (${reviews})`);
  t.same(
    [...statuses.keys()].filter((s) => s !== 401 && s !== 429),
    [],
    'every answer a 401 or a 429',
  );
  const alice = target.identities.find((i) => i.name === 'alice')?.token ?? '';
  const served = await c.send(`${target.url}/v1/crashes/${a.event.crash.id}`, {
    headers: bearer(alice),
    from: address(),
  });
  t.equal(served?.status, 200, 'a caller from another address is served all along');
});

t.test('summary', async (t) => {
  c.report(t);
});
