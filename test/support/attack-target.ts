import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { moduleKey } from '@podmortem/contract';
import type { Config } from '../../query-api/src/config.ts';
import { freePort } from './ports.ts';
import { addUser, harness, makeCrash, type Harness, type SeededCrash } from './query-api.ts';

// The target of the attack suite and the schema fuzzer: the real query API on the real
// Elasticsearch and a real storage root, listening on a TCP port (the attacks and schemathesis
// come over the network as a client would), seeded with a crash of team-a, one of team-b and one
// of a host process, each with a stored dump and a captured module, and three identities:
// the owner of team-a, the owner of team-b, and an authenticated user granted nothing.

export interface Identity {
  name: 'alice' | 'bob' | 'mallory';
  token: string;
  /** The namespace whose crashes this identity may read ('' for none). */
  namespace: string;
}

export interface AttackTarget {
  h: Harness;
  /** http://127.0.0.1:<port> */
  url: string;
  identities: Identity[];
  crashes: { a: SeededCrash; b: SeededCrash; host: SeededCrash };
  buildIds: { a: string; b: string; host: string };
  close(): Promise<void>;
}

export const UID_A = 'aaaaaaaa-2222-4000-8000-000000000001';
export const UID_B = 'bbbbbbbb-2222-4000-8000-000000000001';

function withModule(h: Harness, crash: SeededCrash): string {
  const buildId = randomBytes(20).toString('hex');
  const analysis = crash.event.analysis ?? {};
  analysis.build_id = buildId;
  analysis.modules = [{ path: '/app/bin/server', build_id: buildId, captured: true }];
  crash.event.analysis = analysis;
  for (const kind of ['executable', 'debuginfo'] as const) {
    const path = h.storage.path(moduleKey(buildId, kind));
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, randomBytes(4096));
  }
  return buildId;
}

export async function startAttackTarget(overrides: Partial<Config> = {}): Promise<AttackTarget> {
  // Attacks send thousands of requests from one address, bad tokens among them: the per-caller
  // rate limit and the failed-login limit per address stay out of the way unless a test sets
  // them (a 429 would hide the answer the route itself gives).
  const h = await harness({ rateLimitMax: 1_000_000, authFailureMax: 1_000_000, ...overrides });
  const now = Date.now();
  const a = makeCrash({ namespace: 'team-a', pod: 'api-0', uid: UID_A, at: now - 3_600_000 });
  const b = makeCrash({ namespace: 'team-b', pod: 'web-0', uid: UID_B, at: now - 1_800_000 });
  const host = makeCrash({ host: true, node: 'node-a', at: now - 900_000 });
  const buildIds = { a: withModule(h, a), b: withModule(h, b), host: withModule(h, host) };
  for (const c of [a, b, host]) h.storage.write(c);
  await h.index.add([a.event, b.event, host.event]);
  const identities: Identity[] = [
    { name: 'alice', token: addUser(h.kube, 'alice', ['team-a']), namespace: 'team-a' },
    { name: 'bob', token: addUser(h.kube, 'bob', ['team-b']), namespace: 'team-b' },
    { name: 'mallory', token: addUser(h.kube, 'mallory', [], {}), namespace: '' },
  ];
  const port = await freePort();
  await h.app.listen({ host: '127.0.0.1', port });
  return {
    h,
    url: `http://127.0.0.1:${port}`,
    identities,
    crashes: { a, b, host },
    buildIds,
    close: () => h.close(),
  };
}
