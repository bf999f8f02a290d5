import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { until } from './poll.ts';
import { freePort } from './ports.ts';
import { repoDir, stack } from './stack.ts';

// A server of the local stack that one test owns alone, on ports of its own, so the test can stop
// and start it (Kafka down, Elasticsearch down) without disturbing tests that share the main
// stack. It reuses the main stack's resolved jars and runs the same deploy/local scripts.

const run = promisify(execFile);

export type PrivateComponent = 'kafka' | 'elasticsearch' | 'seaweedfs';

export interface PrivateServer {
  /** host:port for Kafka, http://host:port for Elasticsearch and for SeaweedFS's S3 gateway. */
  readonly address: string;
  /** Kafka with the saslSsl option: host:port of its SASL_SSL listener. */
  readonly saslSslAddress?: string;
  /** Kafka with the mutualTls option: host:port of its SSL listener. */
  readonly mutualTlsAddress?: string;
  up(): Promise<void>;
  down(): Promise<void>;
  /** Stops the server and removes its folder. */
  destroy(): Promise<void>;
}

export interface PrivateServerOptions {
  /** Extra node settings of an Elasticsearch (PODMORTEM_ES_SETTINGS), e.g. a small http.max_content_length. */
  settings?: Record<string, string>;
  /**
   * SeaweedFS: the S3 gateway's -domainName (PODMORTEM_S3_DOMAIN_NAME), so that it also takes the
   * bucket from a Host of <bucket>.<domain> (virtual-host requests); path-style ones still work.
   */
  s3DomainName?: string;
  /**
   * Kafka: a SASL_SSL listener beside PLAINTEXT (SCRAM-SHA-256 and -512), with the server's key
   * and certificate chain in one PEM file and its SCRAM users, name → password.
   */
  saslSsl?: { keyAndCertFile: string; users: Record<string, string> };
  /**
   * Kafka: an SSL listener requiring a client certificate signed by a CA of `clientCaFile`, with
   * the same key store as saslSsl (given there or here).
   */
  mutualTls?: { keyAndCertFile: string; clientCaFile: string };
}

