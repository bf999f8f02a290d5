import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';

// Makes a process look like a pod's container to the kernel: a cgroup shaped as the kubelet's
// systemd driver names them (kubepods.slice/kubepods-besteffort.slice/
// kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope) in the cgroup v2 hierarchy. Only
// the v2 hierarchy is touched: the machine's own accounting lives in the v1 controllers.

function signalName(n: number): NodeJS.Signals | null {
  const entry = Object.entries(constants.signals).find(([, v]) => v === n);
  return entry ? (entry[0] as NodeJS.Signals) : null;
}

export function cgroup2Mount(): string {
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    if (fsType === 'cgroup2' && mountPoint) return mountPoint;
  }
  throw new Error('no cgroup2 hierarchy in /proc/mounts');
}

export interface CrashResult {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The kernel reported a core dump (wait status WCOREDUMP), as the shell sees it. */
  coreDumped: boolean;
}

export interface PodCgroup {
  /** Full path of the container's cgroup directory. */
  readonly path: string;
  /** The path /proc/<pid>/cgroup shows for a process inside (relative to the hierarchy). */
  readonly relative: string;
  /**
   * Runs a program inside the cgroup with core dumps allowed, and waits for it to end;
   * `onLine` sees each line of its stdout as it comes.
   */
  run(program: string, args?: string[], onLine?: (line: string) => void): Promise<CrashResult>;
  /** Pids in the cgroup now. */
  pids(): number[];
  /** Removes the cgroups made (they must be empty: run() waits for its process). */
  remove(): void;
}

export function createPodCgroup(podUid: string, containerId: string): PodCgroup {
  const root = cgroup2Mount();
  const segments = [
    'kubepods.slice',
    'kubepods-besteffort.slice',
    `kubepods-besteffort-pod${podUid.replaceAll('-', '_')}.slice`,
    `cri-containerd-${containerId}.scope`,
  ];
  const path = join(root, ...segments);
  mkdirSync(path, { recursive: true });
  return {
    path,
    relative: '/' + segments.join('/'),
    pids: () =>
      readFileSync(join(path, 'cgroup.procs'), 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map(Number),
    run: (program, args = [], onLine) =>
      new Promise((resolve, reject) => {
        // The shell moves itself into the cgroup, allows cores, and becomes the program; it reports
        // how the program ended in the way only a parent shell can see (the core-dump flag).
        const script = `echo $$ > ${JSON.stringify(join(path, 'cgroup.procs'))} && ulimit -c unlimited && "$@"; s=$?; echo "exit-status $s" >&2; exit $s`;
        const child = spawn('bash', ['-c', script, 'crash-wrapper', program, ...args], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        let partial = '';
        child.stdout.on('data', (d: Buffer) => {
          stdout += d.toString();
          const lines = (partial + d.toString()).split('\n');
          partial = lines.pop() ?? '';
          for (const line of lines) onLine?.(line);
        });
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.once('error', reject);
        child.once('close', () => {
          if (partial !== '') onLine?.(partial);
          const status = Number(/exit-status (\d+)/.exec(stderr)?.[1] ?? 'NaN');
          const signalNo = status > 128 ? status - 128 : 0;
          const signal = signalNo === 0 ? null : signalName(signalNo);
          resolve({
            stdout,
            stderr: stderr.replace(/exit-status \d+\n?$/, ''),
            code: signalNo === 0 ? status : null,
            signal,
            coreDumped: /core dumped/i.test(stderr),
          });
        });
      }),
    remove: () => {
      for (let i = segments.length; i > 0; i--) {
        try {
          rmdirSync(join(root, ...segments.slice(0, i)));
        } catch (err) {
          // a parent slice still holding other tests' cgroups stays
          if (
            (err as NodeJS.ErrnoException).code !== 'EBUSY' &&
            (err as NodeJS.ErrnoException).code !== 'ENOENT'
          )
            throw err;
        }
      }
    },
  };
}
