import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import {
  AuthenticationV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  type V1ClusterRole,
  type V1ConfigMap,
  type V1Container,
  type V1PersistentVolume,
  type V1PersistentVolumeClaim,
  type V1PodTemplateSpec,
  type V1Probe,
  type V1Secret,
  type V1Service,
  type V1ServiceAccount,
  type V1Volume,
} from '@kubernetes/client-node';
import type { TObject } from '@sinclair/typebox';
import { envName } from '@podmortem/contract/runtime';
import {
  CollectorConfigSchema,
  ENV_PREFIX as COLLECTOR_PREFIX,
  loadCollectorConfig,
} from '../../collector/src/agent/config.ts';
import { HANDLER_ENTRY, handlerLogPath } from '../../collector/src/agent/handler-installer.ts';
import {
  AnalyzerConfigSchema,
  CONFIG_PREFIX as ANALYZER_PREFIX,
  loadAnalyzerConfig,
} from '../../analyzer/src/config.ts';
import {
  CONFIG_PREFIX as INDEXER_PREFIX,
  IndexerConfigSchema,
  loadIndexerConfig,
} from '../../indexer/src/config.ts';
import {
  CONFIG_PREFIX as API_PREFIX,
  ConfigSchema as ApiConfigSchema,
  readConfig,
} from '../../query-api/src/config.ts';
import {
  CONFIG_PREFIX as RETENTION_PREFIX,
  loadRetentionConfig,
  RetentionConfigSchema,
} from '../../retention/src/config.ts';
import { allows, describe, grantsOf, requestAttributes, type ResourceAttributes } from './k8s-rbac.ts';
import { K8S_DIR, type KubeObject, type Rendering } from './kustomize.ts';
import { repoDir } from './stack.ts';

// What can drift between the services' code and the Kubernetes manifests, each check a function
// of one rendering that returns its problems (an empty list: none). Kept apart from the test so the
// test can also prove each check fails on a manifest broken on purpose.

export type ServiceName = 'collector' | 'indexer' | 'analyzer' | 'query-api' | 'retention';

/** A folder a service needs from the node rather than from the container. */
export interface HostPathNeed {
  what: string;
  path: string;
  /** Also used by the handler, which the kernel runs on the host: the host path must be this one. */
  samePath: boolean;
}

/** What the manifests must agree with, from the service's configuration as its loader reads it. */
export interface ServiceFacts {
  opsHost: string;
  /** The port of /healthz and /readyz (and of /metrics unless metricsPort says otherwise). */
  opsPort: number;
  /** The port of /metrics when it has one of its own (the query API's: its port is the tenants'). */
  metricsPort?: number;
  shutdownGraceMs: number;
  storage?: { root: string; readOnly: boolean };
  hostPaths: HostPathNeed[];
}

export interface ServiceSpec {
  service: ServiceName;
  workloadKind: 'DaemonSet' | 'Deployment';
  /** Its workspace sources, scanned for Kubernetes API calls. */
  sourceDir: string;
  /** Its entry point, the file the workload's command runs. */
  main: string;
  schema: TObject;
  prefix: string;
  /** Runs the service's own loader (which throws a ConfigError naming the variable). */
  facts(env: Record<string, string>): ServiceFacts;
}

export const SERVICES: ServiceSpec[] = [
  {
    service: 'collector',
    workloadKind: 'DaemonSet',
    sourceDir: 'collector/src',
    main: 'collector/src/agent/main.ts',
    schema: CollectorConfigSchema,
    prefix: COLLECTOR_PREFIX,
    facts(env) {
      const c = loadCollectorConfig(env);
      return {
        opsHost: c.opsHost,
        opsPort: c.opsPort,
        shutdownGraceMs: c.shutdownGraceMs,
        storage: { root: c.storageRoot, readOnly: false },
        hostPaths: [
          { what: 'the spool', path: c.spoolDir, samePath: true },
          { what: "the handler's log", path: handlerLogPath(c), samePath: true },
          {
            what: 'the handler install folder (named in core_pattern)',
            path: c.handlerInstallDir,
            samePath: true,
          },
          { what: 'the state folder (kernel settings backup, pod cache)', path: c.stateDir, samePath: false },
        ],
      };
    },
  },
  {
    service: 'indexer',
    workloadKind: 'Deployment',
    sourceDir: 'indexer/src',
    main: 'indexer/src/main.ts',
    schema: IndexerConfigSchema,
    prefix: INDEXER_PREFIX,
    facts(env) {
      const c = loadIndexerConfig(env);
      return { opsHost: c.opsHost, opsPort: c.opsPort, shutdownGraceMs: c.shutdownGraceMs, hostPaths: [] };
    },
  },
  {
    service: 'analyzer',
    workloadKind: 'Deployment',
    sourceDir: 'analyzer/src',
    main: 'analyzer/src/main.ts',
    schema: AnalyzerConfigSchema,
    prefix: ANALYZER_PREFIX,
    facts(env) {
      const c = loadAnalyzerConfig(env);
      return {
        opsHost: c.opsHost,
        opsPort: c.opsPort,
        shutdownGraceMs: c.shutdownGraceMs,
        // Writable: the debug files fetched from debuginfod are kept beside the modules.
        storage: { root: c.storageRoot, readOnly: false },
        hostPaths: [],
      };
    },
  },
  {
    service: 'query-api',
    workloadKind: 'Deployment',
    sourceDir: 'query-api/src',
    main: 'query-api/src/main.ts',
    schema: ApiConfigSchema,
    prefix: API_PREFIX,
    facts(env) {
      const c = readConfig(env);
      return {
        opsHost: c.host,
        opsPort: c.port,
        metricsPort: c.opsPort,
        shutdownGraceMs: c.shutdownGraceMs,
        storage: { root: c.storageRoot, readOnly: true },
        hostPaths: [],
      };
    },
  },
  {
    service: 'retention',
    workloadKind: 'Deployment',
    sourceDir: 'retention/src',
    main: 'retention/src/main.ts',
    schema: RetentionConfigSchema,
    prefix: RETENTION_PREFIX,
    facts(env) {
      const c = loadRetentionConfig(env);
      return {
        opsHost: c.opsHost,
        opsPort: c.opsPort,
        shutdownGraceMs: c.shutdownGraceMs,
        // Writable: it deletes cores and rewrites their events as expired.
        storage: { root: c.storageRoot, readOnly: false },
        hostPaths: [],
      };
    },
  },
];

