import t from 'tap';
import { captureDecision, captureMarksOf, podDecides, type CaptureMarks } from './capture-policy.ts';

const pod = (marks?: CaptureMarks) => ({ name: 'shop/api-0', marks });
const ns = (marks?: CaptureMarks) => ({ name: 'shop', marks });

t.test('the marks are read from the label and the annotation podmortem.io/capture only', async (t) => {
  t.equal(captureMarksOf({}), undefined);
  t.equal(
    captureMarksOf({ labels: { app: 'api' }, annotations: { 'podmortem.io/other': 'false' } }),
    undefined,
  );
  t.same(captureMarksOf({ labels: { 'podmortem.io/capture': 'false' } }), { label: 'false' });
  t.same(captureMarksOf({ annotations: { 'podmortem.io/capture': 'nope' } }), { annotation: 'nope' });
  t.same(
    captureMarksOf({
      labels: { 'podmortem.io/capture': 'true' },
      annotations: { 'podmortem.io/capture': 'false' },
    }),
    { label: 'true', annotation: 'false' },
  );
});

t.test('nothing said anywhere: the default decides', async (t) => {
  t.same(captureDecision(pod(), ns(), true), { capture: true, ignored: [] });
  t.same(captureDecision(pod(), undefined, true), { capture: true, ignored: [] });
  t.same(captureDecision(pod(), ns(), false), {
    capture: false,
    reason: 'capture disabled by the collector default (PODMORTEM_COLLECTOR_CAPTURE_DEFAULT=false)',
    ignored: [],
  });
  t.same(captureDecision(undefined, undefined, true), { capture: true, ignored: [] }, 'a process of no pod');
  t.equal(captureDecision(undefined, undefined, false).capture, false);
});

t.test('a pod saying false is not captured, by its annotation or its label', async (t) => {
  t.same(captureDecision(pod({ annotation: 'false' }), ns(), true), {
    capture: false,
    reason: 'capture disabled by pod annotation podmortem.io/capture=false',
    ignored: [],
  });
  t.same(captureDecision(pod({ label: 'false' }), undefined, true), {
    capture: false,
    reason: 'capture disabled by pod label podmortem.io/capture=false',
    ignored: [],
  });
});

t.test('a namespace saying false disables its pods that say nothing', async (t) => {
  t.same(captureDecision(pod(), ns({ label: 'false' }), true), {
    capture: false,
    reason: 'capture disabled by namespace label podmortem.io/capture=false',
    ignored: [],
  });
  t.same(captureDecision(pod(), ns({ annotation: 'false' }), true), {
    capture: false,
    reason: 'capture disabled by namespace annotation podmortem.io/capture=false',
    ignored: [],
  });
  t.same(
    captureDecision(pod(), ns({ label: 'true' }), false),
    { capture: true, ignored: [] },
    'or true enables',
  );
});

t.test("the pod's word wins over its namespace's, either way", async (t) => {
  t.same(captureDecision(pod({ annotation: 'true' }), ns({ label: 'false' }), true), {
    capture: true,
    ignored: [],
  });
  t.same(captureDecision(pod({ label: 'true' }), ns({ annotation: 'false' }), false), {
    capture: true,
    ignored: [],
  });
  t.same(captureDecision(pod({ label: 'false' }), ns({ label: 'true' }), true), {
    capture: false,
    reason: 'capture disabled by pod label podmortem.io/capture=false',
    ignored: [],
  });
});

t.test('on one object the annotation wins over the label', async (t) => {
  t.same(captureDecision(pod({ label: 'true', annotation: 'false' }), ns(), true), {
    capture: false,
    reason: 'capture disabled by pod annotation podmortem.io/capture=false',
    ignored: [],
  });
  t.same(captureDecision(pod(), ns({ label: 'false', annotation: 'true' }), true), {
    capture: true,
    ignored: [],
  });
});

t.test('a value other than "true" or "false" is ignored and reported; the next source decides', async (t) => {
  t.same(captureDecision(pod({ annotation: 'nope' }), ns(), true), {
    capture: true,
    ignored: [{ object: 'pod', name: 'shop/api-0', kind: 'annotation', value: 'nope' }],
  });
  t.same(captureDecision(pod({ label: 'False' }), ns({ label: 'false' }), true), {
    capture: false,
    reason: 'capture disabled by namespace label podmortem.io/capture=false',
    ignored: [{ object: 'pod', name: 'shop/api-0', kind: 'label', value: 'False' }],
  });
  t.same(captureDecision(pod({ annotation: '', label: 'true' }), ns(), false), {
    capture: true,
    ignored: [{ object: 'pod', name: 'shop/api-0', kind: 'annotation', value: '' }],
  });
  t.same(captureDecision(pod(), ns({ annotation: 'off' }), true), {
    capture: true,
    ignored: [{ object: 'namespace', name: 'shop', kind: 'annotation', value: 'off' }],
  });
  // The namespace is not consulted once the pod decided, so its bad value is not reported.
  t.same(captureDecision(pod({ label: 'true' }), ns({ annotation: 'off' }), true), {
    capture: true,
    ignored: [],
  });
});

t.test('podDecides: only a valid mark of the pod makes the namespace moot', async (t) => {
  t.equal(podDecides(undefined), false);
  t.equal(podDecides({}), false);
  t.equal(podDecides({ annotation: 'nope' }), false);
  t.equal(podDecides({ label: 'TRUE' }), false);
  t.equal(podDecides({ label: 'false' }), true);
  t.equal(podDecides({ annotation: 'nope', label: 'true' }), true);
});
