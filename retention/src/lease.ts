import type { Consumer, Kafka } from 'kafkajs';
import type { Logger } from '@podmortem/contract/runtime';

// One active instance: every replica joins one consumer group on a one-partition topic, and the
// member Kafka assigns partition 0 is the active one. A consumer group rather than a Kubernetes
// Lease because retention talks to Kafka anyway and the group coordinator already fences a
// member that stops heartbeating; a Lease would need update rights on coordination.k8s.io and a
// clock-based expiry of our own. Activity is re-checked before every deletion: a rebalance under
// way, or no heartbeat within the session timeout, means this member may have been replaced.

export interface LeaseParams {
  kafka: Kafka;
  topic: string;
  groupId: string;
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  logger: Logger;
}

export class KafkaLease {
  private consumer: Consumer | undefined;
  private holding = false;
  /** The group has assigned this member its share at least once since the last rebalance. */
  private joined = false;
  private lastHeartbeat = 0;
  private readonly params: LeaseParams;

  constructor(params: LeaseParams) {
    this.params = params;
  }

  async start(): Promise<void> {
    const { kafka, topic, groupId } = this.params;
    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    } finally {
      await admin.disconnect();
    }
    const consumer = kafka.consumer({
      groupId,
      sessionTimeout: this.params.sessionTimeoutMs,
      heartbeatInterval: this.params.heartbeatIntervalMs,
      // kafkajs heartbeats between fetches; an empty topic's fetch waits this long on the broker.
      maxWaitTimeInMs: this.params.heartbeatIntervalMs,
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.joined = true;
      this.holding = (e.payload.memberAssignment[topic] ?? []).includes(0);
      this.lastHeartbeat = Date.now();
      this.params.logger.info(
        { active: this.holding },
        this.holding ? 'retention lease held' : 'retention lease standby',
      );
    });
    consumer.on(consumer.events.HEARTBEAT, () => {
      this.lastHeartbeat = Date.now();
    });
    for (const lost of [consumer.events.REBALANCING, consumer.events.STOP, consumer.events.CRASH])
      consumer.on(lost, () => {
        this.holding = false;
        this.joined = false;
      });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: false });
    await consumer.run({ eachMessage: async () => {} });
  }

  /**
   * Holds partition 0 and has heard from the coordinator within half the session timeout. The
   * coordinator counts the timeout from when it received the last heartbeat, which is before this
   * member saw the answer; half of it leaves the member a margin to stop acting well before the
   * group could give the partition to another (heartbeats come at least three times as often).
   */
  isActive(): Promise<boolean> {
    const silentMs = Date.now() - this.lastHeartbeat;
    return Promise.resolve(this.holding && silentMs < this.params.sessionTimeoutMs / 2);
  }

  /** Joined the group: active (holding partition 0) or standby; undefined while (re)joining. */
  state(): 'active' | 'standby' | undefined {
    return this.joined ? (this.holding ? 'active' : 'standby') : undefined;
  }

  async shutdown(): Promise<void> {
    this.holding = false;
    const consumer = this.consumer;
    this.consumer = undefined;
    await consumer?.disconnect();
  }
}