export function serviceSpec(service: ServiceName): ServiceSpec {
  const spec = SERVICES.find((s) => s.service === service);
  if (!spec) throw new Error(`no service ${service}`);
  return spec;
}

// ---- reading a rendering ------------------------------------------------------------------------

/** The client library's type of each kind the checks read. */
interface Kinds {
  ConfigMap: V1ConfigMap;
  Secret: V1Secret;
  Service: V1Service;
  ServiceAccount: V1ServiceAccount;
  ClusterRole: V1ClusterRole;
  PersistentVolume: V1PersistentVolume;
  PersistentVolumeClaim: V1PersistentVolumeClaim;
}

function asKind<K extends keyof Kinds>(o: KubeObject, kind: K): Kinds[K] {
  if (o.kind !== kind) throw new Error(`${o.kind} ${o.metadata.name} is not a ${kind}`);
  return o;
}

function find<K extends keyof Kinds>(
  r: Rendering,
  kind: K,
  name: string,
  namespace?: string,
): Kinds[K] | undefined {
  const o = r.objects.find(
    (x) => x.kind === kind && x.metadata.name === name && x.metadata.namespace === namespace,
  );
  return o ? asKind(o, kind) : undefined;
}

export interface Workload {
  /** `DaemonSet podmortem/podmortem-collector`, for messages. */
  ref: string;
  kind: string;
  namespace: string;
  template: V1PodTemplateSpec;
  container: V1Container;
}

const WORKLOAD_KINDS = new Set(['DaemonSet', 'Deployment', 'StatefulSet', 'Job']);

/** The one workload running the service: the one with a container named after it. */
export function workloadOf(r: Rendering, service: ServiceName): Workload | string {
  const found: Workload[] = [];
  for (const o of r.objects) {
    if (!WORKLOAD_KINDS.has(o.kind)) continue;
    const template = (o.spec as { template?: V1PodTemplateSpec } | undefined)?.template;
    const container = template?.spec?.containers.find((c) => c.name === service);
    if (template && container)
      found.push({
        ref: `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`,
        kind: o.kind,
        namespace: o.metadata.namespace ?? '',
        template,
        container,
      });
  }
  if (found.length !== 1)
    return `${r.name}: ${String(found.length)} workloads have a container named ${service}, not one`;
  const [w] = found;
  return w ?? `${r.name}: no workload for ${service}`;
}

/** Values for what only the node or a Secret knows: plausible, never taken for the manifest's own. */
function downwardValue(fieldPath: string, w: Workload): string | undefined {
  const label = /^metadata\.(labels|annotations)\['([^']+)'\]$/.exec(fieldPath);
  if (label) {
    const map = label[1] === 'labels' ? w.template.metadata?.labels : w.template.metadata?.annotations;
    return map?.[label[2] ?? ''];
  }
  const values: Record<string, string> = {
    'metadata.name': `${w.container.name}-0`,
    'metadata.namespace': w.namespace,
    'metadata.uid': '00000000-0000-4000-8000-000000000000',
    'spec.nodeName': 'node-0',
    'spec.serviceAccountName': w.template.spec?.serviceAccountName ?? 'default',
    'status.hostIP': '10.0.0.10',
    'status.hostIPs': '10.0.0.10',
    'status.podIP': '10.1.0.10',
    'status.podIPs': '10.1.0.10',
  };
  return values[fieldPath];
}

