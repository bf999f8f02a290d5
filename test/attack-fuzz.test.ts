import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { secretsOf } from './support/attack-count.ts';
import { startAttackTarget, type Identity } from './support/attack-target.ts';
import { requestTopicFor } from './support/query-api.ts';
import { fuzz, SCHEMATHESIS_VERSION } from './support/schemathesis.ts';
import { stack } from './support/stack.ts';

// The OpenAPI document through a schema fuzzer: schemathesis (pinned, from PyPI) generates
// requests from query-api/openapi.json — valid ones, invalid ones, unsupported methods, missing
// auth — and checks every answer against the document. It runs against the real API on the real
// Elasticsearch with seeded crashes, once per identity (the owner of team-a, the owner of
// team-b, a user granted nothing), bounded in examples per operation and in time. Every check
// must pass: no server error, no answer outside its documented status, content type, headers and
// schema; no request left unanswered; and no answer to one identity holds anything of a
// namespace it may not read.

const MAX_EXAMPLES = 10;
const MAX_TIME_S = 40;

const { topic } = await requestTopicFor(t, 'pm-attack-fuzz-requests');
const target = await startAttackTarget({ kafkaBrokers: stack.kafkaBrokers, requestTopic: topic });
t.teardown(() => target.close());
const workDir = mkdtempSync(join(tmpdir(), 'pm-fuzz-'));
t.teardown(() => rmSync(workDir, { recursive: true, force: true }));

const { a, b, host } = target.crashes;
const secretsOfA = secretsOf(a, target.buildIds.a);
const secretsOfB = secretsOf(b, target.buildIds.b);
const secretsOfHost = secretsOf(host, target.buildIds.host);
const forbiddenTo: Record<Identity['name'], Buffer[]> = {
  alice: [...secretsOfB, ...secretsOfHost],
  bob: [...secretsOfA, ...secretsOfHost],
  mallory: [...secretsOfA, ...secretsOfB, ...secretsOfHost],
};

const totals = { requests: 0, leaks: 0, hangs: 0, serverErrors: 0, violations: 0 };

for (const [n, identity] of target.identities.entries()) {
  await t.test(`schemathesis ${SCHEMATHESIS_VERSION} as ${identity.name}`, async (t) => {
    // The document as the API serves it (query-api/openapi.json is generated from it and checked
    // to equal it by query-api-openapi.test.ts).
    const r = await fuzz(`${target.url}/openapi.json`, {
      url: target.url,
      token: identity.token,
      secrets: forbiddenTo[identity.name],
      workDir: join(workDir, identity.name),
      maxExamples: MAX_EXAMPLES,
      maxTimeS: MAX_TIME_S,
      seed: 1200 + n,
    });
    const violations = [...r.failures.values()].reduce((sum, list) => sum + list.length, 0);
    totals.requests += r.requests;
    totals.leaks += r.leaks.length;
    totals.hangs += r.hangs.length;
    totals.serverErrors += r.serverErrors.length;
    totals.violations += violations + r.errors.length;
    t.comment(
      `${identity.name}: requests ${r.requests}, leaks ${r.leaks.length}, hangs ${r.hangs.length}, ` +
        `5xx ${r.serverErrors.length}, failed checks ${violations}, errors ${r.errors.length}`,
    );
    t.ok(r.requests > 100, `the fuzzer sent requests (${r.requests})`);
    t.same(r.serverErrors, [], 'no server error');
    t.same(r.hangs, [], 'every request answered within the request timeout');
    t.same(r.leaks, [], 'no answer holds anything of a namespace the caller may not read');
    t.same(Object.fromEntries(r.failures), {}, 'every check passed (status, content type, headers, schema…)');
    t.same(r.errors, [], 'no operation the fuzzer could not test (an invalid schema…)');
    t.equal(r.code, 0, `schemathesis exits 0${r.code === 0 ? '' : `\n${r.output.slice(-6000)}`}`);
  });
}

t.comment(
  `attack fuzz: requests ${totals.requests}, leaks ${totals.leaks}, hangs ${totals.hangs}, ` +
    `5xx ${totals.serverErrors}, schema violations ${totals.violations}`,
);
