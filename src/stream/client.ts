/**
 * A small Kafka client for tools around the stage (the demo, benchmarks): create and delete topics,
 * produce EmrDocument records, read EntityAnnotations and DeadLetter records the way a downstream
 * consumer should (isolation read_committed), publish ModelUpdate records.
 */
import { Partitioners, type Admin, type Consumer, type Kafka, type Producer } from 'kafkajs';
import type { StageConfig } from '../config/index.ts';
import type { Document } from '../domain/index.ts';
import type { Logger } from '../pipeline/ports.ts';
import { codecs, type DeadLetterRecord, type EntityAnnotationsRecord, type ModelUpdateRecord } from './codecs.ts';
import { createKafka } from './kafka.ts';
import { toEmrDocumentRecord } from './records.ts';

export interface ReceivedRecord<T> {
  record: T;
  key: string | null;
  partition: number;
  offset: string;
  /** Broker/producer timestamp of the record (ms). */
  timestamp: number;
  /** When this client received it (ms, Date.now()). */
  receivedAt: number;
}

export class StreamClient {
  readonly kafka: Kafka;
  private admin: Admin | null = null;
  private producer: Producer | null = null;
  private readonly consumers: Consumer[] = [];

  constructor(
    private readonly config: StageConfig,
    logger: Logger,
  ) {
    this.kafka = createKafka(config.kafka, logger, '-tools');
  }

  private async adminClient(): Promise<Admin> {
    if (!this.admin) {
      const admin = this.kafka.admin();
      await admin.connect();
      this.admin = admin;
    }
    return this.admin;
  }

  /** Creates the configured topics that do not exist yet. */
  async createTopics(partitions = this.config.topicPartitions): Promise<void> {
    const admin = await this.adminClient();
    const existing = new Set(await admin.listTopics());
    const topics = Object.values(this.config.topics).filter((t) => !existing.has(t));
    if (topics.length === 0) return;
    await admin.createTopics({
      waitForLeaders: true,
      topics: topics.map((topic) => ({
        topic,
        numPartitions: topic === this.config.topics.modelUpdates ? 1 : partitions,
        replicationFactor: this.config.topicReplicationFactor,
      })),
    });
  }

  async deleteTopics(): Promise<void> {
    const admin = await this.adminClient();
    const existing = new Set(await admin.listTopics());
    const topics = Object.values(this.config.topics).filter((t) => existing.has(t));
    if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 10_000 });
  }

  private async producerClient(): Promise<Producer> {
    if (!this.producer) {
      const producer = this.kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
      await producer.connect();
      this.producer = producer;
    }
    return this.producer;
  }

  /** Produces documents to the input topic, keyed by id. */
  async produceDocuments(docs: readonly Document[]): Promise<void> {
    const producer = await this.producerClient();
    await producer.send({
      topic: this.config.topics.input,
      acks: -1,
      messages: docs.map((d) => ({ key: d.id, value: codecs().emrDocument.encode(toEmrDocumentRecord(d)) })),
    });
  }

  /**
   * Produces records as given (any bytes, for fault and hostile-input tests), one send each, and
   * returns where each landed.
   */
  async produceRaw(records: readonly { key: Buffer | string | null; value: Buffer | null; partition?: number; topic?: string }[]): Promise<{ partition: number; offset: string }[]> {
    const producer = await this.producerClient();
    const placed: { partition: number; offset: string }[] = [];
    for (const r of records) {
      const [meta] = await producer.send({ topic: r.topic ?? this.config.topics.input, acks: -1, messages: [{ key: r.key, value: r.value, partition: r.partition }] });
      placed.push({ partition: meta.partition, offset: meta.baseOffset ?? '-1' });
    }
    return placed;
  }

  async publishModelUpdate(update: ModelUpdateRecord): Promise<void> {
    const producer = await this.producerClient();
    await producer.send({ topic: this.config.topics.modelUpdates, acks: -1, messages: [{ key: update.version, value: codecs().modelUpdate.encode(update) }] });
  }

  private async read<T>(topic: string, decode: (b: Buffer) => T, onRecord: (r: ReceivedRecord<T>) => void): Promise<void> {
    const consumer = this.kafka.consumer({ groupId: `${this.config.groupId}.reader.${topic}.${Date.now().toString(36)}`, readUncommitted: false, maxWaitTimeInMs: 500 });
    this.consumers.push(consumer);
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message, partition }) => {
        onRecord({
          record: decode(message.value ?? Buffer.alloc(0)),
          key: message.key?.toString() ?? null,
          partition,
          offset: message.offset,
          timestamp: Number(message.timestamp),
          receivedAt: Date.now(),
        });
      },
    });
  }

  /** Reads the output topic from the start, committed records only. */
  readAnnotations(onRecord: (r: ReceivedRecord<EntityAnnotationsRecord>) => void): Promise<void> {
    return this.read(this.config.topics.output, (b) => codecs().entityAnnotations.decode(b), onRecord);
  }

  /** Reads the dead-letter topic from the start, committed records only. */
  readDeadLetters(onRecord: (r: ReceivedRecord<DeadLetterRecord>) => void): Promise<void> {
    return this.read(this.config.topics.deadLetter, (b) => codecs().deadLetter.decode(b), onRecord);
  }

  /** Stops the readers started with readAnnotations / readDeadLetters. */
  async stopReading(): Promise<void> {
    for (const c of this.consumers) await c.disconnect().catch(() => undefined);
    this.consumers.length = 0;
  }

  async close(): Promise<void> {
    await this.stopReading();
    await this.producer?.disconnect().catch(() => undefined);
    this.producer = null;
    await this.admin?.disconnect().catch(() => undefined);
    this.admin = null;
  }
}
