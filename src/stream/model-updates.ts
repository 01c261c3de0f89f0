/**
 * Listens to the model-updates topic and asks the model switcher to load each announced model.
 * Every stage process must see every update, so each one reads with its own consumer group
 * (<group>.model-updates.<instance>), starting from the latest record: at start-up the model comes
 * from the model directory, and only updates announced while the stage runs are applied.
 */
import type { Consumer, Kafka } from 'kafkajs';
import type { StageConfig } from '../config/index.ts';
import type { Logger } from '../pipeline/ports.ts';
import type { ModelSwitcher } from '../pipeline/model-swap.ts';
import { safeErrorMessage } from '../pipeline/logging.ts';
import { codecs } from './codecs.ts';

export interface ModelUpdateListener {
  /** True once the consumer has joined and fetched, i.e. an update published from now on will be seen. */
  readonly listening: boolean;
  stop(): Promise<void>;
}

export async function startModelUpdateListener(kafka: Kafka, config: StageConfig, switcher: ModelSwitcher, logger: Logger): Promise<ModelUpdateListener> {
  const log = logger.child({ component: 'model-updates' });
  const consumer: Consumer = kafka.consumer({
    groupId: `${config.groupId}.model-updates.${config.instanceId}`,
    sessionTimeout: config.kafka.sessionTimeoutMs,
    heartbeatInterval: config.kafka.heartbeatIntervalMs,
    maxWaitTimeInMs: 1000,
    retry: { retries: config.kafka.retries, initialRetryTime: config.kafka.initialRetryMs, maxRetryTime: config.kafka.maxRetryMs, restartOnFailure: async () => true },
  });
  let listening = false;
  consumer.on(consumer.events.FETCH, () => {
    listening = true;
  });
  consumer.on(consumer.events.CRASH, () => {
    listening = false;
  });
  await consumer.connect();
  await consumer.subscribe({ topic: config.topics.modelUpdates, fromBeginning: false });
  await consumer.run({
    autoCommit: true,
    eachMessage: async ({ message, partition }) => {
      let update;
      try {
        update = codecs().modelUpdate.decode(message.value ?? Buffer.alloc(0));
      } catch (error) {
        log.warn('ignoring an undecodable model update', { partition, offset: message.offset, error: safeErrorMessage(error) });
        return;
      }
      log.info('model update announced', { version: update.version, location: update.artifactLocation, sha256: update.sha256 });
      await switcher.request({
        location: update.artifactLocation,
        sha256: update.sha256,
        announcedVersion: update.version,
        reason: 'model-update',
      });
    },
  });
  return {
    get listening() {
      return listening;
    },
    async stop() {
      await consumer.disconnect().catch(() => undefined);
    },
  };
}
