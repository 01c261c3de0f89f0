import type { Kafka } from 'kafkajs';
import type { StageConfig } from '../config/index.ts';
import type { Logger } from '../pipeline/ports.ts';

/** Creates the stage's topics that do not exist yet (idempotent). */
export async function ensureTopics(kafka: Kafka, config: StageConfig, logger: Logger): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const wanted = Object.values(config.topics).filter((t) => !existing.has(t));
    if (wanted.length === 0) return [];
    await admin.createTopics({
      waitForLeaders: true,
      topics: wanted.map((topic) => ({
        topic,
        // The model-updates topic is a low-volume broadcast: one partition keeps updates in order.
        numPartitions: topic === config.topics.modelUpdates ? 1 : config.topicPartitions,
        replicationFactor: config.topicReplicationFactor,
      })),
    });
    logger.info('created topics', { topics: wanted });
    return wanted;
  } finally {
    await admin.disconnect();
  }
}
