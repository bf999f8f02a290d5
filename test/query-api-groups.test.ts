import { randomUUID } from 'node:crypto';
import t from 'tap';
import { crashIndexFor, type CrashEvent } from '@podmortem/contract';
import { addUser, bearer, harness, makeCrash } from './support/query-api.ts';

// GET /v1/groups and /v1/groups/{signature} against the real Elasticsearch: crashes grouped by
// signature with their pods, nodes and first/last crash; each caller's figures over their own
// namespaces only; `new` around its window; the indexer's placeholders are no crashes; bad
// parameters are a 400 naming them.

const h = await harness();
t.teardown(() => h.close());

const hour = 3_600_000;
const now = Date.now();
const SIG_A = 'a'.repeat(32);
const SIG_B = 'b'.repeat(32);
const SIG_SHARED = 'c'.repeat(32);
const SIG_OLD = 'd'.repeat(32);
const SIG_PLACEHOLDER = 'e'.repeat(32);

// One uid per pod: the crashes of one pod are of one pod.
const uids = new Map<string, string>();
const uidOf = (pod: string) => uids.get(pod) ?? uids.set(pod, randomUUID()).get(pod) ?? '';
const crash = (ns: string, pod: string, node: string, ago: number, signature: string) =>
  makeCrash({
    namespace: ns,
    pod,
    uid: uidOf(`${ns}/${pod}`),
    node,
    at: now - ago,
    signature,
    title: `SIGSEGV in f_${signature[0]}`,
  }).event;

// SIG_A: three pods of team-a on two nodes; SIG_B: one pod, twice; SIG_SHARED: once in team-a,
// twice in team-b; SIG_OLD: first crashed three days ago, again 90 minutes ago.
const a1 = crash('team-a', 'api-0', 'node-1', 5 * hour, SIG_A);
const a2 = crash('team-a', 'api-1', 'node-1', 3 * hour, SIG_A);
const a3 = crash('team-a', 'api-2', 'node-2', 1 * hour, SIG_A);
const b1 = crash('team-a', 'web-0', 'node-1', 2 * hour, SIG_B);
const b2 = crash('team-a', 'web-0', 'node-1', 0.5 * hour, SIG_B);
const sharedA = crash('team-a', 'api-0', 'node-1', 30 * hour, SIG_SHARED);
const sharedB1 = crash('team-b', 'db-0', 'node-3', 2 * hour, SIG_SHARED);
const sharedB2 = crash('team-b', 'db-1', 'node-3', 4 * hour, SIG_SHARED);
const old1 = crash('team-a', 'job-0', 'node-2', 72 * hour, SIG_OLD);
const old2 = crash('team-a', 'job-1', 'node-2', 1.5 * hour, SIG_OLD);
await h.index.add([a1, a2, a3, b1, b2, sharedA, sharedB1, sharedB2, old1, old2]);

// The indexer's placeholder for an analysis ahead of its crash (no schema_version): what it holds.
async function indexPlaceholder(of: CrashEvent, analysis: Record<string, string>): Promise<void> {
  await h.index.es.index({
    index: crashIndexFor(of['@timestamp'], h.index.alias),
    id: of.crash.id,
    document: {
      crash: of.crash,
      '@timestamp': of['@timestamp'],
      kubernetes: { namespace: 'team-a' },
      analysis,
    },
    refresh: 'wait_for',
  });
}
const placeholder = crash('team-a', 'api-0', 'node-1', 1 * hour, SIG_PLACEHOLDER);
await indexPlaceholder(placeholder, { signature: SIG_PLACEHOLDER, title: 'placeholder', status: 'ok' });
// A placeholder of an existing signature must not add to its count either.
const placeholderA = crash('team-a', 'api-9', 'node-9', 1 * hour, SIG_A);
await indexPlaceholder(placeholderA, { signature: SIG_A });

const alice = addUser(h.kube, 'alice', ['team-a']);
const bob = addUser(h.kube, 'bob', ['team-b']);
const admin = addUser(h.kube, 'admin', ['']);

interface Group {
  signature: string;
  title?: string;
  count: number;
  first_seen: string;
  last_seen: string;
  first_seen_ever: string;
  new: boolean;
  pods: { count: number; names: string[] };
  nodes: { count: number; names: string[] };
  namespaces: string[];
  example_crash_id: string;
}

/** What the two routes answer, and their errors. */
interface Answer {
  code?: string;
  message?: string;
  groups?: Group[];
  group?: Group;
  new_within?: string;
  crashes?: { crash: { id: string } }[];
}

