/**
 * The trainer sidecar's loop, behind small ports (the Kafka adapters live in src/stream/trainer-io.ts
 * and are wired in src/cli/commands/train.ts):
 *
 *   read feedback -> validate (unusable records are kept for the dead-letter topic) -> buffer,
 *   one entry per document (latest correction wins), a hashed slice held out
 *   -> when enough documents wait (or the oldest has waited long enough): one RecAdam round from
 *      the model in service -> champion and challenger scored on the gold set and the holdout
 *   -> gate: promote (write a versioned artifact) or refuse (discard it)
 *   -> commit in one step: dead letters, the ModelUpdate (if promoted) and the read positions.
 *
 * Nothing is committed before its round is over, so a crash, a failed round or a stop in the middle
 * loses nothing: the records are read again. Logs carry ids, counts and figures, never document text.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ModelError, isRetriable, withRetry } from '../errors/index.ts';
import type { ContinualOptions, ContinualTrainer, RoundResult } from './continual.ts';
import { FeedbackBuffer, feedbackProblems, feedbackToSentences } from './feedback.ts';
import type { BufferedFeedback, FeedbackDocument, RecordPosition, Rejection, RoundBatch, Segmenter } from './feedback.ts';
import { decidePromotion, nextVersionName } from './promotion.ts';
import type { GateDecision } from './promotion.ts';

/** Structured logging (the stage's Logger has this shape). Never pass document text. */
export interface TrainerLogger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface IncomingFeedback<Raw> {
  position: RecordPosition;
  /** The record as read (key and value), for the dead-letter topic. */
  raw: Raw;
  /** The decoded record, or null when it could not be decoded. */
  document: FeedbackDocument | null;
  /** Why it could not be decoded (text-free). */
  decodeError?: string;
}

