import type { Admin, ITopicConfig } from 'kafkajs';
import { until } from './poll.ts';

// Creates topics and waits until every partition has a leader. kafkajs' own `waitForLeaders`
// retries only LEADER_NOT_AVAILABLE; a broker whose metadata has not caught up with the KRaft
// controller yet answers UNKNOWN_TOPIC_OR_PARTITION, which kafkajs throws at once (seen in CI).
// Here both mean "not yet". Returns false when a topic existed already, as createTopics does.
export async function createTopicsWithLeaders(admin: Admin, topics: ITopicConfig[]): Promise<boolean> {
  const created = await admin.createTopics({ topics, waitForLeaders: false });
  const names = topics.map((topic) => topic.topic);
  await until(`leaders for every partition of ${names.join(', ')}`, async () => {
    try {
      const { topics: found } = await admin.fetchTopicMetadata({ topics: names });
      return (
        found.length === names.length &&
        found.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0))
      );
    } catch (err) {
      const type = (err as { type?: string }).type;
      if (type === 'UNKNOWN_TOPIC_OR_PARTITION' || type === 'LEADER_NOT_AVAILABLE') return false;
      throw err;
    }
  });
  return created;
}
