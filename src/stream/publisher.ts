/**
 * Exactly-once output: each micro-batch's EntityAnnotations and DeadLetter records and the input
 * offsets it consumed are written in one Kafka transaction, so a consumer reading committed data
 * (readUncommitted: false) sees every input record's result exactly once, and an aborted transaction
 * leaves the input to be processed again.
 *
 * One transactional producer per input partition (transactional id <prefix>-<topic>-<partition>):
 * kafkajs does not implement group-metadata fencing (KIP-447), so fencing by a partition-bound
 * transactional id is what stops a stage that lost a partition in a rebalance from committing
 * output for it after its successor took over.
 */
import type { Admin, Kafka, Message, Producer } from 'kafkajs';
import { Partitioners } from 'kafkajs';
import type { StageConfig } from '../config/index.ts';
import { TransportError } from '../errors/index.ts';
import type { Logger } from '../pipeline/ports.ts';
import { safeErrorMessage } from '../pipeline/logging.ts';
import { chunkSends } from './fit.ts';
import { fixedLimits, KAFKA_DEFAULT_MAX_MESSAGE_BYTES, type ProduceLimits } from './limits.ts';

export interface TransactionContent {
  /** Records per output topic. */
  messages: Map<string, Message[]>;
  /** Input position after the micro-batch: the next offset to read. */
  nextOffset: bigint;
  inputTopic: string;
  partition: number;
}

/** kafkajs errors that mean another producer took over this transactional id. */
const FENCED = new Set(['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED', 'INVALID_PRODUCER_ID_MAPPING']);

/**
 * Broker errors that refuse the records themselves: sending the same records again fails the same way,
 * so retrying the transaction would loop forever. kafkajs marks them not retriable.
 */
const REJECTED = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'INVALID_TIMESTAMP', 'INVALID_RECORD_STATE']);

/** The Kafka error type of an error or of one of its causes (kafkajs wraps protocol errors, e.g. in KafkaJSNonRetriableError). */
export function kafkaErrorType(error: unknown): string | undefined {
  for (let e = error, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const type = (e as { type?: unknown }).type;
    if (typeof type === 'string') return type;
  }
  return undefined;
}

export function isFenced(error: unknown): boolean {
  const type = kafkaErrorType(error);
  return type !== undefined && FENCED.has(type);
}

export function isRejectedRecords(error: unknown): boolean {
  const type = kafkaErrorType(error);
  return type !== undefined && REJECTED.has(type);
}

/**
 * The broker refused records of the transaction for good (e.g. MESSAGE_TOO_LARGE); `kafkaError` is
 * the broker's error type. Not retriable: the stage isolates the records that cause it instead.
 */
export class RecordsRejectedError extends TransportError {
  readonly kafkaError: string;
  constructor(message: string, kafkaError: string, cause: unknown) {
    super(message, cause, false);
    this.kafkaError = kafkaError;
  }
}

export class TransactionalPublisher {
  private readonly producers = new Map<number, Promise<Producer>>();
  private admin: Admin | null = null;
  private closed = false;

  constructor(
    private readonly kafka: Kafka,
    private readonly config: StageConfig,
    private readonly logger: Logger,
    /** Records are sent in groups that fit these (src/stream/fit.ts). */
    private readonly limits: ProduceLimits = fixedLimits(KAFKA_DEFAULT_MAX_MESSAGE_BYTES),
    /** The consumer group whose offsets the transactions commit (the heavy-document lane has its own). */
    private readonly groupId: string = config.groupId,
  ) {}

  private transactionalId(topic: string, partition: number): string {
    return `${this.config.transactionalIdPrefix}-${topic}-${partition}`;
  }

  private producerFor(topic: string, partition: number): Promise<Producer> {
    // After close, nothing may open a new connection (a hard stop leaves work in flight that would).
    if (this.closed) return Promise.reject(new TransportError('the publisher is closed', undefined, false));
    let p = this.producers.get(partition);
    if (!p) {
      const producer = this.kafka.producer({
        transactionalId: this.transactionalId(topic, partition),
        idempotent: true,
        maxInFlightRequests: 1,
        transactionTimeout: this.config.kafka.transactionTimeoutMs,
        createPartitioner: Partitioners.DefaultPartitioner,
        retry: { retries: this.config.kafka.retries, initialRetryTime: this.config.kafka.initialRetryMs, maxRetryTime: this.config.kafka.maxRetryMs },
      });
      p = producer.connect().then(() => producer);
      // A failed connect must not stay cached.
      p.catch(() => this.producers.delete(partition));
      this.producers.set(partition, p);
    }
    return p;
  }

  /** Drops a producer whose transaction state is unknown; its successor (same transactional id) fences it and aborts what it left open. */
  private async reset(partition: number): Promise<void> {
    const p = this.producers.get(partition);
    this.producers.delete(partition);
    if (!p) return;
    try {
      await (await p).disconnect();
    } catch {
      // Already broken; the new producer's initialisation cleans up on the broker side.
    }
  }