export interface FeedbackSource<Raw> {
  /** Starts reading; `deliver` gets every fetched batch of records, in order per partition. */
  start(deliver: (records: IncomingFeedback<Raw>[]) => void): Promise<void>;
  pause(): void;
  resume(): void;
  /** True once everything that was on the topic when called has been delivered; false after `timeoutMs`. */
  caughtUp(timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  stop(): Promise<void>;
}

export interface ModelUpdateNotice {
  version: string;
  artifactLocation: string;
  sha256: string;
  metrics: Record<string, number>;
  createdAt: number;
}

export interface RoundCommit<Raw> {
  rejections: readonly Rejection<Raw>[];
  update: ModelUpdateNotice | null;
  /** Per partition, the next offset to read. */
  positions: ReadonlyMap<number, bigint>;
}

export interface RoundCommitter<Raw> {
  /**
   * Publishes the dead letters and the model update and commits the positions, all or nothing.
   * `retry`: an earlier attempt may have gone through; do not publish twice.
   */
  commit(c: RoundCommit<Raw>, options: { retry: boolean }): Promise<void>;
}

/** The model in service: the newest artifact of the model directory. */
export interface ChampionLocator {
  latest(): Promise<{ location: string } | null>;
}

export interface SidecarSettings {
  minExamples: number;
  maxWaitMinutes: number;
  maxBuffer: number;
  holdoutPercent: number;
  holdoutMax: number;
  gateMargin: number;
  maxTextChars: number;
  round: ContinualOptions;
  /** Directory the promoted versions are written into (the model directory). */
  modelDir: string;
  /** Retries of a failed commit (transport errors), with backoff. */
  commitRetries?: number;
  commitBackoffMs?: { initial: number; max: number };
  /** How long to wait after a failed round before the next (continuous mode). */
  failureBackoffMs?: number;
}

export interface SidecarDeps<Raw> {
  source: FeedbackSource<Raw>;
  committer: RoundCommitter<Raw>;
  champion: ChampionLocator;
  trainer: Pick<ContinualTrainer, 'runRound' | 'writeChallenger'>;
  /** Entity types the model at `dir` knows. */
  championTypes(dir: string): Promise<string[]>;
  /** sha256 of an artifact's manifest, as the stage checks it. */
  manifestSha256(dir: string): Promise<string>;
  segment: Segmenter;
  logger: TrainerLogger;
  settings: SidecarSettings;
  now?: () => number;
  progress?: boolean;
}

export interface RoundFigures {
  gold: { champion: number; challenger: number; sentences: number };
  holdout: { champion: number; challenger: number; sentences: number };
  margin: number;
}

export type RoundReport =
  | { outcome: 'promoted'; version: string; location: string; sha256: string; figures: RoundFigures; reasons: string[] }
  | { outcome: 'refused'; figures: RoundFigures; reasons: string[] }
  | { outcome: 'skipped'; reason: string }
  | { outcome: 'interrupted' }
  | { outcome: 'failed'; error: string };

export interface SidecarCounters {
  read: number;
  rejected: number;
  superseded: number;
  rounds: number;
  promoted: number;
  refused: number;
  failed: number;
}

function errorText(error: unknown): string {
  const m = error instanceof Error ? error.message : String(error);
  return m.length > 300 ? `${m.slice(0, 300)}...` : m;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** The figures a ModelUpdate carries (F1 as fractions; counts as numbers). */
export function updateMetrics(result: RoundResult): Record<string, number> {
  return {
    f1: result.gold.challenger.f1,
    goldF1: result.gold.challenger.f1,
    goldPrecision: result.gold.challenger.precision,
    goldRecall: result.gold.challenger.recall,
    goldF1Champion: result.gold.champion.f1,
    goldSentences: result.gold.sentences,
    holdoutF1: result.holdout.challenger.f1,
    holdoutF1Champion: result.holdout.champion.f1,
    holdoutSentences: result.holdout.sentences,
    trainSentences: result.trainSentences,
    steps: result.steps,
  };
}

export class TrainerSidecar<Raw> {
  private readonly buffer: FeedbackBuffer<Raw>;
  /** Held-out documents of committed rounds, by id, oldest first. */
  private readonly holdoutPool = new Map<string, BufferedFeedback>();
  private types: ReadonlySet<string> = new Set();
  private paused = false;
  /** When the first record not yet committed was read (drives the timer for rounds without training data). */
  private firstPendingAt: number | null = null;
  private readonly now: () => number;
  private readonly log: TrainerLogger;
  readonly counters: SidecarCounters = { read: 0, rejected: 0, superseded: 0, rounds: 0, promoted: 0, refused: 0, failed: 0 };

  constructor(private readonly deps: SidecarDeps<Raw>) {
    this.buffer = new FeedbackBuffer<Raw>(deps.settings.holdoutPercent);
    this.now = deps.now ?? Date.now;
    this.log = deps.logger;
  }

  /** Reads the model in service's entity types; throws a ModelError when the model directory has none. */
  private async refreshTypes(): Promise<string> {
    const champion = await this.deps.champion.latest();
    if (!champion) {
      throw new ModelError(`no model artifact in ${this.deps.settings.modelDir}: the trainer continues the model in service (put one there, e.g. with rmbert finetune --out ${path.join(this.deps.settings.modelDir, '<name>')})`);
    }
    this.types = new Set(await this.deps.championTypes(champion.location));
    return champion.location;
  }

  /** Validates and buffers fetched records (called by the source). */
  deliver(records: IncomingFeedback<Raw>[]): void {
    const at = this.now();
    for (const r of records) {
      this.counters.read++;
      this.firstPendingAt ??= at;
      const base = { partition: r.position.partition, offset: r.position.offset };
      if (!r.document) {
        const message = r.decodeError ?? 'undecodable record';
        this.buffer.reject({ position: r.position, errorClass: 'SchemaError', message, stage: 'decode', raw: r.raw });
        this.counters.rejected++;
        this.log.warn('feedback rejected', { ...base, errorClass: 'SchemaError', stage: 'decode', problems: [message] });
        continue;
      }
      const problems = feedbackProblems(r.document, { types: this.types, maxTextChars: this.deps.settings.maxTextChars });
      if (problems.length > 0) {
        const message = problems.slice(0, 10).join('; ');
        this.buffer.reject({ position: r.position, errorClass: 'InvalidFeedbackError', message, stage: 'validate', raw: r.raw });
        this.counters.rejected++;
        this.log.warn('feedback rejected', { ...base, documentId: r.document.documentId, errorClass: 'InvalidFeedbackError', stage: 'validate', problems: problems.slice(0, 10) });
        continue;
      }
      const what = this.buffer.add(r.document, r.position, at);
      if (what === 'replaced' || what === 'stale') this.counters.superseded++;
      this.log.debug('feedback buffered', { ...base, documentId: r.document.documentId, entities: r.document.entities.length, outcome: what });
    }
    if (!this.paused && this.buffer.size >= this.deps.settings.maxBuffer) {
      this.paused = true;
      this.deps.source.pause();
      this.log.info('feedback buffer full: reading paused until the next round', { buffered: this.buffer.size, maxBuffer: this.deps.settings.maxBuffer });
    }
  }

  private resumeReading(): void {
    if (this.paused) {
      this.paused = false;
      this.deps.source.resume();
    }
  }

  /** Why a round should start now, or null. */
  private trigger(): string | null {
    const s = this.deps.settings;
    const training = this.buffer.trainingCount;
    if (training >= s.minExamples) return 'min-examples';
    if (this.paused) return 'buffer-full';
    const waitMs = s.maxWaitMinutes * 60_000;
    if (waitMs > 0) {
      const oldest = this.buffer.oldestTrainingAt();
      if (oldest !== null && this.now() - oldest >= waitMs) return 'max-wait';
      if (training === 0 && this.firstPendingAt !== null && this.buffer.hasPositions && this.now() - this.firstPendingAt >= waitMs) return 'max-wait';
    }
    return null;
  }

  get buffered(): { training: number; heldOut: number; rejected: number } {
    return { training: this.buffer.trainingCount, heldOut: this.buffer.heldOutCount, rejected: this.buffer.rejectedCount };
  }

  /** Reads the model in service's entity types (to validate feedback against), then starts reading feedback. */
  async start(): Promise<void> {
    await this.refreshTypes();
    await this.deps.source.start((records) => this.deliver(records));
  }

  /**
   * --once: reads the topic up to its end (or for `readTimeoutMs`), runs one round if at least
   * minExamples documents are there, commits, stops reading.
   */
  async runOnce(readTimeoutMs: number, signal?: AbortSignal): Promise<RoundReport> {
    await this.start();
    try {
      const complete = await this.deps.source.caughtUp(readTimeoutMs, signal);
      this.deps.source.pause();
      if (signal?.aborted) return { outcome: 'interrupted' };
      if (!complete) this.log.warn('the feedback topic was not read to its end in time; using what was read', { readTimeoutMs, read: this.counters.read });
      const { training, heldOut, rejected } = this.buffered;
      this.log.info('feedback read', { read: this.counters.read, training, heldOut, rejected, superseded: this.counters.superseded });
      if (training < this.deps.settings.minExamples) {
        const reason = `${training} feedback documents to train on, fewer than --min-examples ${this.deps.settings.minExamples}; nothing committed`;
        this.log.info('no round', { reason });
        return { outcome: 'skipped', reason };
      }
      return await this.round('once', signal);
    } finally {
      await this.deps.source.stop();
    }
  }

  /** Continuous mode: rounds whenever the buffer calls for one, until `signal` aborts. */
  async run(signal: AbortSignal, pollMs = 500): Promise<void> {
    await this.start();
    this.log.info('trainer started', { minExamples: this.deps.settings.minExamples, maxWaitMinutes: this.deps.settings.maxWaitMinutes });
    try {
      while (!signal.aborted) {
        const why = this.trigger();
        if (!why) {
          await sleep(pollMs, signal);
          continue;
        }
        const report = await this.round(why, signal);
        if (report.outcome === 'failed') await sleep(this.deps.settings.failureBackoffMs ?? 60_000, signal);
      }
    } finally {
      await this.deps.source.stop();
      this.log.info('trainer stopped', { ...this.counters });
    }
  }

  /** Takes the buffer, trains (when there is something to train on), gates, commits. */
  async round(trigger: string, signal?: AbortSignal): Promise<RoundReport> {
    const batch = this.buffer.take();
    this.firstPendingAt = null;
    this.resumeReading();
    try {
      const report = await this.roundOn(batch, trigger, signal);
      if (report.outcome === 'interrupted') this.restore(batch);
      return report;
    } catch (error) {
      this.restore(batch);
      this.counters.failed++;
      this.log.error('round failed; its feedback is kept for the next round', { errorClass: error instanceof Error ? error.name : 'Error', error: errorText(error) });
      return { outcome: 'failed', error: errorText(error) };
    }
  }

  private restore(batch: RoundBatch<Raw>): void {
    this.buffer.restore(batch);
    this.firstPendingAt ??= this.now();
  }

  private async roundOn(batch: RoundBatch<Raw>, trigger: string, signal?: AbortSignal): Promise<RoundReport> {
    const s = this.deps.settings;
    for (const e of batch.heldOut) {
      this.holdoutPool.delete(e.document.documentId);
      this.holdoutPool.set(e.document.documentId, e);
    }
    while (this.holdoutPool.size > s.holdoutMax) this.holdoutPool.delete(this.holdoutPool.keys().next().value!);
    const counts = {
      trigger,
      trainDocuments: batch.training.length,
      heldOutDocuments: batch.heldOut.length,
      holdoutPool: this.holdoutPool.size,
      rejected: batch.rejections.length,
      superseded: batch.superseded,
    };

    if (batch.training.length === 0) {
      // Nothing to learn from (only rejected or held-out records): commit them so they are not held forever.
      await this.commit({ rejections: batch.rejections, update: null, positions: batch.positions }, signal);
      this.log.info('no training data; rejected and held-out feedback committed', counts);
      return { outcome: 'skipped', reason: 'no training data' };
    }

    const championDir = await this.refreshTypes();
    const train = batch.training.flatMap((e) => feedbackToSentences(e.document, this.deps.segment));
    const holdout = [...this.holdoutPool.values()].flatMap((e) => feedbackToSentences(e.document, this.deps.segment));
    this.counters.rounds++;
    this.log.info('round started', { ...counts, trainSentences: train.length, holdoutSentences: holdout.length, champion: championDir });
    const result = await this.deps.trainer.runRound({ championDir, train, holdout, options: s.round, signal, progress: this.deps.progress });
    if (result.status === 'interrupted') {
      this.log.info('round interrupted; nothing committed', { steps: result.steps });
      return { outcome: 'interrupted' };
    }
    const decision: GateDecision = decidePromotion({ gold: result.gold, holdout: result.holdout }, s.gateMargin);
    const figures: RoundFigures = {
      gold: { champion: result.gold.champion.f1, challenger: result.gold.challenger.f1, sentences: result.gold.sentences },
      holdout: { champion: result.holdout.champion.f1, challenger: result.holdout.challenger.f1, sentences: result.holdout.sentences },
      margin: s.gateMargin,
    };
    const trained = {
      champion: result.champion.version,
      status: result.status,
      steps: result.steps,
      trainSeconds: Math.round(result.trainSeconds * 10) / 10,
      meanLoss: result.meanLoss,
      distanceL1: result.distanceL1,
    };

    if (!decision.promote) {
      this.counters.refused++;
      this.log.info('challenger refused', { ...trained, figures, reasons: decision.reasons });
      await this.commit({ rejections: batch.rejections, update: null, positions: batch.positions }, signal);
      this.log.info('round committed', { ...counts, outcome: 'refused' });
      return { outcome: 'refused', figures, reasons: decision.reasons };
    }

    const name = nextVersionName(result.champion.config.name, (n) => existsSync(path.join(s.modelDir, n)));
    const artifact = await this.deps.trainer.writeChallenger(result, s.modelDir, name, {
      feedbackDocuments: batch.training.length,
      heldOutDocuments: this.holdoutPool.size,
      trainSentences: result.trainSentences,
      steps: result.steps,
      status: result.status,
      optimizer: 'recadam',
      anneal: { kind: s.round.anneal, k: s.round.k, t0: s.round.t0, gamma: s.round.gamma },
      learningRate: s.round.learningRate,
      gate: { ...figures, reasons: decision.reasons },
    });
    const sha256 = await this.deps.manifestSha256(artifact.dir);
    const version = name;
    const update: ModelUpdateNotice = { version, artifactLocation: artifact.dir, sha256, metrics: updateMetrics(result), createdAt: this.now() };
    this.counters.promoted++;
    this.log.info('challenger promoted', { ...trained, figures, reasons: decision.reasons, version, location: artifact.dir, sha256 });
    await this.commit({ rejections: batch.rejections, update, positions: batch.positions }, signal);
    this.log.info('round committed', { ...counts, outcome: 'promoted', version });
    return { outcome: 'promoted', version, location: artifact.dir, sha256, figures, reasons: decision.reasons };
  }

  private async commit(c: RoundCommit<Raw>, signal?: AbortSignal): Promise<void> {
    if (c.positions.size === 0 && c.rejections.length === 0 && !c.update) return;
    await withRetry((attempt) => this.deps.committer.commit(c, { retry: attempt > 0 }), {
      retries: this.deps.settings.commitRetries ?? 8,
      initialDelayMs: this.deps.settings.commitBackoffMs?.initial ?? 500,
      maxDelayMs: this.deps.settings.commitBackoffMs?.max ?? 15_000,
      signal,
      onRetry: (error, attempt, delayMs) => {
        this.log.warn('commit failed; retrying', { attempt, delayMs, retriable: isRetriable(error), error: errorText(error) });
      },
    });
  }
}