function secretDummy(spec: ServiceSpec, name: string): string {
  const key = Object.keys(spec.schema.properties).find((k) => envName(spec.prefix, k) === name);
  const def: unknown = key === undefined ? undefined : spec.schema.properties[key]?.default;
  const scalar = (v: unknown) =>
    typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined;
  if (Array.isArray(def)) return def.map(scalar).join(',');
  return scalar(def) ?? 'from-a-secret';
}

export interface ResolvedEnv {
  env: Record<string, string>;
  /** How each variable gets its value: `value`, `configMap x/key`, `fieldRef spec.nodeName`, … */
  sources: Record<string, string>;
  problems: string[];
}

/** The container's environment as the kubelet would build it, ConfigMaps looked up in the rendering. */
export function resolveEnv(r: Rendering, w: Workload, spec: ServiceSpec): ResolvedEnv {
  const env: Record<string, string> = {};
  const sources: Record<string, string> = {};
  const problems: string[] = [];
  const at = `${r.name}: ${w.ref} container ${w.container.name}`;
  const set = (name: string, value: string, source: string) => {
    if (name in sources) problems.push(`${at}: ${name} is set twice (${sources[name] ?? ''}, ${source})`);
    env[name] = value;
    sources[name] = source;
  };
  for (const from of w.container.envFrom ?? []) {
    const prefix = from.prefix ?? '';
    if (from.configMapRef) {
      const name = from.configMapRef.name ?? '';
      const cm = find(r, 'ConfigMap', name, w.namespace);
      if (!cm && from.configMapRef.optional !== true)
        problems.push(`${at}: envFrom ConfigMap ${name} is not in the rendering`);
      for (const [k, v] of Object.entries(cm?.data ?? {})) set(prefix + k, v, `envFrom configMap ${name}`);
    }
    if (from.secretRef) {
      const name = from.secretRef.name ?? '';
      const secret = find(r, 'Secret', name, w.namespace);
      if (!secret)
        problems.push(`${at}: envFrom Secret ${name}: its keys cannot be checked unless it is rendered`);
      for (const k of [...Object.keys(secret?.data ?? {}), ...Object.keys(secret?.stringData ?? {})])
        set(prefix + k, secretDummy(spec, prefix + k), `envFrom secret ${name}`);
    }
  }
  for (const e of w.container.env ?? []) {
    const ref = e.valueFrom;
    if (!ref) {
      // kubectl refuses an unquoted number or boolean here; kustomize passes it through.
      const value: unknown = e.value;
      if (value !== undefined && typeof value !== 'string')
        problems.push(`${at}: ${e.name} is not a string (${JSON.stringify(value)}): quote it`);
      set(e.name, typeof value === 'string' ? value : JSON.stringify(value ?? ''), 'value');
    } else if (ref.fieldRef) {
      const value = downwardValue(ref.fieldRef.fieldPath, w);
      if (value === undefined)
        problems.push(`${at}: ${e.name}: fieldRef ${ref.fieldRef.fieldPath} gives no value`);
      set(e.name, value ?? '', `fieldRef ${ref.fieldRef.fieldPath}`);
    } else if (ref.resourceFieldRef) {
      set(e.name, '1', `resourceFieldRef ${ref.resourceFieldRef.resource}`);
    } else if (ref.secretKeyRef) {
      set(e.name, secretDummy(spec, e.name), `secret ${ref.secretKeyRef.name}/${ref.secretKeyRef.key}`);
    } else if (ref.configMapKeyRef) {
      const { key } = ref.configMapKeyRef;
      const name = ref.configMapKeyRef.name ?? '';
      const value = find(r, 'ConfigMap', name, w.namespace)?.data?.[key];
      if (value === undefined && ref.configMapKeyRef.optional !== true)
        problems.push(`${at}: ${e.name}: ConfigMap ${name} has no key ${key} in the rendering`);
      if (value !== undefined) set(e.name, value, `configMap ${name}/${key}`);
    }
  }
  return { env, sources, problems };
}

export interface ServiceInRendering {
  spec: ServiceSpec;
  workload: Workload;
  env: ResolvedEnv;
  /** Undefined when the service's loader refused the environment. */
  facts: ServiceFacts | undefined;
  problems: string[];
}

/**
 * The service's workload and environment, and its configuration read by its own loader: every
 * variable must be a key of its schema (the loader ignores unknown names, so a typo would pass
 * silently) and every value must pass validation.
 */
export function inspectService(r: Rendering, service: ServiceName): ServiceInRendering | string {
  const spec = serviceSpec(service);
  const workload = workloadOf(r, service);
  if (typeof workload === 'string') return workload;
  const problems: string[] = [];
  if (workload.kind !== spec.workloadKind)
    problems.push(`${r.name}: ${service} runs as a ${workload.kind}, not a ${spec.workloadKind}`);
  const env = resolveEnv(r, workload, spec);
  problems.push(...env.problems);
  const known = new Set(Object.keys(spec.schema.properties).map((k) => envName(spec.prefix, k)));
  for (const name of Object.keys(env.env))
    if (!known.has(name))
      problems.push(
        `${r.name}: ${workload.ref}: ${name} is not a key of the ${service} configuration schema`,
      );
  let facts: ServiceFacts | undefined;
  try {
    facts = spec.facts(env.env);
  } catch (err) {
    problems.push(
      `${r.name}: ${workload.ref}: the ${service} configuration refuses it: ${(err as Error).message}`,
    );
  }
  return { spec, workload, env, facts, problems };
}

