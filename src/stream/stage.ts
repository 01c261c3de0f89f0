/**
 * The streaming stage: a kafkajs consumer group on the input topic, micro-batches through the
 * pipeline, results and dead letters published with the input offsets in one transaction.
 *
 * Micro-batches close on count, bytes, characters or time, whichever comes first: the broker holds a
 * fetch until a micro-batch's worth of bytes is there or `batch.maxWaitMs` has passed, and the stage
 * cuts what arrives into micro-batches of at most `batch.maxRecords` records, `batch.maxBytes` bytes
 * and documents of `batch.maxCost` cost (src/pipeline/cost.ts: characters plus a fixed amount per
 * sentence; inference time grows with both).
 *
 * Two lanes. Offsets are committed in order per partition, so one heavy document (100k characters:
 * tens of seconds of inference on 2 cores) would hold every document behind it. A document of at
 * least `heavy.minCost` cost is therefore forwarded, as is, to the heavy topic inside its
 * micro-batch's transaction (exactly once, like an output), and annotated by a second consumer of this
 * process on that topic, whose engine calls yield to the normal lane's (src/pipeline/turns.ts).
 */
import type { Consumer, EachBatchPayload, IHeaders, Kafka, KafkaMessage, Message } from 'kafkajs';
import type { StageConfig } from '../config/index.ts';
import type { Document } from '../domain/index.ts';
import { ModelError, RmBertError, withRetry } from '../errors/index.ts';
import { DocumentProcessingError, OutputTooLargeError, deadLetterClass } from '../pipeline/errors.ts';
import { KnowledgeGate } from '../pipeline/knowledge-gate.ts';
import { safeErrorMessage } from '../pipeline/logging.ts';
import { ModelDirectoryWatcher, ModelSwitcher, type ModelCatalog } from '../pipeline/model-swap.ts';
import { NO_STAGE_METRICS, type AssertionAssessor, type KnowledgeSource, type Logger, type ModelLoader, type ModelRequest, type StageMetrics } from '../pipeline/ports.ts';
import { BatchProcessor, type BatchResult } from '../pipeline/processor.ts';
import { documentCost } from '../pipeline/cost.ts';
import { processInPieces } from '../pipeline/pieces.ts';
import { EngineTurns, onTurns, type Lane } from '../pipeline/turns.ts';
import { codecs, InvalidUtf8Error, type DeadLetterRecord } from './codecs.ts';
import { DEAD_LETTER_PREFIX_BYTES, fitAnnotations, fitDeadLetter, truncatedDeadLetter } from './fit.ts';
import { createKafka } from './kafka.ts';
import { readProduceLimits, type ProduceLimits } from './limits.ts';
import { startModelUpdateListener, type ModelUpdateListener } from './model-updates.ts';
import { kafkaErrorType, RecordsRejectedError, TransactionalPublisher } from './publisher.ts';
import { deadLetter, toAnnotationsRecord, toDocument } from './records.ts';
import { ensureTopics } from './topics.ts';

export interface StageDeps {
  logger: Logger;
  metrics?: ReadinessMetrics;
  modelLoader: ModelLoader;
  /** Finds the newest artifact in config.model.dir and is polled for new ones; without it, config.model.dir is loaded as one artifact. */
  modelCatalog?: ModelCatalog;
  /** Null: serve without knowledge (outputs carry an empty kgVersion). */
  knowledge: KnowledgeSource | null;
  /** Assesses each entity (src/cli's createAssertionAssessor); null or absent, or config.assertion.enabled false: every assertion is null. */
  assertions?: AssertionAssessor | null;
  /** For tests: the Kafka client (otherwise built from config.kafka). */
  kafka?: Kafka;
  /** Wall clock in ms (record timestamps are compared with it). */
  now?: () => number;
  /** For tests: the size limits to fit records to, instead of reading them from the cluster at start. */
  produceLimits?: ProduceLimits;
  /** For tests: STALLED_AFTER_MS. */
  stalledAfterMs?: number;
}

export interface Readiness {
  ready: boolean;
  checks: Record<string, boolean>;
  /** Why not ready, in words (no document content), for checks whose name does not say it all. */
  reasons?: string[];
}

/** Stage metrics that can show readiness: read from the stage at every scrape (useReadiness), or pushed (setReady). */
export type ReadinessMetrics = StageMetrics & { setReady?(ready: boolean): void; useReadiness?(source: () => Readiness): void };

/**
 * Output transactions aborted in a row after which the stage reports itself not ready: it keeps
 * retrying, but it is not making progress (e.g. the brokers are unreachable).
 */
export const NOT_READY_AFTER_ABORTS = 5;

/**
 * Time without a committed micro-batch, while fetched records wait, after which the stage reports
 * itself stalled (not ready): well above what a heavy document costs (tens of seconds on 2 cores),
 * so that it means a hang (a model or a graph call that never returns), not a slow batch.
 */
