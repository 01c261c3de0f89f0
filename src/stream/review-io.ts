/**
 * Kafka side of the review page (`rmbert review`): a reader of the documents and entities topics in
 * the page's own consumer group (read_committed, so only what the stage committed), which commits a
 * batch's offsets only after the page has stored what it read; and a producer of Feedback records.
 *
 * The producer is idempotent (the broker drops a retried duplicate of a send); the page itself makes a
 * review produce one record, keyed by document id, with the review id in a header.
 */
import { Partitioners, type Consumer, type EachBatchPayload, type Kafka, type Producer } from 'kafkajs';
import type { StageConfig } from '../config/index.ts';
import { TransportError } from '../errors/index.ts';
import { safeErrorMessage } from '../pipeline/logging.ts';
import type { Logger } from '../pipeline/ports.ts';
import { codecs, type EmrDocumentRecord, type EntityAnnotationsRecord, type FeedbackRecord, type ModelUpdateRecord } from './codecs.ts';

export type ReviewInput = { kind: 'document'; record: EmrDocumentRecord } | { kind: 'annotations'; record: EntityAnnotationsRecord };

export const REVIEW_ID_HEADER = 'rmbert-review-id';

/** Names the configured topics that do not exist (the stage creates them as it starts). */
export async function missingTopics(kafka: Kafka, topics: readonly string[]): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    return topics.filter((t) => !existing.has(t));
  } finally {
    await admin.disconnect();
  }
}

export class ReviewSourceReader {
  private consumer: Consumer | null = null;
  private readonly log: Logger;
  /** Records that could not be decoded (skipped; their content is never logged). */
  undecodable = 0;

  constructor(
    private readonly kafka: Kafka,
    private readonly config: StageConfig,
    private readonly groupId: string,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'review-reader' });
  }

  /** Per topic and partition, the next offset to commit once what was read before it is stored. */
  private readonly uncommitted = new Map<string, { topic: string; partition: number; offset: string }>();

  /**
   * Reads both topics from the group's committed offsets (the start of each topic for a new group).
   * `store` receives each fetched batch's records and resolves true when everything read so far is
   * stored (on disk): only then are the offsets committed, this batch's and those of earlier batches
   * it did not store at once (so that a busy topic is not written to disk batch by batch). A record
   * read but not yet stored when the process ends is read again.
   */
  async start(store: (inputs: ReviewInput[]) => Promise<boolean>): Promise<void> {
    const { topics, kafka } = this.config;
    const consumer = this.kafka.consumer({
      groupId: this.groupId,
      readUncommitted: false,
      sessionTimeout: kafka.sessionTimeoutMs,
      heartbeatInterval: Math.max(1000, Math.floor(kafka.sessionTimeoutMs / 10)),
      maxWaitTimeInMs: 500,
      retry: {
        retries: kafka.retries,
        initialRetryTime: kafka.initialRetryMs,
        maxRetryTime: kafka.maxRetryMs,
        restartOnFailure: async (error) => {
          this.log.error('review reader failed; restarting it', { errorClass: error.name, error: safeErrorMessage(error) });
          return true;
        },
      },
    });
    this.consumer = consumer;
    await consumer.connect();
    await consumer.subscribe({ topics: [topics.input, topics.output], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: (payload) => this.eachBatch(payload, store),
    });
  }

  private async eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload, store: (inputs: ReviewInput[]) => Promise<boolean>): Promise<void> {
    if (!isRunning() || isStale() || batch.messages.length === 0) return;
    const isDocuments = batch.topic === this.config.topics.input;
    const inputs: ReviewInput[] = [];
    for (const m of batch.messages) {
      try {
        if (!m.value || m.value.length === 0) throw new Error('record has no value');
        inputs.push(isDocuments ? { kind: 'document', record: codecs().emrDocument.decode(m.value) } : { kind: 'annotations', record: codecs().entityAnnotations.decode(m.value) });
      } catch (error) {
        this.undecodable++;
        this.log.warn('skipped a record that is not readable', { topic: batch.topic, partition: batch.partition, offset: m.offset, error: safeErrorMessage(error) });
      }
    }
    const stored = await store(inputs);
    const last = batch.messages[batch.messages.length - 1].offset;
    resolveOffset(last);
    this.uncommitted.set(`${batch.topic}:${batch.partition}`, { topic: batch.topic, partition: batch.partition, offset: (BigInt(last) + 1n).toString() });
    if (stored) await this.commitStored();
    await heartbeat();
  }

  /** Commits the offsets of everything read so far; call only once it is stored. */
  async commitStored(): Promise<void> {
    if (this.uncommitted.size === 0 || !this.consumer) return;
    const offsets = [...this.uncommitted.values()];
    this.uncommitted.clear();
    try {
      await this.consumer.commitOffsets(offsets);
    } catch (error) {
      // Read again after a restart if this commit is lost; the queue ignores records it already holds.
      for (const o of offsets) if (!this.uncommitted.has(`${o.topic}:${o.partition}`)) this.uncommitted.set(`${o.topic}:${o.partition}`, o);
      this.log.warn('could not commit the review reader\'s offsets; retried with the next batch', { error: safeErrorMessage(error) });
    }
  }

  async stop(): Promise<void> {
    await this.consumer?.disconnect().catch(() => undefined);
    this.consumer = null;
  }
}