// ---- the checks ---------------------------------------------------------------------------------

function portOf(c: V1Container, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return port;
  return c.ports?.find((p) => p.name === port)?.containerPort;
}

function probePath(p: V1Probe | undefined): { path: string | undefined; port: number | string | undefined } {
  return { path: p?.httpGet?.path, port: p?.httpGet?.port };
}

/** Liveness on /healthz and readiness on /readyz, both on the port the config serves them on. */
export function checkProbesAndPorts(r: Rendering, s: ServiceInRendering): string[] {
  const { facts, workload: w } = s;
  if (!facts) return [];
  const at = `${r.name}: ${w.ref}`;
  const problems: string[] = [];
  if (!w.container.ports?.some((p) => p.containerPort === facts.opsPort))
    problems.push(`${at}: no containerPort ${String(facts.opsPort)}, the port the config serves on`);
  if (/^(127\.|localhost$|::1$)/.test(facts.opsHost))
    problems.push(`${at}: the config listens on ${facts.opsHost}: the kubelet's probes cannot reach it`);
  for (const [kind, probe, path] of [
    ['liveness', w.container.livenessProbe, '/healthz'],
    ['readiness', w.container.readinessProbe, '/readyz'],
  ] as const) {
    const p = probePath(probe);
    if (p.path !== path) problems.push(`${at}: ${kind} probe path is ${p.path ?? 'missing'}, not ${path}`);
    const port = portOf(w.container, p.port);
    if (port !== facts.opsPort)
      problems.push(
        `${at}: ${kind} probe port ${String(p.port)} is ${String(port)}, not ${String(facts.opsPort)}`,
      );
  }
  const metricsPort = facts.metricsPort ?? facts.opsPort;
  if (!w.container.ports?.some((p) => p.containerPort === metricsPort))
    problems.push(`${at}: no containerPort ${String(metricsPort)}, the port /metrics is served on`);
  const annotations = w.template.metadata?.annotations ?? {};
  const scrapePort = annotations['prometheus.io/port'];
  if (scrapePort !== String(metricsPort))
    problems.push(
      `${at}: prometheus.io/port ${scrapePort ?? 'missing'} is not the metrics port ${String(metricsPort)}`,
    );
  const scrapePath = annotations['prometheus.io/path'];
  if (scrapePath !== undefined && scrapePath !== '/metrics')
    problems.push(`${at}: prometheus.io/path ${scrapePath} is not /metrics`);
  return problems;
}

/** The probe paths of a workload, for the test that asks the real servers for them. */
export function probePaths(s: ServiceInRendering): string[] {
  return [
    s.workload.container.livenessProbe,
    s.workload.container.readinessProbe,
    s.workload.container.startupProbe,
  ]
    .map((p) => probePath(p).path)
    .filter((p): p is string => p !== undefined);
}

/** Kubernetes sends SIGKILL after terminationGracePeriodSeconds: the service's clean shutdown must fit. */
export function checkGrace(r: Rendering, s: ServiceInRendering): string[] {
  if (!s.facts) return [];
  const grace = s.workload.template.spec?.terminationGracePeriodSeconds ?? 30;
  return grace * 1000 > s.facts.shutdownGraceMs
    ? []
    : [
        `${r.name}: ${s.workload.ref}: terminationGracePeriodSeconds ${String(grace)} does not exceed the shutdown grace of ${String(s.facts.shutdownGraceMs)} ms`,
      ];
}

/** Every container, init containers too, with CPU and memory requests and limits. */
export function checkResources(r: Rendering, s: ServiceInRendering): string[] {
  const pod = s.workload.template.spec;
  const problems: string[] = [];
  for (const c of [...(pod?.initContainers ?? []), ...(pod?.containers ?? [])])
    for (const kind of ['requests', 'limits'] as const)
      for (const resource of ['cpu', 'memory'])
        if (c.resources?.[kind]?.[resource] === undefined)
          problems.push(
            `${r.name}: ${s.workload.ref} container ${c.name}: no ${resource} in resources.${kind}`,
          );
  return problems;
}

function covering(c: V1Container, volumes: V1Volume[], path: string) {
  const mounts = (c.volumeMounts ?? []).filter(
    (m) => path === m.mountPath || path.startsWith(m.mountPath.replace(/\/$/, '') + '/'),
  );
  const mount = mounts.sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  const volume = mount ? volumes.find((v) => v.name === mount.name) : undefined;
  return { mount, volume };
}

/** Where a container path is on the node, when a hostPath volume (without subPath) holds it. */
function hostPathOf(c: V1Container, volumes: V1Volume[], path: string): string | undefined {
  const { mount, volume } = covering(c, volumes, path);
  if (!mount || !volume?.hostPath || mount.subPath) return undefined;
  return posix.join(volume.hostPath.path, posix.relative(mount.mountPath, path));
}