  /**
   * Commits the content in one transaction; on any failure the transaction is aborted (or its producer
   * replaced) and a TransportError thrown.
   *
   * `skipIfCommitted` is for retries: a commit whose reply was lost may have gone through. The new
   * transaction is begun first (for a replaced producer that initialises its id, which waits until the
   * broker has finished the previous transaction of this transactional id), then the group's committed
   * offset says whether the content is already in: if so nothing is sent again.
   */
  async commit(content: TransactionContent, options: { skipIfCommitted?: boolean } = {}): Promise<'committed' | 'already-committed'> {
    let used: Producer | null = null;
    try {
      return await this.commitWith(content, options, (p) => (used = p));
    } finally {
      // A commit still running when the publisher was closed (a hard stop) may have reconnected its
      // producer after close() disconnected it: disconnect again once it is over.
      if (this.closed && used) await (used as Producer).disconnect().catch(() => undefined);
    }
  }

  private async commitWith(
    content: TransactionContent,
    options: { skipIfCommitted?: boolean },
    onProducer: (p: Producer) => void,
  ): Promise<'committed' | 'already-committed'> {
    const { inputTopic, partition } = content;
    let producer: Producer;
    try {
      producer = await this.producerFor(inputTopic, partition);
      onProducer(producer);
    } catch (error) {
      throw error instanceof TransportError ? error : new TransportError(`cannot connect the transactional producer: ${safeErrorMessage(error)}`, error);
    }
    let transaction: Awaited<ReturnType<Producer['transaction']>> | null = null;
    try {
      transaction = await producer.transaction();
      if (options.skipIfCommitted) {
        const committed = await this.committedOffset(inputTopic, partition);
        if (committed !== null && committed >= content.nextOffset) {
          // Nothing was added to this transaction, so ending it sends nothing to the broker.
          await transaction.abort();
          return 'already-committed';
        }
      }
      for (const [topic, messages] of content.messages) {
        // One send() is one record batch per partition, which the broker checks against the topic's limit.
        for (const group of chunkSends(messages, this.limits.maxMessageBytes(topic))) await transaction.send({ topic, messages: group, acks: -1 });
      }
      await transaction.sendOffsets({
        consumerGroupId: this.groupId,
        topics: [{ topic: inputTopic, partitions: [{ partition, offset: content.nextOffset.toString() }] }],
      });
      await transaction.commit();
      return 'committed';
    } catch (error) {
      let aborted = false;
      if (transaction && transaction.isActive()) {
        try {
          await transaction.abort();
          aborted = true;
        } catch {
          // The abort could not reach the coordinator; replacing the producer aborts it there.
        }
      }
      if (!aborted) await this.reset(partition);
      const kafkaError = kafkaErrorType(error);
      const rejected = isRejectedRecords(error);
      this.logger.warn(rejected ? 'the broker refused records of the output transaction; it was aborted' : 'output transaction failed and was aborted; the micro-batch will be retried', {
        partition,
        errorClass: error instanceof Error ? error.name : 'Error',
        kafkaError,
        error: safeErrorMessage(error),
      });
      if (error instanceof TransportError) throw error;
      if (rejected) throw new RecordsRejectedError(`the broker refused records: ${safeErrorMessage(error)}`, kafkaError!, error);
      throw new TransportError(`output transaction failed: ${safeErrorMessage(error)}`, error, !isFenced(error));
    }
  }

  /**
   * Takes over an input partition: initialises its transactional producer, which fences the producer
   * of a previous owner (a crashed process, or one dropped from the group while it was busy) and makes
   * the broker finish that producer's open transaction (an abort, or a commit already under way), then
   * reads the group's committed offset. Records before that offset were committed by the previous
   * owner after this member's consumer had fetched its start position (kafkajs reads offsets without
   * KIP-447's require_stable), and must not be processed again. Returns the committed offset, or null.
   */
  async takeOver(topic: string, partition: number): Promise<bigint | null> {
    let producer: Producer;
    try {
      producer = await this.producerFor(topic, partition);
      const transaction = await producer.transaction();
      // Nothing was added, so ending it sends nothing to the broker.
      await transaction.abort();
    } catch (error) {
      await this.reset(partition);
      if (error instanceof TransportError) throw error;
      throw new TransportError(`cannot take over partition ${partition}: ${safeErrorMessage(error)}`, error, !isFenced(error));
    }
    return this.committedOffset(topic, partition);
  }

  /** Closes the producers of every partition (after a rebalance: the next owner's producer fences them anyway). */
  async releaseAll(): Promise<void> {
    const partitions = [...this.producers.keys()];
    for (const partition of partitions) await this.reset(partition);
  }

  /** The offset committed for the stage's group on an input partition, or null when none. */
  async committedOffset(topic: string, partition: number): Promise<bigint | null> {
    try {
      if (this.closed) throw new TransportError('the publisher is closed', undefined, false);
      if (!this.admin) {
        const admin = this.kafka.admin({ retry: { retries: 2 } });
        await admin.connect();
        if (this.closed) {
          await admin.disconnect();
          throw new TransportError('the publisher is closed', undefined, false);
        }
        this.admin = admin;
      }
      const [entry] = await this.admin.fetchOffsets({ groupId: this.groupId, topics: [topic] });
      const p = entry?.partitions.find((x) => x.partition === partition);
      if (!p || p.offset === '-1') return null;
      return BigInt(p.offset);
    } catch (error) {
      throw error instanceof TransportError ? error : new TransportError(`cannot read committed offsets: ${safeErrorMessage(error)}`, error);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.producers.values()];
    this.producers.clear();
    for (const p of all) {
      try {
        await (await p).disconnect();
      } catch {
        // Closing anyway.
      }
    }
    if (this.admin) await this.admin.disconnect().catch(() => undefined);
    this.admin = null;
  }
}
