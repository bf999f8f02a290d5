import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Ports for servers that tests, the demo and the benchmarks start in other processes (Kafka,
// Elasticsearch, Prometheus, the podmortem services). A port found with listen(0) and closed again
// is free only for a moment: the kernel hands the same port to the next listen(0) of any process
// (a fake API server or a query API of the test running beside), and the server started later
// finds it taken (CI saw `stack.sh up` refuse a private Elasticsearch this way). So these ports
// come from below the kernel's ephemeral range, which listen(0) and outgoing connections never
// use, and each is reserved by a lock file naming its owner, so two processes never pick the same.

const LOCK_DIR = join(tmpdir(), 'podmortem-ports');
const RANGE_LOW = 20_000;
const held = new Set<string>();

/** The lowest port the kernel picks for listen(0) and outgoing connections. */
function ephemeralLow(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const n = Number(low);
    return Number.isInteger(n) && n > RANGE_LOW + 1000 ? n : 32_768;
  } catch {
    return 32_768;
  }
}

/** Creates the lock file of `port` for this process; false when another process holds it. */
function reserve(port: number): boolean {
  const file = join(LOCK_DIR, String(port));
  try {
    const fd = openSync(file, 'wx', 0o644);
    writeSync(fd, String(process.pid));
    closeSync(fd);
    held.add(file);
    return true;
  } catch (err) {
    // A lock left by a process that died without its exit handler is not taken over (two takers
    // could both win): its port is skipped, and the range is large.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

function listenable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

process.once('exit', () => {
  for (const file of held) {
    try {
      unlinkSync(file);
    } catch {
      // already gone
    }
  }
});

/**
 * A port on 127.0.0.1 that nothing listens on and no other podmortem test, demo or benchmark
 * process will be handed while this process lives.
 */
export async function freePort(): Promise<number> {
  mkdirSync(LOCK_DIR, { recursive: true, mode: 0o1777 });
  const span = ephemeralLow() - RANGE_LOW;
  for (let tries = 0; tries < 1000; tries++) {
    const port = RANGE_LOW + Math.floor(Math.random() * span);
    if (!reserve(port)) continue;
    if (await listenable(port)) return port;
    // Something outside podmortem listens there: keep the lock (so no one else retries it) and
    // look further.
  }
  throw new Error(
    `no free port in ${RANGE_LOW}-${ephemeralLow() - 1} after 1000 tries (locks in ${LOCK_DIR})`,
  );
}