async function get(url: string, token: string) {
  const res = await h.app.inject({ url, headers: bearer(token) });
  return { status: res.statusCode, body: res.json<Answer>() };
}
const groupsOf = async (url: string, token: string) => (await get(url, token)).body.groups ?? [];
const bySig = (groups: Group[]) => new Map(groups.map((g) => [g.signature, g]));

t.test('the same signature in three pods is one group of three crashes and three pods', async (t) => {
  const groups = bySig(await groupsOf('/v1/groups', alice));
  const g = groups.get(SIG_A);
  t.match(g, {
    signature: SIG_A,
    title: 'SIGSEGV in f_a',
    count: 3,
    first_seen: a1['@timestamp'],
    last_seen: a3['@timestamp'],
    first_seen_ever: a1['@timestamp'],
    pods: { count: 3 },
    nodes: { count: 2 },
    namespaces: ['team-a'],
    example_crash_id: a3.crash.id,
  });
  t.same(g?.pods.names.sort(), ['api-0', 'api-1', 'api-2']);
  t.same(g?.nodes.names.sort(), ['node-1', 'node-2']);
});

t.test('two signatures are two groups, sorted by count or by last crash', async (t) => {
  const groups = await groupsOf('/v1/groups', alice);
  t.same(
    groups.map((g) => [g.signature, g.count]),
    [
      [SIG_A, 3],
      [SIG_B, 2],
      [SIG_OLD, 2],
      [SIG_SHARED, 1],
    ],
    'most crashes first (the default range is 7 days), a tie by the latest crash',
  );
  const b = bySig(groups).get(SIG_B);
  t.match(b, { count: 2, pods: { count: 1, names: ['web-0'] }, example_crash_id: b2.crash.id });
  const latest = await groupsOf('/v1/groups?sort=last_seen', alice);
  t.same(
    latest.map((g) => g.signature),
    [SIG_B, SIG_A, SIG_OLD, SIG_SHARED],
    'latest crash first',
  );
  t.same((await groupsOf('/v1/groups?limit=1', alice)).length, 1, 'limit bounds the answer');
  const windowed = await groupsOf(`/v1/groups?from=${new Date(now - 4 * hour).toISOString()}`, alice);
  t.same(
    bySig(windowed).get(SIG_A)?.count,
    2,
    'counts are over the time range: two of the three crashes of SIG_A are within 4 hours',
  );
  t.equal(bySig(windowed).get(SIG_A)?.first_seen_ever, a1['@timestamp'], 'first_seen_ever is over all time');
  t.notOk(bySig(windowed).has(SIG_SHARED), 'a group with no crash in the range is not listed');
});

t.test("each caller's figures are over their own namespaces only", async (t) => {
  const aliceGroups = bySig(await groupsOf('/v1/groups', alice));
  const bobGroups = bySig(await groupsOf('/v1/groups', bob));
  t.match(aliceGroups.get(SIG_SHARED), {
    count: 1,
    pods: { count: 1, names: ['api-0'] },
    namespaces: ['team-a'],
    first_seen_ever: sharedA['@timestamp'],
  });
  t.match(bobGroups.get(SIG_SHARED), {
    count: 2,
    pods: { count: 2 },
    nodes: { count: 1, names: ['node-3'] },
    namespaces: ['team-b'],
    first_seen_ever: sharedB2['@timestamp'],
    new: true,
  });
  t.equal(aliceGroups.get(SIG_SHARED)?.new, false, "alice's first crash of it is 30 hours old");
  t.same([...bobGroups.keys()], [SIG_SHARED], "bob sees none of team-a's groups");
  const all = bySig(await groupsOf('/v1/groups', admin));
  t.match(all.get(SIG_SHARED), { count: 3, namespaces: ['team-b', 'team-a'] }, 'cluster-wide: all three');
  const one = await get(`/v1/groups/${SIG_SHARED}`, bob);
  t.equal(one.status, 200);
  t.equal(one.body.group?.count, 2);
  t.same(
    (one.body.crashes ?? []).map((c) => c.crash.id),
    [sharedB1.crash.id, sharedB2.crash.id],
    "bob's crashes of the group, newest first, none of team-a",
  );
  const hidden = await get(`/v1/groups/${SIG_A}`, bob);
  t.equal(hidden.status, 404, 'a signature only team-a has is a 404 to bob');
  t.match(hidden.body, {
    code: 'PM_ERR_GROUP_NOT_FOUND',
    message: `no crashes with signature ${SIG_A} found`,
  });
  const forbidden = await get('/v1/groups?namespace=team-a', bob);
  t.equal(forbidden.status, 403, 'naming a namespace the caller may not list');
  t.match(forbidden.body.message, 'bob may not list coredumps.podmortem.io in namespace team-a');
});