/**
 * The collector's node folders are hostPath volumes; those the kernel-run handler uses sit at the
 * same path on the host as in the container, since the agent writes the container's paths into
 * core_pattern and the handler's configuration. So must Node and handler.ts themselves: the agent
 * names its own binary and its handler.ts in the wrapper the kernel runs.
 */
export function checkHostPaths(r: Rendering, s: ServiceInRendering): string[] {
  const { facts, workload: w } = s;
  if (!facts) return [];
  const at = `${r.name}: ${w.ref}`;
  const volumes = w.template.spec?.volumes ?? [];
  const problems: string[] = [];
  const needs = [...facts.hostPaths];
  if (s.spec.service === 'collector') {
    const argv = [...(w.container.command ?? []), ...(w.container.args ?? [])];
    const node = argv[0];
    const main = argv.find((a) => a.endsWith('/collector/src/agent/main.ts'));
    if (node === undefined || !node.startsWith('/') || main === undefined || !main.startsWith('/'))
      problems.push(
        `${at}: the agent must be run by absolute paths (node and collector/src/agent/main.ts): ${argv.join(' ')}`,
      );
    else {
      const agentMain = join(repoDir, 'collector/src/agent/main.ts');
      const entry = posix.join(posix.dirname(main), relative(dirname(agentMain), HANDLER_ENTRY));
      needs.push(
        { what: 'the Node binary the handler wrapper runs', path: node, samePath: true },
        { what: 'the handler entry the wrapper runs', path: entry, samePath: true },
      );
      const runtime = covering(w.container, volumes, node).mount;
      const staged = (w.template.spec?.initContainers ?? []).some((c) =>
        (c.volumeMounts ?? []).some((m) => m.name === runtime?.name && m.mountPath === runtime.mountPath),
      );
      if (!staged)
        problems.push(
          `${at}: no init container mounts ${runtime?.mountPath ?? node} to put Node and the app on the host`,
        );
    }
  }
  for (const need of needs) {
    const host = hostPathOf(w.container, volumes, need.path);
    if (host === undefined) problems.push(`${at}: ${need.what} (${need.path}) is on no hostPath volume`);
    else if (need.samePath && host !== need.path)
      problems.push(`${at}: ${need.what} is ${need.path} in the container but ${host} on the host`);
  }
  return problems;
}

/** What only the collector needs: the host's processes, a writable /proc/sys, its node's name. */
export function checkCollectorPod(r: Rendering, s: ServiceInRendering): string[] {
  const at = `${r.name}: ${s.workload.ref}`;
  const problems: string[] = [];
  if (s.workload.template.spec?.hostPID !== true)
    problems.push(`${at}: hostPID is not true: /proc/<pid> of crashing processes is not visible`);
  if (s.workload.container.securityContext?.privileged !== true)
    problems.push(`${at}: not privileged: /proc/sys/kernel/core_pattern is read-only in the container`);
  const nodeName = envName(s.spec.prefix, 'nodeName');
  if (s.env.sources[nodeName] !== 'fieldRef spec.nodeName')
    problems.push(
      `${at}: ${nodeName} comes from ${s.env.sources[nodeName] ?? 'nowhere'}, not the downward API spec.nodeName`,
    );
  return problems;
}

function claimOf(s: ServiceInRendering, root: string) {
  const { mount, volume } = covering(s.workload.container, s.workload.template.spec?.volumes ?? [], root);
  return { mount, claim: mount?.mountPath === root ? volume?.persistentVolumeClaim : undefined };
}

/** The collector and the query API mount the same ReadWriteMany claim at their storage roots. */
export function checkStorage(r: Rendering, services: ServiceInRendering[]): string[] {
  const problems: string[] = [];
  const claims = new Set<string>();
  for (const s of services) {
    const storage = s.facts?.storage;
    if (!storage) continue;
    const at = `${r.name}: ${s.workload.ref}`;
    const { mount, claim } = claimOf(s, storage.root);
    if (!claim || !mount) {
      problems.push(`${at}: no PersistentVolumeClaim is mounted at the storage root ${storage.root}`);
      continue;
    }
    claims.add(claim.claimName);
    const pvc = find(r, 'PersistentVolumeClaim', claim.claimName, s.workload.namespace);
    if (!pvc) problems.push(`${at}: PersistentVolumeClaim ${claim.claimName} is not in the rendering`);
    else if (!pvc.spec?.accessModes?.includes('ReadWriteMany'))
      problems.push(
        `${r.name}: PersistentVolumeClaim ${claim.claimName} is not ReadWriteMany: every node's collector writes it`,
      );
    const readOnly = mount.readOnly === true || claim.readOnly === true;
    if (storage.readOnly && !readOnly)
      problems.push(`${at}: the storage is mounted writable; the service only reads it`);
    if (!storage.readOnly && readOnly)
      problems.push(`${at}: the storage is mounted read-only; the service writes it`);
  }
  if (claims.size > 1)
    problems.push(`${r.name}: the services mount different claims: ${[...claims].join(', ')}`);
  return problems;
}

