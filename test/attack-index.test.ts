import t from 'tap';
import { crashIndexFor, crashIndexForId, type CrashEvent } from '@podmortem/contract';
import { AttackCounter, secretsOf } from './support/attack-count.ts';
import { startAttackTarget } from './support/attack-target.ts';
import { bearer, makeCrash, sha256 } from './support/query-api.ts';

// The index under attack, against the real API over HTTP: one crash id in two monthly indices —
// a forged copy of team-a's crash under team-b, in the month before and the month after the one
// its id names, and a copy of team-b's crash under team-a. Each crash is read from the index its
// id's time names: its owner is served the real one, its dump byte for byte; no caller is ever
// served the other namespace's copy, and nothing of a crash reaches a caller of another namespace.

const target = await startAttackTarget();
t.teardown(() => target.close());
const { h } = target;
const c = new AttackCounter('index');
const { a, b } = target.crashes;
const token = (name: string) => target.identities.find((i) => i.name === name)?.token ?? '';
const month = 31 * 86_400_000;

/** A copy of `crash`'s event, same id, moved to another namespace and another month's index. */
function forged(event: CrashEvent, namespace: string, shiftMs: number): CrashEvent {
  const copy = makeCrash({ namespace, pod: 'forged-0', at: Date.parse(event['@timestamp']) + shiftMs }).event;
  copy.crash.id = event.crash.id;
  delete copy.dump.path;
  return copy;
}

const copies = [
  forged(a.event, 'team-b', -month),
  forged(a.event, 'team-b', month),
  forged(b.event, 'team-a', -month),
];
await h.index.es.bulk({
  refresh: 'wait_for',
  operations: copies.flatMap((e) => [
    { index: { _index: crashIndexFor(e['@timestamp'], h.index.alias), _id: e.crash.id } },
    e,
  ]),
});

t.test('the copies really are in other indices than their ids name', async (t) => {
  for (const e of copies) {
    const idx = crashIndexFor(e['@timestamp'], h.index.alias);
    t.not(idx, crashIndexForId(e.crash.id, h.index.alias), `${idx} is not the id's month`);
    const found = await h.index.es.search({ index: h.index.alias, query: { ids: { values: [e.crash.id] } } });
    t.ok(found.hits.hits.length >= 2, `${e.crash.id}: several documents with that id`);
  }
});

t.test('each owner reads its own crash; nobody reads the other namespace’s copy', async (t) => {
  for (let round = 0; round < 10; round++) {
    const mine = await c.send(`${target.url}/v1/crashes/${a.event.crash.id}`, {
      headers: bearer(token('alice')),
      secrets: secretsOf(b),
    });
    t.equal(mine?.status, 200, 'alice gets her crash');
    const got = JSON.parse(mine?.body.toString('utf8') ?? '{}') as CrashEvent;
    t.equal(got.kubernetes?.namespace, 'team-a', 'the team-a crash, not the team-b copy');
    t.equal(got.kubernetes?.pod.name, 'api-0');
    const dump = await c.send(`${target.url}/v1/crashes/${a.event.crash.id}/dump`, {
      headers: bearer(token('alice')),
    });
    t.equal(sha256(dump?.body ?? Buffer.alloc(0)), sha256(a.stored ?? Buffer.alloc(0)), 'her dump');

    const theirs = await c.send(`${target.url}/v1/crashes/${b.event.crash.id}`, {
      headers: bearer(token('bob')),
      secrets: secretsOf(a),
    });
    t.equal(theirs?.status, 200, 'bob gets his crash');
    t.equal(
      (JSON.parse(theirs?.body.toString('utf8') ?? '{}') as CrashEvent).kubernetes?.namespace,
      'team-b',
    );

    // The forged copies, asked for by the namespace they were put in: not served.
    for (const [who, id] of [
      ['bob', a.event.crash.id],
      ['alice', b.event.crash.id],
    ] as const) {
      for (const suffix of ['', '/dump', '/context']) {
        const r = await c.send(`${target.url}/v1/crashes/${id}${suffix}`, {
          headers: bearer(token(who)),
          secrets: secretsOf(who === 'bob' ? a : b),
        });
        t.equal(r?.status, 404, `${who}: ${suffix || 'the event'} of the copy in their namespace → 404`);
      }
    }
  }
});

t.test('summary', async (t) => {
  c.report(t);
});