export async function privateServer(
  component: PrivateComponent,
  options: PrivateServerOptions = {},
): Promise<PrivateServer> {
  const dir = mkdtempSync(join(tmpdir(), `podmortem-${component}-`));
  mkdirSync(join(dir, component));
  // The main stack's jars, or its weed binary with the marker of the version it was built from.
  const built = component === 'seaweedfs' ? 'bin' : 'lib';
  symlinkSync(join(stack.stackDir, component, built), join(dir, component, built));
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    PODMORTEM_STACK_DIR: dir,
  };
  let address: string;
  let saslSslAddress: string | undefined;
  let mutualTlsAddress: string | undefined;
  if (component === 'kafka') {
    const port = await freePort();
    env.PODMORTEM_KAFKA_PORT = String(port);
    env.PODMORTEM_KAFKA_CONTROLLER_PORT = String(await freePort());
    address = `${stack.host}:${port}`;
    if (options.saslSsl) {
      const securePort = await freePort();
      env.PODMORTEM_KAFKA_SASL_SSL_PORT = String(securePort);
      env.PODMORTEM_KAFKA_SSL_PEM_FILE = options.saslSsl.keyAndCertFile;
      env.PODMORTEM_KAFKA_SCRAM_USERS = Object.entries(options.saslSsl.users)
        .map(([name, password]) => `${name}=${password}`)
        .join(' ');
      saslSslAddress = `${stack.host}:${securePort}`;
    }
    if (options.mutualTls) {
      const tlsPort = await freePort();
      env.PODMORTEM_KAFKA_SSL_PORT = String(tlsPort);
      env.PODMORTEM_KAFKA_SSL_PEM_FILE = options.mutualTls.keyAndCertFile;
      env.PODMORTEM_KAFKA_SSL_CLIENT_CA_FILE = options.mutualTls.clientCaFile;
      mutualTlsAddress = `${stack.host}:${tlsPort}`;
    }
  } else if (component === 'seaweedfs') {
    const port = await freePort();
    env.PODMORTEM_S3_PORT = String(port);
    env.PODMORTEM_S3_DOMAIN_NAME = options.s3DomainName ?? '';
    for (const name of [
      'PODMORTEM_S3_GRPC_PORT',
      'PODMORTEM_SEAWEEDFS_MASTER_PORT',
      'PODMORTEM_SEAWEEDFS_MASTER_GRPC_PORT',
      'PODMORTEM_SEAWEEDFS_VOLUME_PORT',
      'PODMORTEM_SEAWEEDFS_VOLUME_GRPC_PORT',
      'PODMORTEM_SEAWEEDFS_FILER_PORT',
      'PODMORTEM_SEAWEEDFS_FILER_GRPC_PORT',
    ])
      env[name] = String(await freePort());
    address = `http://${stack.host}:${port}`;
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
    ...(saslSslAddress === undefined ? {} : { saslSslAddress }),
    ...(mutualTlsAddress === undefined ? {} : { mutualTlsAddress }),
    up: () => call('up'),
    down: () => call('down'),
    destroy: async () => {
      await call('down');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Clusters: several members of the same engine, each a private server of its own (folder, ports,
// pid file), started by the same deploy/local scripts with the member settings passed through the
// environment. A test owns the whole cluster and can SIGKILL one member by its pid file and start
// it again.

export interface ClusterMember {
  /** 1-based: the Kafka node.id, or the n of the Elasticsearch node pm-es-<n>. */
  readonly id: number;
  /** The Elasticsearch node.name (pm-es-<id>), or `broker-<id>` for Kafka. */
  readonly name: string;
  /** host:port for Kafka, http://host:port for Elasticsearch. */
  readonly address: string;
  /** Starts the member (again) and waits until it is ready, as `<component>.sh up` does. */
  up(): Promise<void>;
  /** SIGKILL of the process named in the member's pid file; resolves once it is gone. */
  kill(): Promise<void>;
  /** Whether the process of the pid file is alive (a zombie counts as gone). */
  running(): boolean;
}

/** A member as the cluster holds it: also stopped politely, when the cluster is destroyed. */
interface OwnedMember extends ClusterMember {
  down(): Promise<void>;
}

export interface PrivateCluster {
  readonly component: PrivateComponent;
  readonly members: readonly ClusterMember[];
  /** Every member's address, e.g. Kafka's bootstrap brokers. */
  readonly addresses: string[];
  member(id: number): ClusterMember;
  /** Stops every member and removes the cluster's folder. */
  destroy(): Promise<void>;
}

export interface ClusterOptions {
  /** Kafka brokers (each also a KRaft controller) or Elasticsearch nodes. */
  members: number;
  /** Kafka: default and internal topics' replication factor (default: members). */
  replicationFactor?: number;
  /** Kafka: min.insync.replicas (default: replicationFactor - 1, at least 1). */
  minInsyncReplicas?: number;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // A zombie (killed, not reaped yet) runs nothing; whether its sockets are closed is asked apart.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: stack.host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A Kafka cluster id: 16 random bytes, base64url as Kafka's Uuid prints them (no leading '-'). */
function kafkaClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/**
 * A cluster of `members` Kafka brokers (KRaft, each broker and controller, a quorum of all; topics
 * replicated `replicationFactor` times with `minInsyncReplicas`), or of `members` Elasticsearch
 * nodes (pm-es-1 the only master-eligible node, the others data nodes, so losing any other node
 * never costs the cluster its master). Heaps are small: 320 MiB per broker, 512 MiB per node.
 */
export async function privateCluster(
  component: PrivateComponent,
  options: ClusterOptions,
): Promise<PrivateCluster> {
  const root = mkdtempSync(join(tmpdir(), `podmortem-${component}-cluster-`));
  const ids = Array.from({ length: options.members }, (_, i) => i + 1);
  const ports = await Promise.all(ids.map(async () => [await freePort(), await freePort()] as const));
  const portsOf = (id: number) => ports[id - 1] ?? [0, 0];
  const script = join(repoDir, 'deploy/local', `${component}.sh`);
  const replication = options.replicationFactor ?? options.members;
  const minInsync = options.minInsyncReplicas ?? Math.max(1, replication - 1);
  const clusterId = kafkaClusterId();
  const clusterName = `pm-${process.pid}-${Date.now().toString(36)}`;

  const members = ids.map((id): OwnedMember => {
    const dir = join(root, `member-${id}`);
    mkdirSync(join(dir, component), { recursive: true });
    symlinkSync(join(stack.stackDir, component, 'lib'), join(dir, component, 'lib'));
    const [port, peerPort] = portsOf(id);
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      PODMORTEM_STACK_DIR: dir,
    };
    let address: string;
    let name: string;
    let pidFile: string;
    if (component === 'kafka') {
      name = `broker-${id}`;
      address = `${stack.host}:${port}`;
      pidFile = join(dir, 'kafka', 'kafka.pid');
      Object.assign(env, {
        PODMORTEM_KAFKA_PORT: String(port),
        PODMORTEM_KAFKA_CONTROLLER_PORT: String(peerPort),
        PODMORTEM_KAFKA_HEAP: '320m',
        PODMORTEM_KAFKA_NODE_ID: String(id),
        PODMORTEM_KAFKA_QUORUM_VOTERS: ids.map((v) => `${v}@${stack.host}:${portsOf(v)[1]}`).join(','),
        PODMORTEM_KAFKA_CLUSTER_ID: clusterId,
        PODMORTEM_KAFKA_REPLICATION_FACTOR: String(replication),
        PODMORTEM_KAFKA_MIN_INSYNC_REPLICAS: String(minInsync),
        // Three JVMs starting at once on a small machine beside other tests.
        PODMORTEM_KAFKA_START_TIMEOUT: '240',
      });
    } else {
      name = `pm-es-${id}`;
      address = `http://${stack.host}:${port}`;
      pidFile = join(dir, 'elasticsearch', 'elasticsearch.pid');
      const settings = [
        `node.name=${name}`,
        `cluster.name=${clusterName}`,
        `discovery.seed_hosts=${stack.host}:${portsOf(1)[1]}`,
        // Two master-eligible nodes cannot lose either (the voting configuration keeps one of
        // them): one master, and data nodes that can come and go.
        id === 1 ? `cluster.initial_master_nodes=${name}` : 'node.roles=data,ingest',
      ];
      Object.assign(env, {
        PODMORTEM_ES_PORT: String(port),
        PODMORTEM_ES_TRANSPORT_PORT: String(peerPort),
        PODMORTEM_ES_HEAP: '512m',
        PODMORTEM_ES_DISCOVERY_TYPE: 'multi-node',
        PODMORTEM_ES_SETTINGS: settings.join(' '),
        PODMORTEM_ES_START_TIMEOUT: '240',
      });
    }
    const call = async (cmd: 'up' | 'down') => {
      await run('bash', [script, cmd], { env, timeout: 300_000 });
    };
    const pid = (): number | undefined => {
      try {
        const n = Number(readFileSync(pidFile, 'utf8').trim());
        return Number.isInteger(n) && n > 0 ? n : undefined;
      } catch {
        return undefined;
      }
    };
    return {
      id,
      name,
      address,
      up: () => call('up'),
      async kill() {
        const target = pid();
        if (target === undefined || !processAlive(target)) throw new Error(`${name} is not running`);
        process.kill(target, 'SIGKILL');
        // The thread group leader turns zombie before the other threads have closed the sockets.
        await until(
          `${name} (pid ${target}) to be gone and its ports closed`,
          async () => !processAlive(target) && !(await listening(port)) && !(await listening(peerPort)),
          30_000,
        );
      },
      running: () => {
        const target = pid();
        return target !== undefined && processAlive(target);
      },
      down: () => call('down'),
    };
  });

  const cluster: PrivateCluster = {
    component,
    members,
    addresses: members.map((m) => m.address),
    member(id) {
      const found = members.find((m) => m.id === id);
      if (!found) throw new Error(`no member ${id} in the ${component} cluster`);
      return found;
    },
    async destroy() {
      await Promise.all(members.map((m) => m.down()));
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    // Together: a KRaft member is ready only once a quorum of controllers is, and an Elasticsearch
    // data node only once the master has been elected.
    await Promise.all(members.map((m) => m.up()));
  } catch (err) {
    await cluster.destroy().catch(() => undefined);
    throw err;
  }
  return cluster;
}
