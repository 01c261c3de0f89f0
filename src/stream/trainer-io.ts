/**
 * Kafka side of the trainer sidecar: a consumer of Feedback records in the trainer's own consumer
 * group, and the round commit, one Kafka transaction holding the dead letters of unusable feedback,
 * the ModelUpdate of a promoted model and the feedback offsets the round used.
 *
 * The consumer never commits by itself (autoCommit off): the trainer buffers records across many
 * fetches and commits their offsets only when a training round has used or rejected them, so records
 * read before a crash or a stop are read again.
 */
import { Partitioners, type Admin, type Consumer, type EachBatchPayload, type Kafka, type Producer } from 'kafkajs';
import type { StageConfig } from '../config/index.ts';
import { TransportError } from '../errors/index.ts';
import { safeErrorMessage } from '../pipeline/logging.ts';
import type { Logger } from '../pipeline/ports.ts';
import { codecs, type DeadLetterRecord, type FeedbackRecord, type ModelUpdateRecord } from './codecs.ts';
import { chunkSends, fitDeadLetter, truncatedDeadLetter } from './fit.ts';
import { readProduceLimits, type ProduceLimits } from './limits.ts';
import { isFenced } from './publisher.ts';
import { deadLetter } from './records.ts';

export interface FeedbackRaw {
  key: Buffer | null;
  value: Buffer | null;
}

export interface ReceivedFeedback {
  position: { partition: number; offset: string };
  raw: FeedbackRaw;
  /** The decoded record, or null when the bytes are not a Feedback record. */
  document: FeedbackRecord | null;
  /** Why decoding failed (no record content). */
  decodeError?: string;
}

/** The consumer group of the trainer: one group per trainer deployment, never the stage's. */
export function trainerGroupId(config: StageConfig): string {
  return config.groupId;
}

/** Reads the feedback topic in the trainer's consumer group, from the group's committed offsets (the start for a new group). */
export class FeedbackConsumer {
  private consumer: Consumer | null = null;
  private admin: Admin | null = null;
  /** Per partition, the offset after the last record delivered (control records included). */
  private readonly reached = new Map<number, bigint>();
  private readonly waiters = new Set<() => void>();
  private handlerRan = false;
  private readonly log: Logger;

