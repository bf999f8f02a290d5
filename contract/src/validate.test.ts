import t from 'tap';
import { validateCrashEvent } from './validate.ts';
import { validExamples, invalidExamples } from './examples.ts';

t.test('every valid example passes validation', async (t) => {
  const examples = validExamples();
  t.ok(examples.length >= 5, 'ships several valid examples');
  for (const { name, event } of examples) {
    t.same(validateCrashEvent(event), { ok: true, value: event }, name);
  }
});

t.test('every invalid example fails with an error naming its field', async (t) => {
  const examples = invalidExamples();
  t.ok(examples.length >= 10, 'ships several invalid examples');
  for (const { name, field, event } of examples) {
    const result = validateCrashEvent(event);
    if (result.ok) {
      t.fail(`${name} was accepted`);
      continue;
    }
    t.ok(
      result.errors.some((e) => e.startsWith(`${field}: `)),
      `${name}: an error names ${field} (got ${result.errors.join('; ')})`,
    );
  }
});

t.test('values that are not objects are rejected, not thrown on', async (t) => {
  for (const [i, value] of [null, undefined, 42, 'event', [], [{}]].entries()) {
    t.equal(validateCrashEvent(value).ok, false, `value #${i}`);
  }
  const empty = validateCrashEvent({});
  t.equal(empty.ok, false);
  if (!empty.ok) t.ok(empty.errors.includes('crash: is required'), 'names the missing top-level fields');
});

t.test('a wrong enum value lists the allowed values', async (t) => {
  const [first] = validExamples();
  if (!first) throw new Error('no examples');
  const result = validateCrashEvent({ ...first.event, dump: { status: 'lost' } });
  t.same(result, {
    ok: false,
    errors: ['dump.status: must be one of stored, pending, skipped, truncated, failed, expired, deleted'],
  });
});

t.test('names are validated as Kubernetes validates them', async (t) => {
  const [first] = validExamples().filter((e) => e.event.kubernetes);
  if (!first?.event.kubernetes) throw new Error('no pod example');
  const k8s = first.event.kubernetes;
  const withK8s = (patch: Partial<typeof k8s>, node?: string) => ({
    ...first.event,
    kubernetes: { ...k8s, ...patch },
    ...(node === undefined ? {} : { collector: { ...first.event.collector, node } }),
  });
  const label63 = 'a'.repeat(63);
  const sub253 = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
  const good: [string, unknown][] = [
    ['a one-letter namespace', withK8s({ namespace: 'a' })],
    ['a 63-character namespace', withK8s({ namespace: label63 })],
    ['a dotted pod name', withK8s({ pod: { ...k8s.pod, name: 'web.v2-0' } })],
    ['a 253-character pod name', withK8s({ pod: { ...k8s.pod, name: sub253 } })],
    [
      'a dotted node name',
      withK8s({ node: { name: 'ip-10-0-0-1.eu-west-1.compute.internal' } }, 'ip-10-0-0-1.ec2'),
    ],
  ];
  for (const [what, event] of good) t.equal(validateCrashEvent(event).ok, true, what);

  const bad: [string, string, unknown][] = [
    ['a namespace climbing out', 'kubernetes.namespace', withK8s({ namespace: '../team-b' })],
    ['a namespace of 64 characters', 'kubernetes.namespace', withK8s({ namespace: `${label63}a` })],
    ['a namespace with a dot', 'kubernetes.namespace', withK8s({ namespace: 'team.b' })],
    ['a namespace ending in a dash', 'kubernetes.namespace', withK8s({ namespace: 'team-' })],
    ['a namespace with NUL', 'kubernetes.namespace', withK8s({ namespace: 'team\u0000b' })],
    ['a pod name with a slash', 'kubernetes.pod.name', withK8s({ pod: { ...k8s.pod, name: 'web/0' } })],
    ['a pod name of "."', 'kubernetes.pod.name', withK8s({ pod: { ...k8s.pod, name: '.' } })],
    [
      'a pod name of 254 characters',
      'kubernetes.pod.name',
      withK8s({ pod: { ...k8s.pod, name: `${sub253}a` } }),
    ],
    ['a pod name in upper case', 'kubernetes.pod.name', withK8s({ pod: { ...k8s.pod, name: 'Web-0' } })],
    [
      'a pod uid in upper case',
      'kubernetes.pod.uid',
      withK8s({ pod: { ...k8s.pod, uid: k8s.pod.uid.toUpperCase() } }),
    ],
    ['a container name with a dot', 'kubernetes.container.name', withK8s({ container: { name: 'api.v2' } })],
    ['a container name with NUL', 'kubernetes.container.name', withK8s({ container: { name: 'api\u0000' } })],
    ['a node name with "/"', 'kubernetes.node.name', withK8s({ node: { name: 'node/a' } })],
    ['a collector node of ".."', 'collector.node', withK8s({}, '..')],
    ['a collector node with "_"', 'collector.node', withK8s({}, 'node_a')],
  ];
  for (const [what, field, event] of bad) {
    const result = validateCrashEvent(event);
    t.ok(
      !result.ok && result.errors.some((e) => e.startsWith(`${field}: `)),
      `${what} is refused, naming ${field}`,
    );
  }
});