export const STALLED_AFTER_MS = 180_000;

/** Heartbeat errors that mean the group is rebalancing and this member must rejoin (kafkajs's isRebalancing). */
const REJOIN = new Set(['REBALANCE_IN_PROGRESS', 'NOT_COORDINATOR_FOR_GROUP', 'ILLEGAL_GENERATION']);

export interface StageCounters {
  recordsIn: number;
  /** Records forwarded to the heavy-document lane (each is counted in recordsIn once, and its output in recordsOut). */
  forwardedHeavy: number;
  recordsOut: number;
  deadLettered: number;
  microBatches: number;
  transactionsAborted: number;
}

export interface StageHandle {
  readonly models: ModelSwitcher;
  readonly knowledge: KnowledgeGate | null;
  readonly watcher: ModelDirectoryWatcher | null;
  readiness(): Readiness;
  counters(): StageCounters;
  /** Settles when the stage stops: after stop(), or rejects when the consumer fails for good. */
  readonly finished: Promise<void>;
  /** Stops fetching, finishes and commits the in-flight micro-batch, closes everything; `clean` is false if the deadline cut it short. */
  stop(deadlineMs?: number): Promise<{ clean: boolean }>;
}

interface Chunk {
  messages: KafkaMessage[];
  bytes: number;
}

/** What one input record turned into: its output records (annotation pages, one dead letter, or the record forwarded to the heavy lane). */
interface Unit {
  source: KafkaMessage;
  messages: { topic: string; message: Message }[];
  /** 1 when the record was annotated. */
  outputs: number;
  /** The dead letter, when the record was rejected (kept to cut it smaller if the broker refuses it). */
  dead: DeadLetterRecord | null;
  /** How often the broker refused this record's output (see publishUnits). */
  refused: number;
  /** Forwarded to the heavy-document lane. */
  forwarded: boolean;
}

/** One consumer of the stage with its own group, transactional producers and micro-batch limits. */
interface LaneState {
  name: Lane;
  inputTopic: string;
  groupId: string;
  publisher: TransactionalPublisher;
  consumer: Consumer | null;
  joined: boolean;
  /** Input partitions taken over (producer fenced, committed offset checked) since the last group join. */
  takenOver: Set<number>;
  /** Serialises the producers' release on a rebalance with the next batch's takeover. */
  rejoined: Promise<void>;
  /** Documents of at least this cost (src/pipeline/cost.ts) are forwarded to the heavy lane (Infinity: none). */
  forwardFromCost: number;
  maxRecords: number;
  /** While a fetched batch is being worked on: when it started, or the last commit in it (performance.now()), and its partition. */
  workingSince: number | null;
  workingPartition: number;
}

/** Header of a record forwarded to the heavy lane: where it came from (topic, partition, offset) and when it was produced there. */
const SOURCE_HEADER = 'rmbert-source';


type Decoded = { ok: true; doc: Document; cost: number } | { ok: false; error: unknown };

interface PreparedBatch {
  topic: string;
  partition: number;
  chunk: Chunk;
  /** One per input record, in offset order. */
  units: Unit[];
  started: number;
  decodeMs: number;
  result: BatchResult;
}

/**
 * Cuts a fetched batch into micro-batches of at most maxRecords records, maxBytes bytes and maxCost
 * cost (the stage's cost of a record: src/pipeline/cost.ts), at least one record each.
 */
export function cutMicroBatches(messages: readonly KafkaMessage[], maxRecords: number, maxBytes: number, maxCost = Infinity, cost: (m: KafkaMessage) => number = () => 0): Chunk[] {
  const chunks: Chunk[] = [];
  let current: Chunk = { messages: [], bytes: 0 };
  let currentCost = 0;
  for (const m of messages) {
    const size = (m.value?.length ?? 0) + (m.key?.length ?? 0);
    const c = cost(m);
    if (current.messages.length > 0 && (current.messages.length >= maxRecords || current.bytes + size > maxBytes || currentCost + c > maxCost)) {
      chunks.push(current);
      current = { messages: [], bytes: 0 };
      currentCost = 0;
    }
    current.messages.push(m);
    current.bytes += size;
    currentCost += c;
  }
  if (current.messages.length > 0) chunks.push(current);
  return chunks;
}