  constructor(
    private readonly kafka: Kafka,
    private readonly config: StageConfig,
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'feedback-consumer' });
  }

  private get topic(): string {
    return this.config.topics.feedback;
  }

  private advance(partition: number, next: bigint): void {
    const current = this.reached.get(partition);
    if (current === undefined || next > current) this.reached.set(partition, next);
    for (const w of this.waiters) w();
  }

  async start(deliver: (records: ReceivedFeedback[]) => void): Promise<void> {
    const { config } = this;
    const consumer = this.kafka.consumer({
      groupId: trainerGroupId(config),
      sessionTimeout: config.kafka.sessionTimeoutMs,
      heartbeatInterval: config.kafka.heartbeatIntervalMs,
      rebalanceTimeout: config.kafka.rebalanceTimeoutMs,
      maxWaitTimeInMs: 500,
      readUncommitted: false,
      retry: {
        retries: config.kafka.retries,
        initialRetryTime: config.kafka.initialRetryMs,
        maxRetryTime: config.kafka.maxRetryMs,
        restartOnFailure: async (error) => {
          this.log.error('feedback consumer failed; restarting it', { errorClass: error.name, error: safeErrorMessage(error) });
          return true;
        },
      },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.log.info('joined consumer group', { groupId: e.payload.groupId, partitions: e.payload.memberAssignment[this.topic] ?? [] });
    });
    // A fetch made only of transaction markers (or aborted records) never reaches eachBatch; kafkajs still
    // moves past it, and so must the record of how far the topic has been read.
    consumer.on(consumer.events.START_BATCH_PROCESS, () => {
      this.handlerRan = false;
    });
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
      if (!this.handlerRan && e.payload.topic === this.topic) this.advance(e.payload.partition, BigInt(e.payload.lastOffset) + 1n);
    });
    await consumer.connect();
    await consumer.subscribe({ topic: this.topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: (payload) => this.eachBatch(payload, deliver),
    });
  }

  private async eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload, deliver: (records: ReceivedFeedback[]) => void): Promise<void> {
    this.handlerRan = true;
    if (!isRunning() || isStale()) return;
    const codec = codecs().feedback;
    const received: ReceivedFeedback[] = batch.messages.map((m) => {
      const item: ReceivedFeedback = { position: { partition: batch.partition, offset: m.offset }, raw: { key: m.key, value: m.value }, document: null };
      try {
        if (!m.value || m.value.length === 0) throw new Error('record has no value');
        item.document = codec.decode(m.value);
      } catch (error) {
        item.decodeError = safeErrorMessage(error);
      }
      return item;
    });
    deliver(received);
    // The position moves on (so the next fetch does not return the same records), but nothing is committed.
    if (batch.messages.length > 0) resolveOffset(batch.messages[batch.messages.length - 1].offset);
    this.advance(batch.partition, BigInt(batch.lastOffset()) + 1n);
    await heartbeat();
  }

  pause(): void {
    this.consumer?.pause([{ topic: this.topic }]);
  }

  resume(): void {
    this.consumer?.resume([{ topic: this.topic }]);
  }

  /**
   * Resolves true once every partition has been read up to the end it had when called (counting from
   * the group's committed offset, or the start of the partition), false after `timeoutMs`.
   */
  async caughtUp(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (!this.admin) {
      this.admin = this.kafka.admin();
      await this.admin.connect();
    }
    const ends = await this.admin.fetchTopicOffsets(this.topic);
    const [committed] = await this.admin.fetchOffsets({ groupId: trainerGroupId(this.config), topics: [this.topic] });
    const from = new Map<number, bigint>();
    for (const p of ends) from.set(p.partition, BigInt(p.low));
    for (const p of committed?.partitions ?? []) if (p.offset !== '-1') from.set(p.partition, BigInt(p.offset));
    const done = () =>
      ends.every((p) => {
        const end = BigInt(p.high);
        return (from.get(p.partition) ?? 0n) >= end || (this.reached.get(p.partition) ?? -1n) >= end;
      });
    if (done()) return true;
    return new Promise<boolean>((resolve) => {
      const finish = (value: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        signal?.removeEventListener('abort', abort);
        resolve(value);
      };
      const check = () => {
        if (done()) finish(true);
      };
      const abort = () => finish(false);
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.waiters.add(check);
      signal?.addEventListener('abort', abort, { once: true });
    });
  }

  async stop(): Promise<void> {
    await this.consumer?.disconnect().catch(() => undefined);
    this.consumer = null;
    await this.admin?.disconnect().catch(() => undefined);
    this.admin = null;
  }
}

export interface TrainerCommit {
  rejections: readonly { position: { partition: number; offset: string }; errorClass: string; message: string; stage: string; raw: FeedbackRaw }[];
  update: ModelUpdateRecord | null;
  /** Per feedback partition, the next offset to read. */
  positions: ReadonlyMap<number, bigint>;
}

/**
 * Commits a round in one transaction: DeadLetter records (to the dead-letter topic, with the feedback
 * topic as their source), the ModelUpdate (to the model-updates topic, keyed by version) and the
 * feedback offsets of the trainer's group. One transactional id per trainer group and feedback topic,
 * so a second trainer of the same deployment fences the first.
 */
export class TrainerCommitter {
  private producer: Promise<Producer> | null = null;
  private admin: Admin | null = null;
  /** The dead-letter topic's size limit, read before the first commit (src/stream/limits.ts). */
  private limits: Promise<ProduceLimits> | null = null;
  private readonly log: Logger;

  constructor(
    private readonly kafka: Kafka,
    private readonly config: StageConfig,
    logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.log = logger.child({ component: 'trainer-commit' });
  }

  get transactionalId(): string {
    return `${trainerGroupId(this.config)}-${this.config.topics.feedback}`;
  }

