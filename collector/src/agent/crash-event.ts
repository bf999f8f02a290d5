import { isDnsLabel, isDnsSubdomain, validateCrashEvent, type CrashEvent } from '@podmortem/contract';
import type { CgroupIdentity } from './cgroup.ts';
import type { CoreNotes } from './elf-notes.ts';
import type { PodContainer, PodInfo } from './pod-info.ts';
import type { SpoolMeta } from '../spool-entry.ts';
import { AgentError } from './errors.ts';

// Builds the crash event (contract v1) from what the handler saw (the spool meta), what the core
// says (its ELF notes) and who the process was (its pod). Each fact comes from the most reliable
// source that has it: the kernel's arguments and /proc for the host view, the core for what only
// it records (signal code, fault address, build id).

const SIGNALS = [
  'UNKNOWN', 'SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGILL', 'SIGTRAP', 'SIGABRT', 'SIGBUS', 'SIGFPE', 'SIGKILL',
  'SIGUSR1', 'SIGSEGV', 'SIGUSR2', 'SIGPIPE', 'SIGALRM', 'SIGTERM', 'SIGSTKFLT', 'SIGCHLD', 'SIGCONT',
  'SIGSTOP', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU', 'SIGURG', 'SIGXCPU', 'SIGXFSZ', 'SIGVTALRM', 'SIGPROF',
  'SIGWINCH', 'SIGIO', 'SIGPWR', 'SIGSYS',
]; // prettier-ignore

/** Linux signal names (x86_64, aarch64); real-time signals as SIGRTMIN+n. */
export function signalName(n: number): string {
  if (n >= 1 && n < SIGNALS.length) return SIGNALS[n] ?? 'UNKNOWN';
  if (n >= 34 && n <= 64) return n === 34 ? 'SIGRTMIN' : `SIGRTMIN+${n - 34}`;
  return 'UNKNOWN';
}

/** Who the crashed process was: a pod's container, a container of no known pod, or the host. */
export type Owner =
  | { kind: 'pod'; identity: CgroupIdentity; pod: PodInfo; container: PodContainer }
  | { kind: 'container'; identity: CgroupIdentity; why: string }
  | { kind: 'host'; why?: string };

export interface BuildEventInput {
  meta: SpoolMeta;
  owner: Owner;
  /** Absent when the core could not be read (see notesError) or no dump was kept. */
  notes?: CoreNotes;
  notesError?: string;
  nodeName: string;
  /** Why the dump is not to be kept (its pod or namespace asked so): the event says skipped. */
  captureDisabled?: string;
}

const cut = (s: string, max: number) => (s.length > max ? s.slice(0, max) : s);
const positive = (n: number | undefined) => (n !== undefined && Number.isInteger(n) && n > 0 ? n : undefined);
const BUILD_ID = /^[0-9a-f]{2,128}$/;
const FAULT = /^0x[0-9a-f]{1,16}$/;
const DELETED = ' (deleted)';
type MappedModule = NonNullable<NonNullable<CrashEvent['analysis']>['modules']>[number];
const MAX_MODULES = 4096;

/** The modules as the handler saw them in /proc (captured is the storage step's to say). */
function modulesOf(modules: NonNullable<SpoolMeta['modules']>): MappedModule[] {
  return modules
    .filter((m) => m.path !== '' && m.path.length <= 4096)
    .slice(0, MAX_MODULES)
    .map((m) => {
      const out: MappedModule = { path: m.path };
      if (m.buildId && BUILD_ID.test(m.buildId)) out.build_id = m.buildId;
      if (m.deleted) out.deleted = true;
      const first = m.ranges[0];
      const last = m.ranges.at(-1);
      if (first && FAULT.test(first.start)) out.start = first.start;
      if (last && FAULT.test(last.end)) out.end = last.end;
      if (m.capture === 'skipped' && m.skipped) {
        out.skipped = m.skipped;
        if (m.reason) out.skip_reason = cut(m.reason, 1024);
      }
      return out;
    });
}

