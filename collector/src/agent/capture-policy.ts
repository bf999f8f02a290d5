// Whether a crash's dump is kept in the store, as its pod and namespace ask with the label or
// annotation podmortem.io/capture ("true" or "false"). The pod's word wins over its namespace's,
// the namespace's over the collector's default; on one object the annotation wins over the label.
// Any other value is ignored (and reported, so the one who set it can be told): the next source
// decides. The crash itself is recorded whatever is decided; only its dump is not stored.

export const CAPTURE_KEY = 'podmortem.io/capture';

/** The values of the podmortem.io/capture label and annotation of one object, where set. */
export interface CaptureMarks {
  label?: string;
  annotation?: string;
}

/** The marks of a pod or namespace from its metadata; undefined when it has neither. */
export function captureMarksOf(meta: {
  labels?: Record<string, string> | undefined;
  annotations?: Record<string, string> | undefined;
}): CaptureMarks | undefined {
  const marks: CaptureMarks = {};
  const label = meta.labels?.[CAPTURE_KEY];
  const annotation = meta.annotations?.[CAPTURE_KEY];
  if (label !== undefined) marks.label = label;
  if (annotation !== undefined) marks.annotation = annotation;
  return label === undefined && annotation === undefined ? undefined : marks;
}

export interface CaptureSubject {
  /** `namespace/name` for a pod, the name for a namespace: it names the object in warnings. */
  name: string;
  marks: CaptureMarks | undefined;
}

/** A mark that was neither "true" nor "false", and so decided nothing. */
export interface IgnoredMark {
  /** 'pod' or 'namespace'. */
  object: 'pod' | 'namespace';
  name: string;
  kind: 'label' | 'annotation';
  value: string;
}

export interface CaptureDecision {
  capture: boolean;
  /** Why the dump is not kept (only when capture is false). */
  reason?: string;
  ignored: IgnoredMark[];
}

type Said = { capture: boolean; kind: 'label' | 'annotation' };

function said(
  object: 'pod' | 'namespace',
  subject: CaptureSubject | undefined,
  ignored: IgnoredMark[],
): Said | undefined {
  let decided: Said | undefined;
  for (const kind of ['annotation', 'label'] as const) {
    const value = subject?.marks?.[kind];
    if (value === undefined || subject === undefined) continue;
    if (value === 'true' || value === 'false') decided ??= { capture: value === 'true', kind };
    else ignored.push({ object, name: subject.name, kind, value });
  }
  return decided;
}

/** The pod decides by itself (a valid mark of its own): its namespace need not be looked up. */
export function podDecides(marks: CaptureMarks | undefined): boolean {
  return said('pod', { name: '', marks }, []) !== undefined;
}

/**
 * Pure: whether to keep the dump of a crash in `pod` (absent for a process of no known pod) in
 * `namespace` (absent when not looked up, or gone), with the collector's default.
 */
export function captureDecision(
  pod: CaptureSubject | undefined,
  namespace: CaptureSubject | undefined,
  defaultCapture: boolean,
): CaptureDecision {
  const ignored: IgnoredMark[] = [];
  const byPod = said('pod', pod, ignored);
  const byNamespace = byPod ? undefined : said('namespace', namespace, ignored);
  const by = byPod
    ? { object: 'pod', ...byPod }
    : byNamespace
      ? { object: 'namespace', ...byNamespace }
      : undefined;
  if (by?.capture === true || (by === undefined && defaultCapture)) return { capture: true, ignored };
  const reason = by
    ? `capture disabled by ${by.object} ${by.kind} ${CAPTURE_KEY}=false`
    : 'capture disabled by the collector default (PODMORTEM_COLLECTOR_CAPTURE_DEFAULT=false)';
  return { capture: false, reason, ignored };
}
