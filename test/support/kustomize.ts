import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { repoDir, stack } from './stack.ts';

// The Kubernetes manifests as a cluster would receive them: rendered by the real kustomize (the
// engine inside `kubectl apply -k`), not by a reader of our own that could agree with our mistakes.
// kustomize is built from the Go module proxy into the stack folder, once per pinned version.
//   node test/support/kustomize.ts     installs it (idempotent), for scripts that want it up front

/** v5.8.3 needs Go 1.27; this machine's toolchain is 1.26. */
export const KUSTOMIZE_VERSION = 'v5.8.2';
export const KUSTOMIZE_MODULE = 'sigs.k8s.io/kustomize/kustomize/v5';
export const K8S_DIR = join(repoDir, 'deploy/k8s');

const binDir = join(stack.stackDir, 'bin');
const kustomizeBin = join(binDir, 'kustomize');

function installedVersion(): string | undefined {
  if (!existsSync(kustomizeBin)) return undefined;
  try {
    return execFileSync(kustomizeBin, ['version'], { encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
}

function goBinary(): string {
  // The toolchain lives outside the PATH of a plain root shell on this machine.
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/local/go/bin'])
    if (dir !== '' && existsSync(join(dir, 'go'))) return join(dir, 'go');
  throw new Error(
    `kustomize ${KUSTOMIZE_VERSION} is not in ${binDir} and no Go toolchain was found to build it`,
  );
}

/** The path of kustomize at the pinned version, building it first when it is missing or another. */
export function ensureKustomize(): string {
  if (installedVersion() === KUSTOMIZE_VERSION) return kustomizeBin;
  execFileSync(goBinary(), ['install', `${KUSTOMIZE_MODULE}@${KUSTOMIZE_VERSION}`], {
    env: { ...process.env, GOBIN: binDir, GOFLAGS: '-buildvcs=false' },
    stdio: ['ignore', 'inherit', 'inherit'],
    timeout: 900_000,
  });
  const version = installedVersion();
  if (version !== KUSTOMIZE_VERSION)
    throw new Error(`go install left kustomize ${version ?? 'missing'}, not ${KUSTOMIZE_VERSION}`);
  return kustomizeBin;
}

/** One rendered object; fields beyond these are read through the typed views of the checks. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

function isKubeObject(value: unknown): value is KubeObject {
  if (typeof value !== 'object' || value === null) return false;
  const o = value as Record<string, unknown>;
  const meta = o.metadata as Record<string, unknown> | undefined;
  return typeof o.apiVersion === 'string' && typeof o.kind === 'string' && typeof meta?.name === 'string';
}

export interface Rendering {
  /** Relative to deploy/k8s: `base`, `overlays/nfs`, … */
  name: string;
  objects: KubeObject[];
}

/** `kustomize build` of one kustomization folder, parsed. */
export function render(kustomization: string): Rendering {
  const out = execFileSync(ensureKustomize(), ['build', join(K8S_DIR, kustomization)], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const objects = parseAllDocuments(out).map((doc, i) => {
    if (doc.errors.length > 0) throw new Error(`${kustomization}: document ${i}: ${doc.errors[0]?.message}`);
    const value: unknown = doc.toJS();
    if (!isKubeObject(value)) throw new Error(`${kustomization}: document ${i} is not a Kubernetes object`);
    return value;
  });
  return { name: kustomization, objects };
}

/** The base and every overlay folder: a new overlay is checked without being listed anywhere. */
export function kustomizations(): string[] {
  const overlays = readdirSync(join(K8S_DIR, 'overlays'), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => `overlays/${d.name}`)
    .sort();
  return ['base', ...overlays];
}

if (import.meta.main) console.log(ensureKustomize());