/** The command runs the service's main.ts, a file that exists; the image is the service's version. */
export function checkCommandAndImage(r: Rendering, s: ServiceInRendering, checkTag: boolean): string[] {
  const at = `${r.name}: ${s.workload.ref}`;
  const problems: string[] = [];
  const argv = [...(s.workload.container.command ?? []), ...(s.workload.container.args ?? [])];
  const main = s.spec.main;
  if (!argv.some((a) => a === main || a.endsWith(`/${main}`)))
    problems.push(`${at}: the command does not run ${main}: ${argv.join(' ')}`);
  if (!existsSync(join(repoDir, main))) problems.push(`${at}: ${main} does not exist in the repository`);
  if (checkTag) {
    const { version } = JSON.parse(readFileSync(join(repoDir, s.spec.service, 'package.json'), 'utf8')) as {
      version: string;
    };
    const image = `ghcr.io/podmortem/${s.spec.service}:${version}`;
    const pod = s.workload.template.spec;
    for (const c of [...(pod?.initContainers ?? []), ...(pod?.containers ?? [])])
      if (c.image?.startsWith('ghcr.io/podmortem/') && c.image !== image)
        problems.push(`${at} container ${c.name}: image ${c.image}, not ${image} (the workspace's version)`);
  }
  return problems;
}

/** Every Service reaches a container port of the pods it selects. */
export function checkServices(r: Rendering): string[] {
  const problems: string[] = [];
  for (const o of r.objects.filter((x) => x.kind === 'Service')) {
    const svc = asKind(o, 'Service');
    const selector = Object.entries(svc.spec?.selector ?? {});
    const pods = r.objects
      .filter((x) => WORKLOAD_KINDS.has(x.kind) && x.metadata.namespace === o.metadata.namespace)
      .map((x) => (x.spec as { template?: V1PodTemplateSpec } | undefined)?.template)
      .filter((t): t is V1PodTemplateSpec => selector.every(([k, v]) => t?.metadata?.labels?.[k] === v));
    if (selector.length === 0 || pods.length === 0) {
      problems.push(`${r.name}: Service ${o.metadata.name} selects no workload's pods`);
      continue;
    }
    for (const port of svc.spec?.ports ?? [])
      for (const pod of pods) {
        const target = port.targetPort ?? port.port;
        const reached = (pod.spec?.containers ?? []).some((c) => {
          const number = portOf(c, target);
          return c.ports?.some((p) => p.containerPort === number) === true;
        });
        if (!reached)
          problems.push(
            `${r.name}: Service ${o.metadata.name} port ${String(port.port)} targets ${String(target)}, no container port`,
          );
      }
  }
  return problems;
}

const CLUSTER_SCOPED = new Set([
  'Namespace',
  'ClusterRole',
  'ClusterRoleBinding',
  'PersistentVolume',
  'StorageClass',
  'CustomResourceDefinition',
  'PriorityClass',
]);

/** Namespaced objects name a namespace the rendering creates; cluster-scoped ones name none. */
export function checkNamespaces(r: Rendering): string[] {
  const namespaces = new Set(r.objects.filter((o) => o.kind === 'Namespace').map((o) => o.metadata.name));
  const problems: string[] = [];
  for (const o of r.objects) {
    const ns = o.metadata.namespace;
    if (CLUSTER_SCOPED.has(o.kind)) {
      if (ns !== undefined)
        problems.push(`${r.name}: ${o.kind} ${o.metadata.name} is cluster-scoped but has namespace ${ns}`);
    } else if (ns === undefined || !namespaces.has(ns))
      problems.push(
        `${r.name}: ${o.kind} ${o.metadata.name} is in namespace ${ns ?? '(none)'}, which is not rendered`,
      );
  }
  return problems;
}

function bytes(quantity: string | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$/.exec(quantity ?? '');
  if (!m) return NaN;
  const units: Record<string, number> = {
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    Pi: 2 ** 50,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    P: 1e15,
  };
  return Number(m[1]) * (m[2] ? (units[m[2]] ?? NaN) : 1);
}