t.test('new: the first crash within the window, over all time', async (t) => {
  const groups = bySig(await groupsOf('/v1/groups', alice));
  t.equal(groups.get(SIG_A)?.new, true, 'first crash 5 hours ago, window 24h (the default)');
  t.equal(groups.get(SIG_OLD)?.new, false, 'first crash 3 days ago, though its last was 90 minutes ago');
  const narrow = bySig(await groupsOf('/v1/groups?new_within=4h', alice));
  t.equal(narrow.get(SIG_A)?.new, false, 'first crash 5 hours ago, window 4h');
  t.equal(narrow.get(SIG_B)?.new, true, 'first crash 2 hours ago, window 4h');
  const onlyNew = await groupsOf('/v1/groups?new=true&new_within=4h', alice);
  t.same(
    onlyNew.map((g) => [g.signature, g.count]),
    [[SIG_B, 2]],
    'new=true lists only the new groups',
  );
  const wide = bySig(await groupsOf('/v1/groups?new_within=7d', alice));
  t.equal(wide.get(SIG_OLD)?.new, true, 'first crash 3 days ago, window 7d');
  const detail = await get(`/v1/groups/${SIG_OLD}`, alice);
  t.match(detail.body, {
    new_within: '24h',
    group: { count: 2, new: false, first_seen: old1['@timestamp'] },
  });
});

t.test('placeholders are no crashes: not counted, no group of their own', async (t) => {
  const groups = bySig(await groupsOf('/v1/groups', admin));
  t.notOk(groups.has(SIG_PLACEHOLDER), 'no group made of a placeholder alone');
  t.equal(groups.get(SIG_A)?.count, 3, 'the placeholder of SIG_A is not counted');
  t.equal(groups.get(SIG_A)?.pods.count, 3);
  t.equal((await get(`/v1/groups/${SIG_PLACEHOLDER}`, admin)).status, 404);
});

t.test('one group by its URL-encoded signature, with its newest crashes', async (t) => {
  const signature = 'modules/SIG SEGV?x&y';
  const odd = crash('team-a', 'odd-0', 'node-1', 1 * hour, signature);
  await h.index.add([odd]);
  const r = await get(`/v1/groups/${encodeURIComponent(signature)}`, alice);
  t.equal(r.status, 200);
  t.match(r.body.group, { signature, count: 1, example_crash_id: odd.crash.id });
  const limited = await get(`/v1/groups/${SIG_A}?limit=2`, alice);
  t.same(
    (limited.body.crashes ?? []).map((c) => c.crash.id),
    [a3.crash.id, a2.crash.id],
  );
});

t.test('bad parameters: a 400 naming them', async (t) => {
  const cases: [string, string][] = [
    ['/v1/groups?colour=red', 'querystring/colour is not a parameter of this route'],
    ['/v1/groups?new_within=1y', 'querystring/new_within has characters or a form that is not allowed'],
    ['/v1/groups?new_within=0h', 'querystring/new_within has characters or a form that is not allowed'],
    ['/v1/groups?sort=size', 'querystring/sort'],
    ['/v1/groups?limit=201', 'querystring/limit must be <= 200'],
    ['/v1/groups?limit=0', 'querystring/limit must be >= 1'],
    ['/v1/groups?from=yesterday', 'querystring/from must be an RFC 3339 date-time'],
    ['/v1/groups?namespace=Team_A', 'querystring/namespace has characters or a form that is not allowed'],
    [
      `/v1/groups?from=${new Date(now).toISOString()}&to=${new Date(now - hour).toISOString()}`,
      'querystring/to must not be before querystring/from',
    ],
    [`/v1/groups/${'x'.repeat(1025)}`, 'params/signature must NOT have more than 1024 characters'],
    [`/v1/groups/${SIG_A}?new_within=soon`, 'querystring/new_within'],
    [`/v1/groups/${SIG_A}?limit=100000`, 'querystring/limit must be <= 500'],
    [`/v1/groups/${SIG_A}?page=2`, 'querystring/page is not a parameter of this route'],
  ];
  for (const [url, message] of cases) {
    const r = await get(url, alice);
    t.equal(r.status, 400, `${url.slice(0, 80)} → 400`);
    t.match(r.body, { statusCode: 400, message }, `${url.slice(0, 80)}: ${message}`);
  }
  const anonymous = await h.app.inject({ url: '/v1/groups' });
  t.equal(anonymous.statusCode, 401, 'no token: 401');
});
