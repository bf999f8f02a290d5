import type { CrashEvent } from '@podmortem/contract';
import type { CrashContext, GroupPage, GroupsPage } from './api-types.ts';

// How the CLI prints crashes for people (scripts use --json).

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

export function bytes(n: number | undefined): string {
  if (n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? String(v) : v.toFixed(1)} ${units[u] ?? 'B'}`;
}

function clip(s: string, max: number): string {
  return s.length <= max ? s : `…${s.slice(s.length - max + 1)}`;
}

export function crashRows(events: Partial<CrashEvent>[]): string {
  return table(
    ['TIME', 'ID', 'NAMESPACE', 'POD', 'CONTAINER', 'SIGNAL', 'DUMP', 'EXECUTABLE'],
    events.map((e) => [
      e['@timestamp'] ?? '',
      e.crash?.id ?? '',
      e.kubernetes?.namespace ?? '(host)',
      e.kubernetes?.pod.name ?? e.collector?.node ?? '',
      e.kubernetes?.container.name ?? '',
      e.signal?.name ?? '',
      e.dump?.status ?? '',
      clip(e.process?.executable ?? e.process?.name ?? '', 48),
    ]),
  );
}

export function crashInfo(e: CrashEvent, options: { allThreads?: boolean } = {}): string {
  const rows: [string, string][] = [];
  const add = (k: string, v: string | undefined) => {
    if (v !== undefined && v !== '') rows.push([k, v]);
  };
  add('crash', e.crash.id);
  add('time', e['@timestamp']);
  const k = e.kubernetes;
  if (k) {
    add('pod', `${k.namespace}/${k.pod.name} (uid ${k.pod.uid})`);
    add('container', k.container.name);
    add('node', k.node.name);
    if (k.owner) add('owner', `${k.owner.kind}/${k.owner.name}`);
  } else add('host', `process on node ${e.collector.node}, outside any pod`);
  add('image', [e.container?.image?.name, e.container?.image?.digest].filter(Boolean).join(' '));
  const p = e.process;
  add(
    'process',
    `${p.executable ?? p.name} (pid ${p.pid}${p.ns_pid ? `, ${p.ns_pid} in its namespace` : ''})`,
  );
  if (p.args) add('args', p.args.join(' '));
  add(
    'signal',
    `${e.signal.name} (${e.signal.number})${e.signal.code === undefined ? '' : ` code ${e.signal.code}`}${e.fault ? ` at ${e.fault.address}` : ''}`,
  );
  const d = e.dump;
  add(
    'dump',
    `${d.status}${d.reason ? ` (${d.reason})` : ''}${d.size_bytes === undefined ? '' : `, ${bytes(d.size_bytes)} raw`}${d.stored_bytes === undefined ? '' : `, ${bytes(d.stored_bytes)} stored`}${d.compression ? ` ${d.compression}` : ''}`,
  );
  add('sha256', d.sha256);
  const a = e.analysis;
  if (a?.status) add('analysis', `${a.status}${a.reason ? ` (${a.reason})` : ''}`);
  add('analyzed', a?.analyzed_at && `${a.analyzed_at}${a.analyzer ? ` by analyzer ${a.analyzer}` : ''}`);
  add('title', a?.title);
  add('signature', a?.signature);
  const width = Math.max(...rows.map(([key]) => key.length));
  let out = rows.map(([key, v]) => `${key.padEnd(width)}  ${v}`).join('\n') + '\n';
  const threads = a?.threads ?? [];
  const crashing = threads.find((t) => t.crashing);
  if (options.allThreads && threads.length > 0) {
    // The crashing thread first, then the others in the core's order.
    for (const t of [...threads].sort((x, y) => Number(y.crashing) - Number(x.crashing)))
      out += threadBacktrace(t);
  } else if (crashing) out += threadBacktrace(crashing);
  else if ((a?.frames ?? []).length > 0) out += `backtrace:\n${frameLines(a?.frames ?? [])}`;
  return out;
}

type Frame = NonNullable<NonNullable<CrashEvent['analysis']>['frames']>[number];
type Thread = NonNullable<NonNullable<CrashEvent['analysis']>['threads']>[number];

/** `#0  parse_header at segv.c:4`, or without symbols `#0  ?? in segv+0x1185`. */
export function frameLine(f: Frame, i: number): string {
  const offset = f.offset === undefined ? '' : `+0x${f.offset.toString(16)}`;
  const where =
    f.file !== undefined
      ? ` at ${f.file}${f.line === undefined ? '' : `:${f.line}`}`
      : ` in ${f.module ?? '?'}${offset}`;
  return `  #${String(i).padEnd(3)} ${f.function ?? '??'}${where}`;
}

function frameLines(frames: Frame[]): string {
  return frames.map((f, i) => frameLine(f, i) + '\n').join('');
}

function threadBacktrace(t: Thread): string {
  const head = `thread ${t.tid}${t.name ? ` (${t.name})` : ''}${t.crashing ? ', crashing' : ''}:`;
  let out = `\n${head}\n${frameLines(t.frames)}`;
  if (t.truncated) out += '  … deeper frames cut at the frame cap\n';
  if (t.error) out += `  (unwind stopped: ${t.error})\n`;
  return out;
}

export function groupRows(groups: GroupsPage['groups']): string {
  return table(
    ['COUNT', 'NEW', 'FIRST SEEN', 'LAST SEEN', 'PODS', 'SIGNATURE', 'TITLE'],
    groups.map((g) => [
      String(g.count),
      g.new ? 'new' : '',
      g.first_seen_ever,
      g.last_seen,
      `${g.pods.count}${g.pods.names.length > 0 ? ` (${g.pods.names.slice(0, 3).join(',')})` : ''}`,
      g.signature,
      g.title ?? '',
    ]),
  );
}

export function groupView(p: GroupPage): string {
  const g = p.group;
  const rows: [string, string][] = [
    ['signature', g.signature],
    ['title', g.title ?? ''],
    ['crashes', `${g.count} (${p.from ?? 'first crash'} … ${p.to})`],
    ['first seen', `${g.first_seen_ever}${g.new ? ` (new: within ${p.new_within})` : ''}`],
    ['last seen', g.last_seen],
    ['pods', `${g.pods.count}: ${g.pods.names.join(', ')}`],
    ['nodes', `${g.nodes.count}: ${g.nodes.names.join(', ')}`],
    ['namespaces', g.namespaces.join(', ')],
    ['example', g.example_crash_id],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const head = rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`.trimEnd()).join('\n');
  return `${head}\n\nnewest crashes:\n${crashRows(p.crashes).replace(/^/gm, '  ').trimEnd()}\n`;
}

function summary(values: [number, string][]): string {
  const nums = values.map(([, v]) => Number(v)).filter((v) => Number.isFinite(v));
  if (nums.length === 0) return 'no samples';
  const fmt = (v: number) => (Math.abs(v) >= 1e5 ? v.toExponential(3) : String(Math.round(v * 1000) / 1000));
  return `min ${fmt(Math.min(...nums))}  max ${fmt(Math.max(...nums))}  last ${fmt(nums[nums.length - 1] ?? 0)}  (${nums.length} points)`;
}

/**
 * What tells several series of one metric apart: the labels whose values differ among them, as
 * `{label="value",…}`; nothing for a single series (a PromQL override may return several).
 */
export function seriesNames(metrics: Record<string, string>[]): string[] {
  if (metrics.length < 2) return metrics.map(() => '');
  const keys = [...new Set(metrics.flatMap((m) => Object.keys(m)))].sort();
  const differing = keys.filter((k) => new Set(metrics.map((m) => m[k])).size > 1);
  return metrics.map((m) => `{${differing.map((k) => `${k}=${JSON.stringify(m[k] ?? '')}`).join(',')}}`);
}

export function contextView(c: CrashContext): string {
  let out = `crash ${c.crash.id} at ${c.crash.timestamp}`;
  if (c.crash.namespace)
    out += ` in ${c.crash.namespace}/${c.crash.pod ?? ''} container ${c.crash.container ?? ''}`;
  out += `\nwindow ${c.window.from} … ${c.window.to} (step ${c.window.step_seconds}s)\n\nmetrics:\n`;
  for (const m of c.metrics) {
    if (m.series.length === 0) out += `  ${m.name}: no series\n`;
    const names = seriesNames(m.series.map((s) => s.metric));
    m.series.forEach((s, i) => (out += `  ${m.name}${names[i] ?? ''}: ${summary(s.values)}\n`));
  }
  out += `\nlogs (${c.logs.lines.length} lines from ${c.logs.index}):\n`;
  for (const l of c.logs.lines) out += `  ${l.timestamp}  ${l.message}\n`;
  out += `\nother crashes of the pod (${c.other_crashes.length}):\n`;
  if (c.other_crashes.length > 0) out += crashRows(c.other_crashes).replace(/^/gm, '  ').trimEnd() + '\n';
  if (c.links.grafana || c.links.kibana) {
    out += '\nlinks:\n';
    if (c.links.grafana) out += `  grafana  ${c.links.grafana}\n`;
    if (c.links.kibana) out += `  kibana   ${c.links.kibana}\n`;
  }
  if (c.errors.length > 0) {
    out += '\nunavailable:\n';
    for (const e of c.errors) out += `  ${e.source}: ${e.message}\n`;
  }
  return out;
}