/** A claim that names a volume would bind to it: same class, access modes and enough capacity. */
export function checkVolumeBinding(r: Rendering): string[] {
  const problems: string[] = [];
  const pvs = r.objects.filter((o) => o.kind === 'PersistentVolume');
  for (const o of r.objects.filter((x) => x.kind === 'PersistentVolumeClaim')) {
    const pvc = asKind(o, 'PersistentVolumeClaim');
    const name = pvc.spec?.volumeName;
    if (name === undefined) continue;
    const at = `${r.name}: PersistentVolumeClaim ${o.metadata.name}`;
    const pvObject = pvs.find((p) => p.metadata.name === name);
    if (!pvObject) {
      problems.push(`${at}: volume ${name} is not in the rendering`);
      continue;
    }
    const pv = asKind(pvObject, 'PersistentVolume');
    // A claim without storageClassName gets the default class, which a static volume ('') is not.
    if ((pvc.spec?.storageClassName ?? '(default)') !== (pv.spec?.storageClassName ?? ''))
      problems.push(
        `${at}: storageClassName ${pvc.spec?.storageClassName ?? '(default)'} differs from volume ${name}'s`,
      );
    for (const mode of pvc.spec?.accessModes ?? [])
      if (!pv.spec?.accessModes?.includes(mode))
        problems.push(`${at}: volume ${name} lacks access mode ${mode}`);
    const want = bytes(pvc.spec?.resources?.requests?.storage);
    const have = bytes(pv.spec?.capacity?.storage);
    if (!(have >= want))
      problems.push(
        `${at}: volume ${name} holds ${pv.spec?.capacity?.storage ?? '?'}, less than the request`,
      );
    const ref = pv.spec?.claimRef;
    if (ref && (ref.name !== o.metadata.name || ref.namespace !== o.metadata.namespace))
      problems.push(`${at}: volume ${name} is reserved for ${ref.namespace ?? ''}/${ref.name ?? ''}`);
  }
  return problems;
}

// ---- RBAC ---------------------------------------------------------------------------------------

interface KubeCall {
  /** The API class whose method it is: the test checks the method exists there. */
  api: { prototype: object };
  rule: ResourceAttributes;
}

/**
 * The @kubernetes/client-node methods the services call, and the RBAC each needs. A call found in
 * the sources but missing here fails the test: add it here and to the service's ClusterRole.
 */
export const KUBE_CALLS: Record<string, KubeCall> = {
  listPodForAllNamespaces: { api: CoreV1Api, rule: { verb: 'list', group: '', resource: 'pods' } },
  listNamespace: { api: CoreV1Api, rule: { verb: 'list', group: '', resource: 'namespaces' } },
  readNamespace: { api: CoreV1Api, rule: { verb: 'get', group: '', resource: 'namespaces' } },
  createTokenReview: {
    api: AuthenticationV1Api,
    rule: { verb: 'create', group: 'authentication.k8s.io', resource: 'tokenreviews' },
  },
  createSubjectAccessReview: {
    api: AuthorizationV1Api,
    rule: { verb: 'create', group: 'authorization.k8s.io', resource: 'subjectaccessreviews' },
  },
};