  private producerClient(): Promise<Producer> {
    if (!this.producer) {
      const producer = this.kafka.producer({
        transactionalId: this.transactionalId,
        idempotent: true,
        maxInFlightRequests: 1,
        transactionTimeout: this.config.kafka.transactionTimeoutMs,
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

  /** True when the group's committed offsets already cover `positions` (an earlier attempt went through). */
  private async alreadyCommitted(positions: ReadonlyMap<number, bigint>): Promise<boolean> {
    if (!this.admin) {
      this.admin = this.kafka.admin({ retry: { retries: 2 } });
      await this.admin.connect();
    }
    const [entry] = await this.admin.fetchOffsets({ groupId: trainerGroupId(this.config), topics: [this.config.topics.feedback] });
    for (const [partition, next] of positions) {
      const p = entry?.partitions.find((x) => x.partition === partition);
      if (!p || p.offset === '-1' || BigInt(p.offset) < next) return false;
    }
    return positions.size > 0;
  }

  async commit(c: TrainerCommit, options: { retry: boolean } = { retry: false }): Promise<void> {
    const { topics } = this.config;
    let producer: Producer;
    try {
      producer = await this.producerClient();
    } catch (error) {
      throw new TransportError(`cannot connect the trainer's transactional producer: ${safeErrorMessage(error)}`, error);
    }
    let transaction: Awaited<ReturnType<Producer['transaction']>> | null = null;
    try {
      transaction = await producer.transaction();
      if (options.retry && (await this.alreadyCommitted(c.positions))) {
        await transaction.abort();
        this.log.info('the previous attempt had committed; not publishing again');
        return;
      }
      const failedAt = this.now();
      if (c.rejections.length > 0) {
        // Fitted to the topic's limit as the stage does (src/stream/fit.ts): a feedback record near the
        // limit would otherwise make a dead letter over it and the round's commit fail forever.
        this.limits ??= readProduceLimits(this.kafka, [topics.deadLetter], this.log);
        const maxMessageBytes = (await this.limits).maxMessageBytes(topics.deadLetter);
        const encode = (r: DeadLetterRecord) => codecs().deadLetter.encode(r);
        const messages = c.rejections.map((r) => {
          const record = deadLetter({ topic: topics.feedback, partition: r.position.partition, offset: r.position.offset, key: r.raw.key, value: r.raw.value }, r.errorClass, r.message, r.stage, failedAt);
          let fitted;
          try {
            fitted = fitDeadLetter(record, r.raw.key, encode, maxMessageBytes);
          } catch {
            fitted = truncatedDeadLetter(record, r.raw.key, encode, 0, 0);
          }
          return { key: fitted.key, value: fitted.value };
        });
        for (const group of chunkSends(messages, maxMessageBytes)) await transaction.send({ topic: topics.deadLetter, acks: -1, messages: group });
      }
      if (c.update) {
        await transaction.send({ topic: topics.modelUpdates, acks: -1, messages: [{ key: c.update.version, value: codecs().modelUpdate.encode(c.update) }] });
      }
      if (c.positions.size > 0) {
        await transaction.sendOffsets({
          consumerGroupId: trainerGroupId(this.config),
          topics: [{ topic: topics.feedback, partitions: [...c.positions].map(([partition, next]) => ({ partition, offset: next.toString() })) }],
        });
      }
      await transaction.commit();
    } catch (error) {
      let aborted = false;
      if (transaction && transaction.isActive()) {
        try {
          await transaction.abort();
          aborted = true;
        } catch {
          // The coordinator could not be reached; a new producer with the same id aborts it there.
        }
      }
      if (!aborted) {
        const old = this.producer;
        this.producer = null;
        await old?.then((p) => p.disconnect()).catch(() => undefined);
      }
      throw new TransportError(`trainer commit failed: ${safeErrorMessage(error)}`, error, !isFenced(error));
    }
  }

  async close(): Promise<void> {
    const p = this.producer;
    this.producer = null;
    await p?.then((x) => x.disconnect()).catch(() => undefined);
    await this.admin?.disconnect().catch(() => undefined);
    this.admin = null;
  }
}