/**
 * Reads the model-updates topic from the start at every start (its group never commits): the
 * promoted models, for the trainer panel. Low volume: one record per promotion.
 */
export class ModelUpdatesReader {
  private consumer: Consumer | null = null;
  private readonly log: Logger;

  constructor(
    private readonly kafka: Kafka,
    private readonly config: StageConfig,
    private readonly groupId: string,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'model-updates-reader' });
  }

  async start(deliver: (update: ModelUpdateRecord) => void): Promise<void> {
    const consumer = this.kafka.consumer({ groupId: this.groupId, readUncommitted: false, maxWaitTimeInMs: 1000, sessionTimeout: this.config.kafka.sessionTimeoutMs });
    this.consumer = consumer;
    await consumer.connect();
    await consumer.subscribe({ topic: this.config.topics.modelUpdates, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ message, partition }) => {
        try {
          deliver(codecs().modelUpdate.decode(message.value ?? Buffer.alloc(0)));
        } catch (error) {
          this.log.warn('skipped a model update that is not readable', { partition, offset: message.offset, error: safeErrorMessage(error) });
        }
      },
    });
  }

  async stop(): Promise<void> {
    await this.consumer?.disconnect().catch(() => undefined);
    this.consumer = null;
  }
}

export class FeedbackSender {
  private producer: Promise<Producer> | null = null;

  constructor(
    private readonly kafka: Kafka,
    private readonly config: StageConfig,
  ) {}

  /** Encodes a Feedback record (throws SchemaError when it does not fit the schema). */
  encode(record: FeedbackRecord): Buffer {
    return codecs().feedback.encode(record);
  }

  private client(): Promise<Producer> {
    if (!this.producer) {
      const producer = this.kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        createPartitioner: Partitioners.DefaultPartitioner,
        retry: { retries: this.config.kafka.retries, initialRetryTime: this.config.kafka.initialRetryMs, maxRetryTime: this.config.kafka.maxRetryMs },
      });
      const p = producer.connect().then(() => producer);
      p.catch(() => {
        this.producer = null;
      });
      this.producer = p;
    }
    return this.producer;
  }

  /** Sends one encoded Feedback record to the feedback topic, keyed by document id; resolves when all replicas have it. */
  async send(documentId: string, value: Buffer, reviewId: string): Promise<void> {
    try {
      const producer = await this.client();
      await producer.send({ topic: this.config.topics.feedback, acks: -1, messages: [{ key: documentId, value, headers: { [REVIEW_ID_HEADER]: reviewId } }] });
    } catch (error) {
      throw new TransportError(`cannot send the Feedback record to ${this.config.topics.feedback}: ${safeErrorMessage(error)}`, error);
    }
  }

  async close(): Promise<void> {
    const p = this.producer;
    this.producer = null;
    await p?.then((x) => x.disconnect()).catch(() => undefined);
  }
}
