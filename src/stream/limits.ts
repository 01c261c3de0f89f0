/**
 * The size limits a produce must respect, read from the cluster at start (kafkajs admin
 * describeConfigs): each output topic's max.message.bytes (its effective value, which is the broker's
 * message.max.bytes unless the topic overrides it) and every broker's socket.request.max.bytes (the
 * largest request a broker reads; kafkajs has no client-side request size of its own). The broker
 * checks each record batch against max.message.bytes, so that is the bound for a record and for the
 * records of one send() (src/stream/fit.ts).
 */
import kafkajs, { type Kafka } from 'kafkajs';
import type { Logger } from '../pipeline/ports.ts';
import { safeErrorMessage } from '../pipeline/logging.ts';

// kafkajs is CommonJS and Node's named-export detection misses this one.
const { ConfigResourceTypes } = kafkajs;

/** Kafka's default message.max.bytes (1 MiB + 12 bytes of log overhead): the assumption when a limit cannot be read. */
export const KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;

export interface ProduceLimits {
  /** The most bytes one record batch (so one record, and one send()'s records for a partition) may take on `topic`. */
  maxMessageBytes(topic: string): number;
}

export function fixedLimits(bytes: number, perTopic: Record<string, number> = {}): ProduceLimits {
  return { maxMessageBytes: (topic) => perTopic[topic] ?? bytes };
}

/**
 * Reads the limits for `topics`. A limit that cannot be read (no permission to describe configs, a
 * topic not there yet) falls back to Kafka's default, with a warning: the stage then still isolates
 * any record the broker refuses (src/stream/stage.ts), only less cheaply.
 */
export async function readProduceLimits(kafka: Kafka, topics: readonly string[], logger: Logger): Promise<ProduceLimits> {
  const perTopic: Record<string, number> = {};
  let requestMax = Number.POSITIVE_INFINITY;
  const admin = kafka.admin({ retry: { retries: 2 } });
  try {
    await admin.connect();
    const { brokers } = await admin.describeCluster();
    const described = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [
        ...topics.map((name) => ({ type: ConfigResourceTypes.TOPIC, name, configNames: ['max.message.bytes'] })),
        ...brokers.map((b) => ({ type: ConfigResourceTypes.BROKER, name: String(b.nodeId), configNames: ['message.max.bytes', 'socket.request.max.bytes'] })),
      ],
    });
    let brokerMessageMax = Number.POSITIVE_INFINITY;
    for (const r of described.resources) {
      const value = (name: string) => {
        const n = Number(r.configEntries.find((e) => e.configName === name)?.configValue);
        return Number.isFinite(n) && n > 0 ? n : null;
      };
      if (r.errorCode !== 0) {
        logger.warn('cannot read a size limit; assuming the Kafka default', { resource: r.resourceName, error: r.errorMessage });
        continue;
      }
      if (r.resourceType === ConfigResourceTypes.TOPIC) {
        const v = value('max.message.bytes');
        if (v !== null) perTopic[r.resourceName] = v;
      } else {
        brokerMessageMax = Math.min(brokerMessageMax, value('message.max.bytes') ?? Number.POSITIVE_INFINITY);
        requestMax = Math.min(requestMax, value('socket.request.max.bytes') ?? Number.POSITIVE_INFINITY);
      }
    }
    for (const t of topics) perTopic[t] ??= Number.isFinite(brokerMessageMax) ? brokerMessageMax : KAFKA_DEFAULT_MAX_MESSAGE_BYTES;
  } catch (error) {
    logger.warn('cannot read the brokers\' size limits; assuming the Kafka default', { error: safeErrorMessage(error), assumedBytes: KAFKA_DEFAULT_MAX_MESSAGE_BYTES });
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  const limits: Record<string, number> = {};
  for (const t of topics) limits[t] = Math.min(perTopic[t] ?? KAFKA_DEFAULT_MAX_MESSAGE_BYTES, requestMax);
  logger.info('produce size limits', { maxMessageBytes: limits });
  return fixedLimits(KAFKA_DEFAULT_MAX_MESSAGE_BYTES, limits);
}
