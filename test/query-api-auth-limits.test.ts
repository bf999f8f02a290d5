import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import { freePort } from './support/ports.ts';
import { addUser, bearer, harness, makeCrash } from './support/query-api.ts';

// What an attacker does to the API's authentication: a Kubernetes API that takes requests and
// never answers, one that refuses connections, and random tokens at volume. Every request is
// answered (a 503 or a 429, never a hang), the client is never told an internal address, and a
// token-guessing address costs the Kubernetes API a bounded number of TokenReviews.

const TOKEN_REVIEWS = 'POST /apis/authentication.k8s.io/v1/tokenreviews';
const ACCESS_REVIEWS = 'POST /apis/authorization.k8s.io/v1/subjectaccessreviews';
/** Not a speed bound: a request not answered by then is a hang. */
const HANG_MS = 30_000;

const h = await harness({ kubeTimeoutMs: 500, authFailureMax: 20, authFailureWindowMs: 600_000 });
t.teardown(() => h.close());
const alice = addUser(h.kube, 'alice', ['team-a']);
await h.index.add([makeCrash({ namespace: 'team-a', pod: 'api-0', at: Date.now() - 60_000 }).event]);

let nextAddress = 1;
/** Each test comes from an address of its own, so the failed-login windows do not mix. */
const address = () => `10.9.0.${nextAddress++}`;

async function search(token: string, from: string) {
  const res = await Promise.race([
    h.app.inject({ url: '/v1/crashes?namespace=team-a', headers: bearer(token), remoteAddress: from }),
    new Promise<'hang'>((resolve) => setTimeout(() => resolve('hang'), HANG_MS).unref()),
  ]);
  if (res === 'hang') return { status: 0, code: 'hang', message: 'not answered', headers: {} };
  const body = res.json<{ code?: string; message?: string }>();
  return { status: res.statusCode, code: body.code, message: body.message ?? '', headers: res.headers };
}

function namesNoAddress(t: Test, message: string, what: string) {
  const kubeUrl = new URL(h.kube.url);
  t.notMatch(message, kubeUrl.host, `${what}: the Kubernetes API's address is not told`);
  t.notMatch(message, /\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b/, `${what}: no IP address at all`);
  t.notMatch(message, /ECONN|ETIMEDOUT|EHOSTUNREACH|socket/i, `${what}: no socket error`);
}

t.test(
  'a Kubernetes API that never answers: TokenReview and SubjectAccessReview time out as 503',
  async (t) => {
    const from = address();
    t.equal((await search(alice, from)).status, 200, 'alice searches while the API answers');
    h.kube.stall();
    t.teardown(() => h.kube.stall(false));

    const stranger = `tok-${randomBytes(16).toString('hex')}`;
    const r = await search(stranger, from);
    t.equal(r.status, 503, 'a token never seen: 503, not a hang');
    t.equal(r.code, 'PM_ERR_AUTH_UNAVAILABLE');
    t.equal(
      r.message,
      'the Kubernetes API did not answer the TokenReview that checks the caller; retry later',
    );
    namesNoAddress(t, r.message, 'TokenReview');

    // alice's token is remembered; her access in another namespace is not, and needs a review.
    const sars = h.kube.requests.get(ACCESS_REVIEWS) ?? 0;
    const res = await h.app.inject({
      url: '/v1/crashes?namespace=team-z',
      headers: bearer(alice),
      remoteAddress: from,
    });
    t.equal(res.statusCode, 503, 'a SubjectAccessReview not answered: 503');
    t.equal(
      res.json<{ message: string }>().message,
      'the Kubernetes API did not answer the SubjectAccessReview that checks the caller; retry later',
    );
    t.ok((h.kube.requests.get(ACCESS_REVIEWS) ?? 0) > sars, 'the review was sent and went unanswered');
    t.ok(
      h.logs.lines.some((l) => l.msg === 'the Kubernetes API did not answer a review'),
      'the reason is logged for the operator',
    );
    t.notOk(
      h.logs.lines.some((l) => JSON.stringify(l).includes(stranger)),
      'the token is in no log line',
    );

    h.kube.stall(false);
    const after = await search(`tok-${randomBytes(16).toString('hex')}`, address());
    t.equal(after.status, 401, 'answered again once the API answers: an unknown token is 401');
    t.equal((await search(alice, from)).status, 200, 'alice is served again');
  },
);