class Stage implements StageHandle {
  readonly models: ModelSwitcher;
  readonly knowledge: KnowledgeGate | null;
  watcher: ModelDirectoryWatcher | null = null;
  readonly finished: Promise<void>;
  private resolveFinished!: () => void;
  private rejectFinished!: (e: unknown) => void;
  private readonly metrics: ReadinessMetrics;
  private readonly log: Logger;
  private readonly processor: BatchProcessor;
  private readonly now: () => number;
  private kafka!: Kafka;
  private readonly lanes: LaneState[] = [];
  private readonly turns = new EngineTurns();
  /** Decoded input records, so that cutting micro-batches by characters and processing them decode once. */
  private readonly decoded = new WeakMap<KafkaMessage, Decoded>();
  private updates: ModelUpdateListener | null = null;
  private limits!: ProduceLimits;
  private stopping: Promise<{ clean: boolean }> | null = null;
  /** Output transactions aborted since the last commit, and the last one's error (class or Kafka error type). */
  private abortStreak = 0;
  private lastAbort = '';
  /** Aborted only when a stop overruns its deadline: cuts retry loops short. */
  private readonly hardStop = new AbortController();
  private get heartbeatIntervalMs(): number {
    return this.config.kafka.heartbeatIntervalMs;
  }
  private readonly stats: StageCounters = { recordsIn: 0, forwardedHeavy: 0, recordsOut: 0, deadLettered: 0, microBatches: 0, transactionsAborted: 0 };

  constructor(
    private readonly config: StageConfig,
    private readonly deps: StageDeps,
  ) {
    this.log = deps.logger.child({ component: 'stage', instance: config.instanceId });
    this.metrics = deps.metrics ?? NO_STAGE_METRICS;
    this.now = deps.now ?? Date.now;
    this.models = new ModelSwitcher(deps.modelLoader, this.log, this.metrics);
    this.knowledge = deps.knowledge
      ? new KnowledgeGate(deps.knowledge, {
          retryInitialMs: config.knowledge.retryInitialMs,
          retryMaxMs: config.knowledge.retryMaxMs,
          logger: this.log,
          metrics: this.metrics,
        })
      : null;
    this.processor = new BatchProcessor({
      knowledge: this.knowledge,
      limits: { maxTextChars: config.maxTextChars },
      metrics: this.metrics,
      logger: this.log,
      assertions: config.assertion.enabled ? (deps.assertions ?? null) : null,
    });
    this.finished = new Promise((resolve, reject) => {
      this.resolveFinished = resolve;
      this.rejectFinished = reject;
    });
    // A fatal consumer failure is reported through `finished`; nobody may be listening yet.
    this.finished.catch(() => undefined);
    // One source of readiness: /readyz and rmbert_ready both ask readiness().
    this.metrics.useReadiness?.(() => this.readiness());
  }

  readiness(): Readiness {
    const checks = {
      consumerJoined: this.lanes.length > 0 && this.lanes.every((l) => l.joined),
      modelLoaded: this.models.loaded,
      modelUpdatesListening: this.updates?.listening ?? false,
      transactionsCommitting: this.abortStreak < NOT_READY_AFTER_ABORTS,
      notStalled: this.lanes.every((l) => this.stalledMs(l) === null),
      notStopping: this.stopping === null,
    };
    const ready = Object.values(checks).every(Boolean);
    const reasons: string[] = [];
    if (!checks.transactionsCommitting) reasons.push(`output transactions aborted ${this.abortStreak} times in a row (last: ${this.lastAbort}); retrying`);
    for (const lane of this.lanes) {
      const stalled = this.stalledMs(lane);
      if (stalled !== null) reasons.push(`no micro-batch committed for ${Math.round(stalled / 1000)} s while records of partition ${lane.workingPartition} are in progress${lane.name === 'heavy' ? ' (heavy-document lane)' : ''}`);
    }
    return reasons.length > 0 ? { ready, checks, reasons } : { ready, checks };
  }

  /** How long the work in progress has gone without a commit, when that is longer than the stall limit; else null. */
  private stalledMs(lane: LaneState): number | null {
    if (lane.workingSince === null) return null;
    const idle = performance.now() - lane.workingSince;
    return idle > (this.deps.stalledAfterMs ?? STALLED_AFTER_MS) ? idle : null;
  }

  counters(): StageCounters {
    return { ...this.stats };
  }

  private updateReady(): void {
    this.metrics.setReady?.(this.readiness().ready);
  }