function labelsOf(labels: Record<string, string>): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) out[k] = cut(v, 63);
  return Object.keys(out).length > 0 ? out : undefined;
}

const POD_UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The pod's names that Kubernetes itself would refuse (a forged or corrupt answer of the API, a
 * damaged state file). The event schema refuses them (they are storage path segments and
 * tenants), so such a crash is recorded as a container of no known pod instead of being lost.
 */
function badPodNames(pod: PodInfo, container: PodContainer): string[] {
  const checks: [string, string, boolean][] = [
    ['namespace', pod.namespace, isDnsLabel(pod.namespace)],
    ['pod name', pod.name, isDnsSubdomain(pod.name)],
    ['pod uid', pod.uid, POD_UID.test(pod.uid)],
    ['container name', container.name, isDnsLabel(container.name)],
  ];
  return checks.filter(([, , ok]) => !ok).map(([what, value]) => `${what} ${JSON.stringify(cut(value, 80))}`);
}

function reasonOf(
  meta: SpoolMeta,
  notesError: string | undefined,
  podless?: string,
  captureDisabled?: string,
): string | undefined {
  // The reason for the status comes first.
  const parts = [
    captureDisabled,
    meta.dump.reason,
    notesError && `core notes unreadable: ${notesError}`,
    podless,
  ].filter((p): p is string => typeof p === 'string' && p !== '');
  return parts.length > 0 ? cut(parts.join('; '), 1024) : undefined;
}

/**
 * The event before storage (dump.path, stored_bytes and compression are the storage writer's).
 * Throws PM_ERR_EVENT_INVALID when the facts cannot make a valid event (no pid at all).
 */
