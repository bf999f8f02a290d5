import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.ts';
import { repoDir, stack } from './stack.ts';

// A server of the local stack that one test owns alone, on ports of its own, so the test can stop
// and start it (Kafka down, Elasticsearch down) without disturbing tests that share the main
// stack. It reuses the main stack's resolved jars and runs the same deploy/local scripts.

const run = promisify(execFile);

export type PrivateComponent = 'kafka' | 'elasticsearch';

export interface PrivateServer {
  /** host:port for Kafka, http://host:port for Elasticsearch. */
  readonly address: string;
  up(): Promise<void>;
  down(): Promise<void>;
  /** Stops the server and removes its folder. */
  destroy(): Promise<void>;
}

/** `settings`: extra node settings of an Elasticsearch (PODMORTEM_ES_SETTINGS), e.g. a small http.max_content_length. */
export async function privateServer(
  component: PrivateComponent,
  options: { settings?: Record<string, string> } = {},
): Promise<PrivateServer> {
  const dir = mkdtempSync(join(tmpdir(), `podmortem-${component}-`));
  mkdirSync(join(dir, component));
  symlinkSync(join(stack.stackDir, component, 'lib'), join(dir, component, 'lib'));
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    PODMORTEM_STACK_DIR: dir,
  };
  let address: string;
  if (component === 'kafka') {
    const port = await freePort();
    env.PODMORTEM_KAFKA_PORT = String(port);
    env.PODMORTEM_KAFKA_CONTROLLER_PORT = String(await freePort());
    address = `${stack.host}:${port}`;
  } else {
    const port = await freePort();
    env.PODMORTEM_ES_PORT = String(port);
    env.PODMORTEM_ES_TRANSPORT_PORT = String(await freePort());
    env.PODMORTEM_ES_HEAP = '512m';
    env.PODMORTEM_ES_SETTINGS = Object.entries(options.settings ?? {})
      .map(([key, value]) => `${key}=${value}`)
      .join(' ');
    address = `http://${stack.host}:${port}`;
  }
  const script = join(repoDir, 'deploy/local', `${component}.sh`);
  const call = async (cmd: 'up' | 'down') => {
    await run('bash', [script, cmd], { env, timeout: 180_000 });
  };
  return {
    address,
    up: () => call('up'),
    down: () => call('down'),
    destroy: async () => {
      await call('down');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