  async start(): Promise<void> {
    const { config } = this;
    let initial: ModelRequest = { location: config.model.dir, reason: 'startup' };
    if (this.deps.modelCatalog) {
      const entry = await this.deps.modelCatalog.latest();
      if (!entry) throw new ModelError(`no model artifact in ${config.model.dir} (set RMBERT_MODEL_DIR or --model-dir)`);
      initial = { location: entry.location, sha256: entry.sha256, reason: 'startup' };
    }
    const model = await this.models.start(initial);
    this.log.info('model loaded', { modelVersion: `${model.version.name}+${model.version.hash}`, engine: model.engine, usesKnowledge: model.usesKnowledge });

    this.kafka = this.deps.kafka ?? createKafka(config.kafka, this.log);
    if (config.createTopics) await ensureTopics(this.kafka, config, this.log);
    const heavyLane = config.heavy.minCost > 0;
    const limitTopics = [config.topics.output, config.topics.deadLetter, ...(heavyLane ? [config.topics.heavy] : [])];
    this.limits = this.deps.produceLimits ?? (await readProduceLimits(this.kafka, limitTopics, this.log));

    this.lanes.push(this.newLane('normal', config.topics.input, config.groupId, heavyLane ? config.heavy.minCost : Infinity, config.batch.maxRecords));
    // The heavy lane annotates one document per micro-batch, in its own group (its offsets are its own).
    if (heavyLane) this.lanes.push(this.newLane('heavy', config.topics.heavy, `${config.groupId}.heavy`, Infinity, 1));
    for (const lane of this.lanes) await this.connectLane(lane);

    this.updates = await startModelUpdateListener(this.kafka, config, this.models, this.log);
    if (this.deps.modelCatalog) {
      this.watcher = new ModelDirectoryWatcher(this.deps.modelCatalog, this.models, config.model.pollIntervalMs, this.log);
      this.watcher.start(initial.sha256 ?? null);
    }

    for (const lane of this.lanes) {
      await lane.consumer!.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: 1,
        eachBatch: (payload) => this.eachBatch(lane, payload),
      });
    }
    this.log.info('stage started', { input: config.topics.input, output: config.topics.output, groupId: config.groupId, heavyTopic: heavyLane ? config.topics.heavy : null });
  }

  private newLane(name: Lane, inputTopic: string, groupId: string, forwardFromCost: number, maxRecords: number): LaneState {
    return {
      name,
      inputTopic,
      groupId,
      publisher: new TransactionalPublisher(this.kafka, this.config, this.log, this.limits, groupId),
      consumer: null,
      joined: false,
      takenOver: new Set(),
      rejoined: Promise.resolve(),
      forwardFromCost,
      maxRecords,
      workingSince: null,
      workingPartition: -1,
    };
  }

  private async connectLane(lane: LaneState): Promise<void> {
    const { config } = this;
    const normal = lane.name === 'normal';
    const consumer = this.kafka.consumer({
      groupId: lane.groupId,
      sessionTimeout: config.kafka.sessionTimeoutMs,
      rebalanceTimeout: config.kafka.rebalanceTimeoutMs,
      heartbeatInterval: this.heartbeatIntervalMs,
      // The heavy lane takes what is there: its records are few and large.
      minBytes: normal ? config.batch.maxBytes : 1,
      maxBytes: Math.max(10 * 1024 * 1024, config.batch.maxBytes),
      maxBytesPerPartition: Math.max(1024 * 1024, config.batch.maxBytes),
      maxWaitTimeInMs: Math.max(1, config.batch.maxWaitMs),
      readUncommitted: false,
      retry: {
        retries: config.kafka.retries,
        initialRetryTime: config.kafka.initialRetryMs,
        maxRetryTime: config.kafka.maxRetryMs,
        restartOnFailure: async (error) => {
          this.log.error('consumer failed; restarting it', { lane: lane.name, errorClass: error.name, error: safeErrorMessage(error) });
          return this.stopping === null;
        },
      },
    });
    lane.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      lane.joined = true;
      // A new generation: any partition may have had another owner meanwhile. Each is taken over again
      // before its next micro-batch (fence the previous owner's producer, skip what it committed).
      lane.takenOver.clear();
      lane.rejoined = lane.rejoined.then(() => lane.publisher.releaseAll()).catch(() => undefined);
      this.updateReady();
      const assigned = e.payload.memberAssignment[lane.inputTopic] ?? [];
      this.log.info('joined consumer group', { groupId: lane.groupId, lane: lane.name, partitions: assigned });
    });
    consumer.on(consumer.events.CRASH, (e) => {
      lane.joined = false;
      this.updateReady();
      if (!e.payload.restart && this.stopping === null) {
        this.log.error('consumer stopped for good', { lane: lane.name, error: safeErrorMessage(e.payload.error) });
        this.rejectFinished(e.payload.error);
      }
    });
    consumer.on(consumer.events.STOP, () => {
      lane.joined = false;
      this.updateReady();
    });
    await consumer.connect();
    await consumer.subscribe({ topic: lane.inputTopic, fromBeginning: true });
  }

  /** The input record decoded (once: cutting micro-batches by characters needs the text's length). */
  private decode(m: KafkaMessage): Decoded {
    let d = this.decoded.get(m);
    if (!d) {
      try {
        if (!m.value || m.value.length === 0) throw new RmBertError('record has no value');
        const doc = toDocument(codecs().emrDocument.decode(m.value));
        d = { ok: true, doc, cost: documentCost(doc.text) };
      } catch (error) {
        d = { ok: false, error };
      }
      this.decoded.set(m, d);
    }
    return d;
  }

  /** A record's cost in a micro-batch (src/pipeline/cost.ts; 0 for one that does not decode, or goes to the heavy lane). */
  private cost(lane: LaneState, m: KafkaMessage): number {
    const d = this.decode(m);
    if (!d.ok) return 0;
    return this.forwards(lane, d) ? 0 : d.cost;
  }

  /** Whether the lane forwards this document to the heavy lane (one over the length limit is dead-lettered instead). */
  private forwards(lane: LaneState, d: { doc: Document; cost: number }): boolean {
    return d.cost >= lane.forwardFromCost && d.doc.text.length <= this.config.maxTextChars;
  }

  /**
   * Micro-batches of one fetched batch, pipelined: while micro-batch k's transaction commits (broker
   * round trips, little CPU), micro-batch k+1 is already being processed. Commits stay in order and one
   * at a time (one transaction per producer), and an offset is resolved only after its commit.
   */
  private async eachBatch(lane: LaneState, payload: EachBatchPayload): Promise<void> {
    // A stop past its deadline must not wait for a micro-batch that may never end: eachBatch returns
    // at once, so that kafkajs can still leave the group (the member's partitions move without waiting
    // for its session to expire); what was in flight is not committed and is processed again.
    if (this.hardStop.signal.aborted) return;
    const work = this.processBatch(lane, payload);
    work.catch(() => undefined);
    let onAbort = (): void => undefined;
    const aborted = new Promise<void>((resolve) => {
      onAbort = resolve;
      this.hardStop.signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      await Promise.race([work, aborted]);
    } finally {
      this.hardStop.signal.removeEventListener('abort', onAbort);
    }
  }

  private async processBatch(lane: LaneState, { batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const { topic, partition } = batch;
    if (lane.name === 'normal') this.metrics.consumerLag(topic, partition, Number(batch.offsetLagLow()));
    let committing: Promise<void> | null = null;
    // A long micro-batch must not cost the group membership: heartbeat while it is processed too
    // (kafkajs sends one only when the interval has passed). A rebalance seen by one of these
    // heartbeats ends the batch after the micro-batch in progress, so that this member rejoins at once.
    let rebalance: unknown = null;
    const keepAlive = setInterval(
      () =>
        void heartbeat().catch((error: unknown) => {
          if (REJOIN.has(kafkaErrorType(error) ?? '')) rebalance ??= error;
        }),
      this.heartbeatIntervalMs,
    );
    // partitionsConsumedConcurrently is 1: one batch at a time per lane, so one clock for stalls.
    lane.workingSince = performance.now();
    lane.workingPartition = partition;
    // Heavy work waits while normal work is in progress (src/pipeline/turns.ts).
    const normalDone = lane.name === 'normal' && this.lanes.length > 1 ? this.turns.normalBusy() : () => undefined;
    try {
      const messages = await this.skipCommitted(lane, topic, partition, batch.messages, resolveOffset);
      const chunks = cutMicroBatches(messages, lane.maxRecords, this.config.batch.maxBytes, this.config.batch.maxCost, (m) => this.cost(lane, m));
      for (const chunk of chunks) {
        if (!isRunning() || isStale() || rebalance !== null) break;
        const prepared = await this.prepare(lane, topic, partition, chunk);
        if (committing) await committing;
        const last = chunk.messages[chunk.messages.length - 1].offset;
        committing = this.commit(lane, prepared).then(() => {
          lane.workingSince = performance.now();
          resolveOffset(last);
          if (lane.name === 'normal') this.metrics.consumerLag(topic, partition, Number(BigInt(batch.highWatermark) - BigInt(last) - 1n));
        });
        await heartbeat();
      }
    } finally {
      clearInterval(keepAlive);
      // The last commit finishes before the batch is handed back (also when stopping).
      try {
        if (committing) await committing;
      } finally {
        lane.workingSince = null;
        normalDone();
      }
    }
    // kafkajs rejoins the group when eachBatch throws a rebalance error, as when heartbeat() throws it.
    if (rebalance !== null && isRunning()) throw rebalance;
  }

  /**
   * The first batch of a partition after a group join: takes the partition over (src/stream/publisher.ts
   * takeOver) and drops the records the previous owner committed after this member fetched them.
   */
  private async skipCommitted(lane: LaneState, topic: string, partition: number, messages: KafkaMessage[], resolveOffset: (offset: string) => void): Promise<KafkaMessage[]> {
    if (lane.takenOver.has(partition) || messages.length === 0) return messages;
    await lane.rejoined;
    const committed = await withRetry(() => lane.publisher.takeOver(topic, partition), this.retryOptions('partition takeover'));
    lane.takenOver.add(partition);
    if (committed === null || BigInt(messages[0].offset) >= committed) return messages;
    const kept = messages.filter((m) => BigInt(m.offset) >= committed);
    const skipped = messages.length - kept.length;
    resolveOffset((committed - 1n).toString());
    this.log.info('skipped records the previous owner of the partition had committed', { lane: lane.name, partition, skipped, committedOffset: committed.toString() });
    return kept;
  }

  private retryOptions(what: string) {
    return {
      retries: 1_000_000,
      initialDelayMs: this.config.kafka.initialRetryMs,
      maxDelayMs: this.config.kafka.maxRetryMs,
      signal: this.hardStop.signal,
      onRetry: (error: unknown, attempt: number, delayMs: number) => {
        this.log.warn(`${what} failed; retrying`, { attempt, delayMs, errorClass: error instanceof Error ? error.name : 'Error', error: safeErrorMessage(error) });
      },
    };
  }

  /** Where a record came from: its own coordinates, or for one forwarded to the heavy lane, those it had in the input topic. */
  private sourceOf(topic: string, partition: number, m: KafkaMessage): { topic: string; partition: number; offset: string; timestamp: number } {
    const raw = m.headers?.[SOURCE_HEADER];
    if (raw) {
      try {
        const s = JSON.parse(raw.toString()) as { topic: string; partition: number; offset: string; timestamp: number };
        if (typeof s.topic === 'string' && Number.isInteger(s.partition) && typeof s.offset === 'string') return s;
      } catch {
        // Not ours: the record's own coordinates.
      }
    }
    return { topic, partition, offset: m.offset, timestamp: Number(m.timestamp) };
  }

  /** Decodes, runs the pipeline and encodes the records of one micro-batch (the CPU part). */
  private async prepare(lane: LaneState, topic: string, partition: number, chunk: Chunk): Promise<PreparedBatch> {
    const started = performance.now();
    const codec = codecs();
    const units: Unit[] = chunk.messages.map((source) => ({ source, messages: [], outputs: 0, dead: null, refused: 0, forwarded: false }));
    const docs: Document[] = [];
    const docUnits: Unit[] = [];
    const t0 = performance.now();
    for (const unit of units) {
      const m = unit.source;
      const src = this.sourceOf(topic, partition, m);
      const decoded = this.decode(m);
      this.decoded.delete(m);
      if (decoded.ok) {
        if (this.forwards(lane, decoded)) {
          const headers: IHeaders = { ...m.headers, [SOURCE_HEADER]: JSON.stringify({ topic, partition, offset: m.offset, timestamp: Number(m.timestamp) }) };
          unit.messages = [{ topic: this.config.topics.heavy, message: { key: m.key, value: m.value, headers } }];
          unit.forwarded = true;
          continue;
        }
        docs.push(decoded.doc);
        docUnits.push(unit);
        continue;
      }
      const { error } = decoded;
      // Invalid UTF-8 is found while decoding (the decoder would otherwise turn it into U+FFFD): in
      // the text it is an InvalidTextError as before; in any other field (the id, which keys the
      // output) the document is invalid.
      const cls =
        error instanceof InvalidUtf8Error
          ? error.field === 'text'
            ? 'InvalidTextError'
            : 'InvalidDocumentError'
          : error instanceof RmBertError && error.name !== 'RmBertError'
            ? error.name
            : 'SchemaError';
      this.setDead(unit, deadLetter({ topic: src.topic, partition: src.partition, offset: src.offset, key: m.key, value: m.value }, cls, safeErrorMessage(error), 'decode', this.now()));
      this.log.warn('record dead-lettered', { partition, offset: m.offset, errorClass: cls, stage: 'decode' });
    }
    const decodeMs = performance.now() - t0;
    this.metrics.stageSeconds('decode', decodeMs / 1000);

    // Retriable failures (a model failing on every document) retry the micro-batch; a staged model may be installed in between.
    const result: BatchResult = await withRetry(async () => {
      await this.models.installStaged();
      const model = this.lanes.length > 1 ? onTurns(this.models.current, this.turns, lane.name) : this.models.current;
      // The heavy lane's one document, in pieces, so that the normal lane runs in between (src/pipeline/pieces.ts).
      if (lane.name === 'heavy' && docs.length === 1) return processInPieces(this.processor, docs[0], model, { beforePiece: () => this.turns.normalIdle() });
      return this.processor.process(docs, model);
    }, this.retryOptions('micro-batch'));

    const annotatedAt = this.now();
    const outputLimit = this.limits.maxMessageBytes(this.config.topics.output);
    result.outcomes.forEach((outcome, i) => {
      const unit = docUnits[i];
      const m = unit.source;
      const src = this.sourceOf(topic, partition, m);
      const doc = docs[i];
      if (outcome.ok) {
        try {
          const record = toAnnotationsRecord({ ...outcome.annotation, timingsMs: { decode: Math.round(decodeMs * 1000) / 1000, ...outcome.annotation.timingsMs } }, annotatedAt);
          const fitted = fitAnnotations(record, (r) => codec.entityAnnotations.encode(r), outputLimit);
          unit.messages = fitted.values.map((value) => ({ topic: this.config.topics.output, message: { key: doc.id, value } }));
          unit.outputs = 1;
          if (fitted.values.length > 1 || fitted.linkedDropped) {
            this.log.info('output fitted to the message size limit', { partition, offset: m.offset, documentId: doc.id, parts: fitted.values.length, linkedDropped: fitted.linkedDropped });
          }
          return;
        } catch (error) {
          outcome =
            error instanceof OutputTooLargeError
              ? { ok: false, stage: 'assemble', error }
              : { ok: false, stage: 'assemble', error: new DocumentProcessingError(`output record does not fit the schema: ${safeErrorMessage(error)}`, { cause: error }) };
        }
      }
      if (!outcome.ok) {
        const cls = deadLetterClass(outcome.error);
        this.setDead(unit, deadLetter({ topic: src.topic, partition: src.partition, offset: src.offset, key: m.key, value: m.value }, cls, safeErrorMessage(outcome.error, [doc.text, doc.patientRef]), outcome.stage, this.now()));
        this.log.warn('record dead-lettered', { partition, offset: m.offset, documentId: doc.id, errorClass: cls, stage: outcome.stage });
      }
    });
    return { topic, partition, chunk, units, started, decodeMs, result };
  }

  /** Makes the unit's output its dead letter, cut to fit the dead-letter topic's limit (src/stream/fit.ts). */
  private setDead(unit: Unit, record: DeadLetterRecord): void {
    const encode = (r: DeadLetterRecord) => codecs().deadLetter.encode(r);
    let fitted;
    try {
      fitted = fitDeadLetter(record, unit.source.key, encode, this.limits.maxMessageBytes(this.config.topics.deadLetter));
    } catch {
      // A limit too small even for the dead letter's own fields: keep only those.
      fitted = truncatedDeadLetter(record, unit.source.key, encode, 0, 0);
    }
    if (fitted.truncated) this.log.warn('dead letter keeps a prefix of the original', { offset: unit.source.offset, originalBytes: record.originalLength });
    unit.dead = record;
    unit.outputs = 0;
    unit.forwarded = false;
    unit.messages = [{ topic: this.config.topics.deadLetter, message: { key: fitted.key, value: fitted.value } }];
  }

  /** Publishes a prepared micro-batch with its offsets, retrying until it is in (or the stage is stopped hard). */
  private async commit(lane: LaneState, p: PreparedBatch): Promise<void> {
    const { partition, chunk, started, decodeMs, result } = p;
    const tp = performance.now();
    await this.publishUnits(lane, p.topic, partition, p.units);
    const publishMs = performance.now() - tp;
    this.metrics.stageSeconds('publish', publishMs / 1000);

    const committedAt = this.now();
    for (const u of p.units) {
      if (u.forwarded) continue;
      // A record of the heavy lane: the time it was produced to the input topic.
      const ts = this.sourceOf(p.topic, partition, u.source).timestamp;
      if (Number.isFinite(ts) && ts > 0) this.metrics.endToEndSeconds(Math.max(0, committedAt - ts) / 1000);
    }
    const outputs = p.units.reduce((n, u) => n + u.outputs, 0);
    const forwarded = p.units.filter((u) => u.forwarded).length;
    const dead = p.units.flatMap((u) => (u.dead ? [u.dead.errorClass] : []));
    // A record of the heavy lane was counted in when it was forwarded.
    const recordsIn = lane.name === 'normal' ? chunk.messages.length : 0;
    this.stats.recordsIn += recordsIn;
    this.stats.forwardedHeavy += forwarded;
    this.stats.recordsOut += outputs;
    this.stats.deadLettered += dead.length;
    this.stats.microBatches++;
    this.metrics.recordsIn(recordsIn);
    this.metrics.recordsOut(outputs);
    for (const errorClass of dead) this.metrics.deadLettered(errorClass);
    this.metrics.microBatch(chunk.messages.length, chunk.bytes, (performance.now() - started) / 1000);
    this.log.debug('micro-batch committed', {
      lane: lane.name,
      partition,
      records: chunk.messages.length,
      published: outputs,
      forwardedHeavy: forwarded,
      deadLettered: dead.length,
      modelVersion: result.modelVersion,
      ms: Math.round(performance.now() - started),
      decodeMs: Math.round(decodeMs * 10) / 10,
      publishMs: Math.round(publishMs * 10) / 10,
      stageMs: result.timingsMs,
    });
  }

  /**
   * Commits the units' records and the offset after the last one in one transaction, retrying
   * retriable failures. When the broker refuses records for good (RecordsRejectedError, e.g.
   * MESSAGE_TOO_LARGE because a limit was not known), retrying the same transaction would fail
   * forever, so the units are bisected: each half commits on its own (in offset order), until the one
   * input record at fault is found; its output is replaced by a dead letter keeping a small prefix of
   * the original, then by one keeping none. Only a refusal of that last one stops the stage.
   */
  private async publishUnits(lane: LaneState, topic: string, partition: number, units: Unit[]): Promise<void> {
    const nextOffset = BigInt(units[units.length - 1].source.offset) + 1n;
    const messages = new Map<string, Message[]>([
      [this.config.topics.output, []],
      [this.config.topics.deadLetter, []],
    ]);
    for (const u of units) {
      for (const { topic: t, message } of u.messages) {
        if (!messages.has(t)) messages.set(t, []);
        messages.get(t)!.push(message);
      }
    }
    try {
      await withRetry(async (attempt) => {
        try {
          const outcome = await lane.publisher.commit({ messages, nextOffset, inputTopic: topic, partition }, { skipIfCommitted: attempt > 0 });
          if (outcome === 'already-committed') {
            this.log.info('the previous attempt had committed; not publishing again', { partition, nextOffset: nextOffset.toString() });
          }
          this.abortStreak = 0;
        } catch (error) {
          this.stats.transactionsAborted++;
          this.metrics.transactionAborted();
          this.abortStreak++;
          this.lastAbort = kafkaErrorType(error) ?? ((error as { cause?: { name?: string } }).cause?.name ?? (error instanceof Error ? error.name : 'Error'));
          this.updateReady();
          throw error;
        }
      }, this.retryOptions('output transaction'));
    } catch (error) {
      if (!(error instanceof RecordsRejectedError)) throw error;
      if (units.length > 1) {
        const mid = Math.ceil(units.length / 2);
        this.log.warn('the broker refused records of a micro-batch; bisecting it to isolate them', { partition, records: units.length, kafkaError: error.kafkaError });
        await this.publishUnits(lane, topic, partition, units.slice(0, mid));
        await this.publishUnits(lane, topic, partition, units.slice(mid));
        return;
      }
      const [unit] = units;
      if (unit.refused >= 2) throw error;
      unit.refused++;
      const m = unit.source;
      const src = this.sourceOf(topic, partition, m);
      const record =
        unit.dead ??
        deadLetter(
          { topic: src.topic, partition: src.partition, offset: src.offset, key: m.key, value: m.value },
          'OutputTooLargeError',
          `the broker refused the output records (${error.kafkaError})`,
          'publish',
          this.now(),
        );
      const prefix = unit.refused === 1 ? DEAD_LETTER_PREFIX_BYTES / 16 : 0;
      const fitted = truncatedDeadLetter(record, m.key, (r) => codecs().deadLetter.encode(r), prefix, prefix);
      unit.dead = record;
      unit.outputs = 0;
      unit.forwarded = false;
      unit.messages = [{ topic: this.config.topics.deadLetter, message: { key: fitted.key, value: fitted.value } }];
      this.log.warn('record dead-lettered: the broker refused its output', { partition, offset: m.offset, errorClass: record.errorClass, kafkaError: error.kafkaError, prefixBytes: prefix });
      await this.publishUnits(lane, topic, partition, [unit]);
    }
  }
  stop(deadlineMs = this.config.shutdownDeadlineMs): Promise<{ clean: boolean }> {
    // doStop starts a microtask later, so that `stopping` is set when it runs and readiness (and
    // rmbert_ready) already says "stopping" inside it.
    this.stopping ??= Promise.resolve().then(() => this.doStop(deadlineMs));
    return this.stopping;
  }

  private async doStop(deadlineMs: number): Promise<{ clean: boolean }> {
    this.updateReady();
    this.log.info('stopping: finishing the in-flight micro-batch', { deadlineMs });
    const graceful = (async () => {
      this.watcher?.stop();
      // consumer.stop() turns isRunning() false at once, lets the running eachBatch finish its current
      // micro-batch and commit it, and leaves the group; the model-updates listener closes meanwhile.
      await Promise.all([...this.lanes.map((l) => l.consumer?.stop()), this.updates?.stop()]);
      await Promise.all(this.lanes.map((l) => l.consumer?.disconnect()));
      await Promise.all(this.lanes.map((l) => l.publisher.close()));
      await this.knowledge?.close();
      await this.models.close();
    })();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), deadlineMs);
    });
    const outcome = await Promise.race([graceful.then(() => 'done' as const), deadline]).catch((error: unknown) => {
      this.log.error('error while stopping', { error: safeErrorMessage(error) });
      return 'error' as const;
    });
    clearTimeout(timer);
    if (outcome !== 'done') {
      this.hardStop.abort();
      this.log.error('stop did not finish in time; uncommitted input will be processed again by the next stage', { deadlineMs });
      for (const lane of this.lanes) {
        void lane.consumer?.disconnect().catch(() => undefined);
        void lane.publisher.close().catch(() => undefined);
      }
    } else {
      this.log.info('stopped', this.counters() as unknown as Record<string, unknown>);
    }
    this.resolveFinished();
    return { clean: outcome === 'done' };
  }
}

/** Starts the stage in this process; resolves once the consumer is running. */
export async function startStage(config: StageConfig, deps: StageDeps): Promise<StageHandle> {
  const stage = new Stage(config, deps);
  try {
    await stage.start();
  } catch (error) {
    await stage.stop(5000).catch(() => undefined);
    throw error;
  }
  return stage;
}