t.test('a Kubernetes API that refuses connections: 503 naming no address', async (t) => {
  await h.kube.stop();
  t.teardown(() => h.kube.restart());
  const r = await search(`tok-${randomBytes(16).toString('hex')}`, address());
  t.equal(r.status, 503);
  t.equal(r.code, 'PM_ERR_AUTH_UNAVAILABLE');
  namesNoAddress(t, r.message, 'refused connection');
});

t.test('random tokens at volume cost at most authFailureMax TokenReviews per address', async (t) => {
  const attacker = address();
  const before = h.kube.requests.get(TOKEN_REVIEWS) ?? 0;
  const statuses = new Map<number, number>();
  for (let i = 0; i < 500; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: 50 }, () => search(`tok-${randomBytes(24).toString('base64url')}`, attacker)),
    );
    for (const r of batch) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
  }
  const reviews = (h.kube.requests.get(TOKEN_REVIEWS) ?? 0) - before;
  t.comment(
    `500 random tokens from one address: ${reviews} TokenReviews, answers ${JSON.stringify([...statuses])}`,
  );
  t.ok(reviews <= 20, `at most 20 TokenReviews (${reviews})`);
  t.equal(statuses.get(401), reviews, 'each reviewed token: 401');
  t.equal(statuses.get(429), 500 - reviews, 'every other request: 429 before any review');
  t.equal([...statuses.keys()].filter((s) => s !== 401 && s !== 429).length, 0, 'nothing else, no 5xx');

  const carol = addUser(h.kube, 'carol', ['team-a']);
  const limited = await search(carol, attacker);
  t.equal(limited.status, 429, 'a token not yet known from that address waits too, valid or not');
  t.equal(limited.code, 'PM_ERR_RATE_LIMITED');
  t.match(limited.message, /too many failed authentications from this address/);
  t.ok(Number(limited.headers['retry-after']) > 0, 'with Retry-After');
  t.equal((await search(alice, attacker)).status, 200, 'a token already known costs no review: served');
  t.equal((await search(carol, address())).status, 200, 'carol from her own address is served');

  const missing = await h.app.inject({ url: '/v1/crashes', remoteAddress: address() });
  t.equal(missing.statusCode, 401, 'no token at all: still 401 (and counted)');
});

t.test('Elasticsearch away: the 503 names Elasticsearch, not its address', async (t) => {
  const port = await freePort();
  const down = await harness({ elasticsearchUrl: `http://127.0.0.1:${port}`, elasticsearchTimeoutMs: 1000 });
  t.teardown(() => down.close());
  const bob = addUser(down.kube, 'bob', ['team-a']);
  const res = await down.app.inject({ url: '/v1/crashes?namespace=team-a', headers: bearer(bob) });
  t.equal(res.statusCode, 503);
  const body = res.json<{ code: string; message: string }>();
  t.same(
    [body.code, body.message],
    ['PM_ERR_BACKEND_UNAVAILABLE', 'Elasticsearch is unavailable; retry later'],
  );
  t.notMatch(body.message, String(port));
  t.ok(
    down.logs.lines.some((l) => l.msg === 'request failed' && String(l.detail).length > 0),
    'the backend’s own error is logged',
  );
});

t.test(
  'behind a trusted proxy the limit is per forwarded client; an untrusted peer cannot pick one',
  async (t) => {
    const proxy = '10.9.1.1';
    const behind = await harness({ authFailureMax: 3, authFailureWindowMs: 600_000, trustProxy: [proxy] });
    t.teardown(() => behind.close());
    const dave = addUser(behind.kube, 'dave', ['team-a']);
    const via = (from: string, client: string, token: string) =>
      behind.app.inject({
        url: '/v1/crashes?namespace=team-a',
        headers: { ...bearer(token), 'x-forwarded-for': client },
        remoteAddress: from,
      });
    const guesses = [];
    for (let i = 0; i < 5; i++) guesses.push((await via(proxy, '192.0.2.10', `tok-${i}`)).statusCode);
    t.same(guesses, [401, 401, 401, 429, 429], 'the guessing client is limited after 3');
    t.equal(
      (await via(proxy, '192.0.2.20', dave)).statusCode,
      200,
      'another client through the same proxy: served',
    );

    const spoofer = '10.9.1.2';
    const spoofed = [];
    for (let i = 0; i < 4; i++)
      spoofed.push((await via(spoofer, `192.0.2.${30 + i}`, `tok-s${i}`)).statusCode);
    t.same(spoofed, [401, 401, 401, 429], 'X-Forwarded-For from an untrusted peer is ignored: one limit');
  },
);