export interface FoundCall {
  file: string;
  call: string;
  rule: ResourceAttributes | undefined;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(join(repoDir, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    .map((f) => join(dir, f));
}

/**
 * The Kubernetes API calls in a service's sources: client methods named like the API's
 * operations (listX, createX, …) and Watch paths, in files that use @kubernetes/client-node.
 */
export function kubeCallsOf(sourceDir: string): FoundCall[] {
  const found: FoundCall[] = [];
  for (const file of sourceFiles(sourceDir)) {
    const text = readFileSync(join(repoDir, file), 'utf8');
    if (!text.includes('@kubernetes/client-node')) continue;
    for (const m of text.matchAll(/\.((?:list|read|create|replace|patch|delete|connect)[A-Z]\w*)\(/g)) {
      const call = m[1] ?? '';
      found.push({ file, call, rule: KUBE_CALLS[call]?.rule });
    }
    for (const m of text.matchAll(/\.watch\(\s*['"`]([^'"`]+)['"`]/g)) {
      const path = m[1] ?? '';
      const rule = requestAttributes('GET', new URL(`${path}?watch=true`, 'http://api'));
      found.push({ file, call: `watch ${path}`, rule });
    }
  }
  return found;
}

const READ_VERBS = new Set(['get', 'list', 'watch']);

/**
 * The service's account may make every call its code makes (through ClusterRoleBindings: each is
 * cluster-wide), and holds no more: no wildcards, no other resource, nothing but reads beyond the
 * calls. A service that calls no API gets no binding and no token.
 */
export function checkServiceRbac(r: Rendering, s: ServiceInRendering, calls: FoundCall[]): string[] {
  const at = `${r.name}: ${s.workload.ref}`;
  const problems: string[] = [];
  const pod = s.workload.template.spec;
  const saName = pod?.serviceAccountName ?? 'default';
  const sa = find(r, 'ServiceAccount', saName, s.workload.namespace);
  if (!sa) problems.push(`${at}: ServiceAccount ${saName} is not in the rendering`);
  const tokenMounted = (pod?.automountServiceAccountToken ?? sa?.automountServiceAccountToken) !== false;
  const grants = grantsOf(r.objects, {
    kind: 'ServiceAccount',
    name: saName,
    namespace: s.workload.namespace,
  });
  if (calls.length === 0) {
    if (tokenMounted) problems.push(`${at}: calls no Kubernetes API but gets a service account token`);
    for (const g of grants) problems.push(`${at}: calls no Kubernetes API but is granted ${g.via}`);
    return problems;
  }
  if (!tokenMounted)
    problems.push(`${at}: calls the Kubernetes API but its service account token is not mounted`);
  for (const g of grants)
    if (!g.roleFound) problems.push(`${at}: ${g.via}: the role is not in the rendering`);
  for (const c of calls) {
    if (!c.rule)
      problems.push(`${at}: ${c.file} calls ${c.call}: add its RBAC to KUBE_CALLS and the ClusterRole`);
    else if (
      !allows(
        grants.filter((g) => g.namespace === undefined),
        c.rule,
      )
    )
      problems.push(
        `${at}: ${c.file} calls ${c.call}, needing ${describe(c.rule)}, which no ClusterRoleBinding grants`,
      );
  }
  const needed = calls.map((c) => c.rule).filter((a): a is ResourceAttributes => a !== undefined);
  for (const g of grants)
    for (const rule of g.rules)
      for (const group of rule.apiGroups ?? [])
        for (const resource of rule.resources ?? [])
          for (const verb of rule.verbs) {
            const onNeeded = needed.some((n) => n.group === group && n.resource === resource);
            const exact = needed.some((n) => n.group === group && n.resource === resource && n.verb === verb);
            if ([group, resource, verb].includes('*') || !onNeeded || (!exact && !READ_VERBS.has(verb)))
              problems.push(
                `${at}: ${g.via} grants ${verb} ${group === '' ? 'core' : group}/${resource}, which the code does not need`,
              );
          }
  return problems;
}

export const USER_ROLES = {
  viewer: 'podmortem-crash-viewer',
  downloader: 'podmortem-dump-downloader',
  deleter: 'podmortem-dump-deleter',
} as const;

function key(a: ResourceAttributes): string {
  return describe({ ...a, namespace: undefined });
}

/**
 * The user roles grant exactly what the query API asks SubjectAccessReviews for: the viewer every
 * check but downloads (the dump subresource), the downloader every check; nothing the API never
 * asks about.
 */
export function checkUserRoles(r: Rendering, checked: ResourceAttributes[]): string[] {
  const problems: string[] = [];
  if (checked.length === 0) return [`${r.name}: no access review was recorded`];
  for (const [which, name] of Object.entries(USER_ROLES)) {
    const role = find(r, 'ClusterRole', name);
    if (!role) {
      problems.push(`${r.name}: ClusterRole ${name} is not in the rendering`);
      continue;
    }
    const grant = [{ via: name, namespace: undefined, roleFound: true, rules: role.rules ?? [] }];
    // The namespace does not matter to a ClusterRole: one verdict per verb and resource.
    for (const a of new Map(checked.map((c) => [key(c), c])).values()) {
      // Each role holds the one before it: reading, then downloading, then deleting a dump.
      const expected =
        a.verb === 'delete' ? which === 'deleter' : which !== 'viewer' || a.subresource === undefined;
      if (allows(grant, a) !== expected)
        problems.push(
          `${r.name}: ${name} ${expected ? 'does not allow' : 'allows'} ${key(a)}, which the query API checks`,
        );
    }
    const asked = new Set(checked.map(key));
    for (const rule of role.rules ?? [])
      for (const group of rule.apiGroups ?? [])
        for (const resource of rule.resources ?? [])
          for (const verb of rule.verbs) {
            const [res, sub] = resource.split('/');
            const granted = key({ verb, group, resource: res ?? '', subresource: sub });
            if (!asked.has(granted))
              problems.push(`${r.name}: ${name} grants ${granted}, which the query API never checks`);
          }
  }
  return problems;
}

// ---- the files themselves -----------------------------------------------------------------------

interface Kustomization {
  resources?: string[];
  patches?: { path?: string }[];
  patchesStrategicMerge?: string[];
  components?: string[];
  configMapGenerator?: { files?: string[]; envs?: string[] }[];
  secretGenerator?: { files?: string[]; envs?: string[] }[];
}

/** Manifest files no kustomization uses: they would never reach a cluster. */
export function unusedManifestFiles(parse: (text: string) => unknown): string[] {
  const files = readdirSync(K8S_DIR, { recursive: true, encoding: 'utf8' }).filter((f) => /\.ya?ml$/.test(f));
  const used = new Set<string>();
  for (const f of files.filter((x) => posix.basename(x) === 'kustomization.yaml')) {
    const k = parse(readFileSync(join(K8S_DIR, f), 'utf8')) as Kustomization;
    const dir = posix.dirname(f);
    const refs = [
      ...(k.resources ?? []),
      ...(k.components ?? []),
      ...(k.patchesStrategicMerge ?? []),
      ...(k.patches ?? []).map((p) => p.path).filter((p): p is string => p !== undefined),
      ...[...(k.configMapGenerator ?? []), ...(k.secretGenerator ?? [])].flatMap((g) => [
        ...(g.files ?? []).map((x) => x.split('=').pop() ?? x),
        ...(g.envs ?? []),
      ]),
    ];
    for (const ref of refs) used.add(posix.normalize(posix.join(dir, ref)));
  }
  return files.filter((f) => posix.basename(f) !== 'kustomization.yaml' && !used.has(f));
}
