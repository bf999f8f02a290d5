// Which container (and which pod) a process belongs to, read from its /proc/<pid>/cgroup. The
// container id is the only trustworthy link between a crashing host process and a pod: names and
// hostnames can be anything. Every runtime spells its cgroups differently:
//   systemd driver:  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope
//                    …/crio-<id>.scope, …/docker-<id>.scope
//                    …/kubepods-burstable-pod<uid_>.slice:cri-containerd:<id> (containerd's own systemd form)
//   cgroupfs driver: /kubepods/burstable/pod<uid>/<id>, /kubepods/pod<uid>/<id> (guaranteed QoS)
//   plain Docker:    /docker/<id>, /system.slice/docker-<id>.scope
// A v1 line reads `N:controller[,controller]:/path`, the v2 line `0::/path`.

export type ContainerRuntime = 'containerd' | 'cri-o' | 'docker' | 'unknown';

export interface CgroupIdentity {
  containerId: string;
  runtime: ContainerRuntime;
  /** The pod uid named by a kubepods cgroup, dashes restored. */
  podUid?: string;
  /** The cgroup path the identity came from. */
  path: string;
}

const HEX64 = '([0-9a-f]{64})';
const containerSegments: { re: RegExp; runtime: ContainerRuntime }[] = [
  { re: new RegExp(`^cri-containerd-${HEX64}\\.scope$`), runtime: 'containerd' },
  { re: new RegExp(`:cri-containerd:${HEX64}$`), runtime: 'containerd' },
  { re: new RegExp(`^crio-${HEX64}(?:\\.scope)?$`), runtime: 'cri-o' },
  { re: new RegExp(`:crio:${HEX64}$`), runtime: 'cri-o' },
  { re: new RegExp(`^docker-${HEX64}\\.scope$`), runtime: 'docker' },
  { re: new RegExp(`:docker:${HEX64}$`), runtime: 'docker' },
];
const bareId = new RegExp(`^${HEX64}$`);
const UID = '([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})';
const podSegment = new RegExp(
  `^(?:kubepods-(?:burstable-|besteffort-|guaranteed-)?)?pod${UID}(?:\\.slice)?(?::|$)`,
);

function containerOf(segment: string, parent: string | undefined): [string, ContainerRuntime] | undefined {
  for (const { re, runtime } of containerSegments) {
    const m = re.exec(segment);
    if (m?.[1]) return [m[1], runtime];
  }
  const m = bareId.exec(segment);
  if (m?.[1]) return [m[1], parent === 'docker' ? 'docker' : 'unknown'];
  return undefined;
}

/** The container (and pod) a single cgroup path names, if any. */
export function identityFromPath(path: string): CgroupIdentity | undefined {
  const segments = path.split('/').filter((s) => s !== '');
  // The innermost container segment wins: a container may nest cgroups of its own below it.
  for (let i = segments.length - 1; i >= 0; i--) {
    const found = containerOf(segments[i] ?? '', segments[i - 1]);
    if (!found) continue;
    const [containerId, runtime] = found;
    let podUid: string | undefined;
    for (let j = i; j >= 0 && podUid === undefined; j--) {
      const m = podSegment.exec(segments[j] ?? '');
      if (m?.[1]) podUid = m[1].replaceAll('_', '-');
    }
    // A bare id outside kubepods and outside docker is not a container we know how to name.
    if (runtime === 'unknown' && podUid === undefined) return undefined;
    return podUid === undefined ? { containerId, runtime, path } : { containerId, runtime, podUid, path };
  }
  return undefined;
}

/**
 * The container a process runs in, from the text of /proc/<pid>/cgroup. The unified (v2) line is
 * read first; the v1 controllers follow (on a v1 host they are all there is).
 */
export function identityFromProcCgroup(text: string): CgroupIdentity | undefined {
  const paths: { path: string; v2: boolean }[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    paths.push({ path: m[3] ?? '', v2: m[1] === '0' && m[2] === '' });
  }
  paths.sort((a, b) => Number(b.v2) - Number(a.v2));
  for (const { path } of paths) {
    const identity = identityFromPath(path);
    if (identity) return identity;
  }
  return undefined;
}
