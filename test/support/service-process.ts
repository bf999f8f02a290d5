import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from './ports.ts';
import { repoDir } from './stack.ts';

// A podmortem service run as its own process, as it runs in production (`node <main>`), with its
// ops server on a port of its own and its log lines kept for the test to read.

export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly opsUrl: string;
  readonly logs: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Whether the process is still running. */
  alive(): boolean;
  /** Empty while the ops server is not listening yet. */
  metrics(): Promise<string>;
  ready(): Promise<boolean>;
}

/** Starts `main` (relative to the repository) with the environment `envFor` gives for its ops port. */
export async function startService(
  main: string,
  envFor: (opsPort: number) => Record<string, string>,
): Promise<ServiceProcess> {
  const opsPort = await freePort();
  const env = { ...(process.env as Record<string, string>), ...envFor(opsPort) };
  const child = spawn(process.execPath, [main], { cwd: repoDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logs.push(line);
    if (logs.length > 5000) logs.splice(0, logs.length - 5000);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  let running = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      running = false;
      resolve({ code, signal });
    });
  });
  const opsUrl = `http://127.0.0.1:${opsPort}`;
  return {
    child,
    opsUrl,
    logs,
    exited,
    alive: () => running,
    metrics: async () => {
      try {
        return await (await fetch(`${opsUrl}/metrics`)).text();
      } catch {
        return '';
      }
    },
    ready: async () => {
      try {
        return (await fetch(`${opsUrl}/readyz`)).status === 200;
      } catch {
        return false;
      }
    },
  };
}

/** Stops the process (SIGTERM, then SIGKILL after `graceMs`) if it is still running. */
export async function stopService(p: ServiceProcess, graceMs = 30_000): Promise<void> {
  if (!p.alive()) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
  await p.exited;
  clearTimeout(timer);
}