export function buildCrashEvent(input: BuildEventInput): CrashEvent {
  const { meta, notes } = input;
  const badNames = input.owner.kind === 'pod' ? badPodNames(input.owner.pod, input.owner.container) : [];
  const podless =
    badNames.length > 0
      ? `recorded without its pod: not valid Kubernetes names: ${badNames.join(', ')}`
      : undefined;
  const owner: Owner =
    podless !== undefined && input.owner.kind === 'pod'
      ? { kind: 'container', identity: input.owner.identity, why: podless }
      : input.owner;
  const k = meta.kernel;
  const proc = meta.proc;
  const argsBad = meta.argsError !== undefined;
  const pid = positive(k.pid) ?? positive(notes?.pid);
  if (pid === undefined) {
    throw new AgentError(
      'PM_ERR_EVENT_INVALID',
      `crash ${meta.crashId}: no pid from the kernel nor from the core`,
    );
  }
  // The kernel's %s is the signal that caused the dump; the core's own record is the fallback.
  const signal =
    (argsBad ? undefined : positive(k.signal)) ?? positive(notes?.signal) ?? positive(k.signal) ?? 0;
  const process: CrashEvent['process'] = { pid, name: cut(k.comm || proc?.comm || notes?.comm || '', 64) };
  const nsPid = positive(k.nsPid) ?? positive(proc?.nsPids.at(-1)) ?? positive(notes?.pid);
  if (nsPid) process.ns_pid = nsPid;
  const tid = positive(k.tid);
  if (tid) process.tid = tid;
  const exe = proc?.exe || k.exePath || notes?.exePath;
  if (exe) {
    // The kernel's %E and the core's file note name an unlinked file with this suffix.
    const unlinked = exe.endsWith(DELETED);
    process.executable = cut(unlinked ? exe.slice(0, -DELETED.length) : exe, 4096);
    if (unlinked || proc?.exeDeleted) process.executable_deleted = true;
  }
  const args = proc?.cmdline.length ? proc.cmdline : notes?.args ? notes.args.split(' ') : undefined;
  if (args) process.args = args.slice(0, 256).map((a) => cut(a, 4096));
  const uid = argsBad ? notes?.uid : k.uid;
  const gid = argsBad ? notes?.gid : k.gid;
  if (uid !== undefined && uid >= 0) process.uid = uid;
  if (gid !== undefined && gid >= 0) process.gid = gid;

  const dump: CrashEvent['dump'] = {
    status: meta.dump.status,
    size_bytes: meta.dump.sizeBytes,
    limit_bytes: meta.dump.limitBytes,
  };
  // Only a dump the handler kept can be set aside; one it did not keep keeps the handler's word.
  const setAside = input.captureDisabled !== undefined && meta.dump.storedBytes > 0;
  if (setAside) dump.status = 'skipped';
  const reason = reasonOf(meta, input.notesError, podless, setAside ? input.captureDisabled : undefined);
  if (reason) dump.reason = reason;
  if (meta.dump.sha256) dump.sha256 = meta.dump.sha256;

  const event: CrashEvent = {
    schema_version: 1,
    '@timestamp': meta.timestamp,
    crash: { id: meta.crashId },
    process,
    signal: { number: signal, name: signalName(signal) },
    dump,
    collector: { version: meta.collectorVersion, node: input.nodeName, handler_ms: meta.handlerMs },
  };
  // The core's code and fault address describe its own signal: kept only when that is this one.
  if (notes?.signal === signal) {
    if (notes.sigCode !== undefined) event.signal.code = notes.sigCode;
    if (notes.faultAddress && FAULT.test(notes.faultAddress)) event.fault = { address: notes.faultAddress };
  }
  const regs = notes?.registers;
  if (regs && FAULT.test(regs.pc) && FAULT.test(regs.sp)) event.registers = { pc: regs.pc, sp: regs.sp };

  if (owner.kind === 'pod') {
    const { pod, container } = owner;
    event.kubernetes = {
      namespace: pod.namespace,
      pod: { name: pod.name, uid: pod.uid },
      container: { name: container.name },
      node: { name: input.nodeName },
    };
    const labels = labelsOf(pod.labels);
    if (labels) event.kubernetes.labels = labels;
    if (pod.owner) event.kubernetes.owner = pod.owner;
  }
  if (owner.kind === 'pod' || owner.kind === 'container') {
    const runtime =
      owner.identity.runtime !== 'unknown' || owner.kind !== 'pod'
        ? owner.identity.runtime
        : owner.container.runtime;
    event.container = { id: owner.identity.containerId, runtime };
    if (owner.kind === 'pod') {
      const image: { name?: string; digest?: string } = {};
      if (owner.container.image) image.name = cut(owner.container.image, 1024);
      if (owner.container.imageDigest) image.digest = owner.container.imageDigest;
      if (image.name || image.digest) event.container.image = image;
    }
  }

  if (meta.modules && meta.modules.length > 0) event.analysis = { modules: modulesOf(meta.modules) };
  if (notes) {
    const analysis: NonNullable<CrashEvent['analysis']> = { ...event.analysis };
    if (notes.buildId && BUILD_ID.test(notes.buildId)) analysis.build_id = notes.buildId;
    const modules = new Map<string, string | undefined>();
    for (const f of notes.mappedFiles) {
      if (f.path === '' || f.path.length > 4096) continue;
      if (!modules.has(f.path) || f.buildId)
        modules.set(f.path, f.buildId && BUILD_ID.test(f.buildId) ? f.buildId : modules.get(f.path));
    }
    // Older handlers recorded no modules: the core's file note is all there is.
    if (modules.size > 0 && !analysis.modules) {
      analysis.modules = [...modules]
        .slice(0, MAX_MODULES)
        .map(([path, buildId]) => (buildId ? { path, build_id: buildId } : { path }));
    }
    analysis.title = cut(`${event.signal.name} in ${process.name || 'process'}`, 1024);
    event.analysis = analysis;
  }

  const checked = validateCrashEvent(event);
  if (!checked.ok) {
    throw new AgentError('PM_ERR_EVENT_INVALID', `crash ${meta.crashId}: ${checked.errors.join('; ')}`);
  }
  return checked.value;
}
