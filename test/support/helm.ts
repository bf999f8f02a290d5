import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { KubeObject, Rendering } from './kustomize.ts';
import { repoDir, stack } from './stack.ts';

// The Helm chart as a cluster would receive it: rendered by the real helm, not by a reader of our
// own. helm is built from the Go module proxy into the stack folder beside kustomize, once per
// pinned version, with the link-time settings of helm's own Makefile (its version, and the
// Kubernetes version of the client modules it is built with, which `helm template` assumes).
//   node test/support/helm.ts     installs it (idempotent), for scripts that want it up front

export const HELM_VERSION = 'v3.21.4';
export const HELM_MODULE = 'helm.sh/helm/v3';
/** The k8s.io modules helm v3.21.4 is built with are v0.36: Kubernetes 1.36. */
const K8S_MINOR = '36';
export const CHART_DIR = join(repoDir, 'deploy/helm/podmortem');

const binDir = join(stack.stackDir, 'bin');
const helmBin = join(binDir, 'helm');

function installedVersion(): string | undefined {
  if (!existsSync(helmBin)) return undefined;
  try {
    return execFileSync(helmBin, ['version', '--template', '{{.Version}}'], { encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
}

function goBinary(): string {
  // The toolchain lives outside the PATH of a plain root shell on this machine.
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/local/go/bin'])
    if (dir !== '' && existsSync(join(dir, 'go'))) return join(dir, 'go');
  throw new Error(`helm ${HELM_VERSION} is not in ${binDir} and no Go toolchain was found to build it`);
}

/** The path of helm at the pinned version, building it first when it is missing or another. */
export function ensureHelm(): string {
  if (installedVersion() === HELM_VERSION) return helmBin;
  const ldflags = [
    '-s',
    '-w',
    `-X ${HELM_MODULE}/internal/version.version=${HELM_VERSION}`,
    ...['pkg/lint/rules', 'pkg/chartutil'].flatMap((pkg) => [
      `-X ${HELM_MODULE}/${pkg}.k8sVersionMajor=1`,
      `-X ${HELM_MODULE}/${pkg}.k8sVersionMinor=${K8S_MINOR}`,
    ]),
  ].join(' ');
  mkdirSync(binDir, { recursive: true });
  execFileSync(
    goBinary(),
    ['install', '-trimpath', '-ldflags', ldflags, `${HELM_MODULE}/cmd/helm@${HELM_VERSION}`],
    {
      // Outside any module: `go install module@version` builds with the module's own go.mod.
      cwd: binDir,
      env: { ...process.env, GOBIN: binDir, GOFLAGS: '-mod=mod -buildvcs=false' },
      stdio: ['ignore', 'inherit', 'inherit'],
      timeout: 1_800_000,
    },
  );
  const version = installedVersion();
  if (version !== HELM_VERSION)
    throw new Error(`go install left helm ${version ?? 'missing'}, not ${HELM_VERSION}`);
  return helmBin;
}

export interface HelmResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** helm with these arguments, its exit status and output (a refusal is a result, not a throw). */
export function helm(args: string[]): HelmResult {
  const r = spawnSync(ensureHelm(), args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The documents of a rendering, parsed; `name` is for messages. */
export function parseObjects(name: string, text: string): KubeObject[] {
  return parseAllDocuments(text)
    .map((doc, i) => {
      if (doc.errors.length > 0) throw new Error(`${name}: document ${i}: ${doc.errors[0]?.message}`);
      return doc.toJS() as unknown;
    })
    .filter((value) => value !== null)
    .map((value, i) => {
      const o = value as KubeObject | undefined;
      if (typeof o?.kind !== 'string' || typeof o.metadata.name !== 'string')
        throw new Error(`${name}: document ${i} is not a Kubernetes object`);
      return o;
    });
}

/**
 * `helm template` of the chart with these value files (relative to the chart) and `--set`s, parsed.
 * Throws with helm's message when it refuses the values.
 */
export function renderChart(name: string, valueFiles: string[] = [], sets: string[] = []): Rendering {
  const r = helm([
    'template',
    'podmortem',
    CHART_DIR,
    ...valueFiles.flatMap((f) => ['--values', join(CHART_DIR, f)]),
    ...sets.flatMap((s) => ['--set', s]),
  ]);
  if (r.status !== 0) throw new Error(`helm template ${name}: exit ${String(r.status)}: ${r.stderr}`);
  return { name, objects: parseObjects(name, r.stdout) };
}

if (import.meta.main) console.log(ensureHelm());
