/**
 * The trainer sidecar's loop, behind small ports (the Kafka adapters live in src/stream/trainer-io.ts
 * and are wired in src/cli/commands/train.ts):
 *
 *   read feedback -> validate (unusable records go to the feedback dead-letter topic) -> check the
 *   labels against the graph and the training set (contradictions quarantined) -> store on disk
 *   (latest correction per document wins; a stratified share held out for good) -> commit the
 *   offsets and dead letters
 *   -> when enough new documents are stored (or the oldest new one has waited long enough): one
 *      RecAdam round from the model in service on every stored training document plus a replayed
 *      sample of the original training data -> gate (gold, holdout, per type, per surface, distance)
 *   -> promote (write a versioned artifact, publish a ModelUpdate) or refuse; the store keeps the
 *      feedback either way, so the next round uses it again.
 *
 * Feedback is on disk before its offset is committed, so a crash at any point loses nothing; a
 * record read twice changes nothing. Logs carry ids, counts and figures, never document text.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ModelError, isRetriable, withRetry } from '../errors/index.ts';
import type { ContinualOptions, ContinualTrainer, RoundResult } from './continual.ts';
import type { NerSentence } from './datasets.ts';
import { FeedbackBuffer, feedbackProblems, feedbackToSentences } from './feedback.ts';
import type { FeedbackDocument, RecordPosition, Rejection, Segmenter } from './feedback.ts';
import type { FeedbackStore, LabelCheck, StoreCounts } from './feedback-store.ts';
import { seededRandom } from './finetune.ts';
import { decidePromotion, nextVersionName } from './promotion.ts';
import type { GateDecision, GateSettings } from './promotion.ts';

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
  /** New documents stored since the last round that start a round. */
  minExamples: number;
  maxWaitMinutes: number;
  maxBuffer: number;
  gate: GateSettings;
  /** Replay sentences per feedback sentence, and at most this many per round. */
  replayRatio: number;
  replayMax: number;
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

/** What the trainer reports for /metrics (src/metrics implements it). */
export interface TrainerMetricsPort {
  feedback(outcome: 'stored' | 'replaced' | 'unchanged' | 'stale' | 'rejected' | 'quarantined', n?: number): void;
  store(counts: StoreCounts): void;
  /** A round started (ms since the epoch); optional so that other ports need not implement it. */
  roundStarted?(at: number): void;
  /** A round ended (every outcome), with the checks that refused it. */
  round(outcome: RoundReport['outcome'], seconds: number, failed: readonly string[]): void;
  /** The scores and the move of a round that trained. */
  roundScores(result: RoundResult, trainedDocuments: number): void;
  ready(checks: Record<string, boolean>): void;
}

export interface SidecarDeps<Raw> {
  source: FeedbackSource<Raw>;
  /** The trainer's feedback store (on disk). */
  store: FeedbackStore;
  /** Contradiction check of a correction's labels (absent: none quarantined). */
  labelCheck?: LabelCheck;
  /** Original training sentences a round replays a sample of. */
  replay?: readonly NerSentence[];
  metrics?: TrainerMetricsPort;
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
  trainDocuments: number;
  replaySentences: number;
  quarantined: number;
  relativeDistance: number;
}

export type RoundReport =
  | { outcome: 'promoted'; version: string; location: string; sha256: string; figures: RoundFigures; reasons: string[]; failed: string[] }
  | { outcome: 'refused'; figures: RoundFigures | null; reasons: string[]; failed: string[] }
  | { outcome: 'skipped'; reason: string }
  | { outcome: 'interrupted' }
  | { outcome: 'failed'; error: string };

export interface SidecarCounters {
  read: number;
  rejected: number;
  superseded: number;
  stored: number;
  quarantined: number;
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
    replaySentences: result.replaySentences,
    steps: result.steps,
    relativeDistance: result.championL1 > 0 ? result.distanceL1 / result.championL1 : 0,
  };
}

/** `count` sentences of `pool`, drawn without replacement by a seeded shuffle, in pool order (the same sample for the same seed). */
export function sampleReplay(pool: readonly NerSentence[], count: number, seed: number): NerSentence[] {
  if (count >= pool.length) return pool.slice();
  const order = pool.map((_, i) => i);
  const rand = seededRandom(seed * 7_919 + 17);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order
    .slice(0, count)
    .sort((a, b) => a - b)
    .map((i) => pool[i]);
}

export class TrainerSidecar<Raw> {
  /** Records read and not yet stored and committed. Its own holdout flag is unused: the store decides. */
  private readonly buffer = new FeedbackBuffer<Raw>(0);
  private types: ReadonlySet<string> = new Set();
  private paused = false;
  private started = false;
  private readonly now: () => number;
  private readonly log: TrainerLogger;
  readonly counters: SidecarCounters = { read: 0, rejected: 0, superseded: 0, stored: 0, quarantined: 0, rounds: 0, promoted: 0, refused: 0, failed: 0 };

  constructor(private readonly deps: SidecarDeps<Raw>) {
    this.now = deps.now ?? Date.now;
    this.log = deps.logger;
    deps.metrics?.store(deps.store.counts());
    deps.metrics?.ready({ storeOpen: true, consumerStarted: false, championFound: false });
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

  /** Validates and buffers fetched records (called by the source); persist() stores and commits them. */
  deliver(records: IncomingFeedback<Raw>[]): void {
    const at = this.now();
    for (const r of records) {
      this.counters.read++;
      const base = { partition: r.position.partition, offset: r.position.offset };
      if (!r.document) {
        const message = r.decodeError ?? 'undecodable record';
        this.buffer.reject({ position: r.position, errorClass: 'SchemaError', message, stage: 'decode', raw: r.raw });
        this.counters.rejected++;
        this.deps.metrics?.feedback('rejected');
        this.log.warn('feedback rejected', { ...base, errorClass: 'SchemaError', stage: 'decode', problems: [message] });
        continue;
      }
      const problems = feedbackProblems(r.document, { types: this.types, maxTextChars: this.deps.settings.maxTextChars });
      if (problems.length > 0) {
        const message = problems.slice(0, 10).join('; ');
        this.buffer.reject({ position: r.position, errorClass: 'InvalidFeedbackError', message, stage: 'validate', raw: r.raw });
        this.counters.rejected++;
        this.deps.metrics?.feedback('rejected');
        this.log.warn('feedback rejected', { ...base, documentId: r.document.documentId, errorClass: 'InvalidFeedbackError', stage: 'validate', problems: problems.slice(0, 10) });
        continue;
      }
      const what = this.buffer.add(r.document, r.position, at);
      if (what === 'replaced' || what === 'stale') this.counters.superseded++;
      this.log.debug('feedback read', { ...base, documentId: r.document.documentId, entities: r.document.entities.length, outcome: what });
    }
    if (!this.paused && this.buffer.size >= this.deps.settings.maxBuffer) {
      this.paused = true;
      this.deps.source.pause();
      this.log.info('feedback buffer full: reading paused until it is stored', { buffered: this.buffer.size, maxBuffer: this.deps.settings.maxBuffer });
    }
  }

  /**
   * Stores what was read (fsynced), then commits the offsets and dead letters. A commit that fails
   * keeps the positions and dead letters for the next attempt; the documents are already stored, and
   * reading them again changes nothing.
   */
  async persist(signal?: AbortSignal): Promise<void> {
    if (this.buffer.size === 0 && !this.buffer.hasPositions) return;
    const batch = this.buffer.take();
    const { store } = this.deps;
    const at = this.now();
    try {
      for (const e of [...batch.training, ...batch.heldOut]) {
        const r = store.upsert(e.document, at, this.deps.labelCheck);
        const fields = { partition: e.position.partition, offset: e.position.offset, documentId: e.document.documentId, split: r.document.split };
        if (r.outcome === 'added' || r.outcome === 'replaced') {
          this.counters.stored++;
          this.deps.metrics?.feedback(r.outcome === 'added' ? 'stored' : 'replaced');
          if (r.document.status === 'quarantined') {
            this.counters.quarantined++;
            this.deps.metrics?.feedback('quarantined');
            // The contradictions name surfaces (document text): the store keeps them, the log counts them.
            this.log.warn('feedback quarantined: its labels contradict the knowledge graph or the training set', { ...fields, contradictions: r.document.problems?.length ?? 0 });
          } else this.log.debug('feedback document stored', { ...fields, outcome: r.outcome });
        } else {
          this.deps.metrics?.feedback(r.outcome);
          this.log.debug('feedback not stored', { ...fields, outcome: r.outcome });
        }
      }
      store.save();
    } catch (error) {
      this.buffer.restore(batch);
      throw error;
    }
    this.deps.metrics?.store(store.counts());
    try {
      await this.commit({ rejections: batch.rejections, update: null, positions: batch.positions }, signal);
    } catch (error) {
      this.buffer.restore({ ...batch, training: [], heldOut: [], superseded: 0 });
      throw error;
    }
    if (this.paused) {
      this.paused = false;
      this.deps.source.resume();
    }
  }

  /** Why a round should start now, or null. */
  private trigger(): string | null {
    const s = this.deps.settings;
    const counts = this.deps.store.counts();
    if (counts.newAnySinceRound >= s.minExamples) return 'min-examples';
    const waitMs = s.maxWaitMinutes * 60_000;
    if (waitMs > 0) {
      const oldest = this.deps.store.oldestNewAt();
      if (oldest !== null && this.now() - oldest >= waitMs) return 'max-wait';
    }
    return null;
  }

  get buffered(): { read: number; rejected: number } {
    return { read: this.buffer.size, rejected: this.buffer.rejectedCount };
  }

  /** Reads the model in service's entity types (to validate feedback against), then starts reading feedback. */
  async start(): Promise<void> {
    await this.refreshTypes();
    await this.deps.source.start((records) => this.deliver(records));
    this.started = true;
    this.deps.metrics?.ready({ storeOpen: true, consumerStarted: true, championFound: true });
  }

  /**
   * --once: reads the topic up to its end (or for `readTimeoutMs`), stores and commits what it read,
   * and runs one round if at least minExamples documents were stored since the last round.
   */
  async runOnce(readTimeoutMs: number, signal?: AbortSignal): Promise<RoundReport> {
    await this.start();
    try {
      const complete = await this.deps.source.caughtUp(readTimeoutMs, signal);
      this.deps.source.pause();
      if (signal?.aborted) return { outcome: 'interrupted' };
      if (!complete) this.log.warn('the feedback topic was not read to its end in time; using what was read', { readTimeoutMs, read: this.counters.read });
      await this.persist(signal);
      const counts = this.deps.store.counts();
      this.log.info('feedback stored', { read: this.counters.read, rejected: this.counters.rejected, superseded: this.counters.superseded, ...counts });
      if (counts.newAnySinceRound < this.deps.settings.minExamples) {
        const reason = `${counts.newAnySinceRound} feedback documents stored since the last round, fewer than --min-examples ${this.deps.settings.minExamples}; they stay in the store for the next round`;
        this.log.info('no round', { reason });
        return { outcome: 'skipped', reason };
      }
      return await this.round('once', signal);
    } finally {
      await this.deps.source.stop();
    }
  }

  /** Continuous mode: stores feedback as it comes, rounds whenever the store calls for one, until `signal` aborts. */
  async run(signal: AbortSignal, pollMs = 500): Promise<void> {
    await this.start();
    this.log.info('trainer started', { minExamples: this.deps.settings.minExamples, maxWaitMinutes: this.deps.settings.maxWaitMinutes, ...this.deps.store.counts() });
    try {
      while (!signal.aborted) {
        try {
          await this.persist(signal);
        } catch (error) {
          this.log.error('storing or committing feedback failed; retrying', { errorClass: error instanceof Error ? error.name : 'Error', retriable: isRetriable(error), error: errorText(error) });
          await sleep(this.deps.settings.failureBackoffMs ?? 60_000, signal);
          continue;
        }
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

  get isStarted(): boolean {
    return this.started;
  }

  /** One round on the store's feedback: train, gate, promote or refuse, record it in the store. */
  async round(trigger: string, signal?: AbortSignal): Promise<RoundReport> {
    const started = this.now();
    this.deps.metrics?.roundStarted?.(started);
    try {
      const report = await this.roundOn(trigger, signal);
      this.deps.metrics?.round(report.outcome, (this.now() - started) / 1000, report.outcome === 'promoted' || report.outcome === 'refused' ? report.failed : []);
      return report;
    } catch (error) {
      this.counters.failed++;
      this.deps.metrics?.round('failed', (this.now() - started) / 1000, []);
      this.log.error('round failed; the feedback stays in the store for the next round', { errorClass: error instanceof Error ? error.name : 'Error', error: errorText(error) });
      return { outcome: 'failed', error: errorText(error) };
    }
  }

  private async roundOn(trigger: string, signal?: AbortSignal): Promise<RoundReport> {
    const s = this.deps.settings;
    const { store } = this.deps;
    const seq = store.seq;
    const lastSeq = store.lastRoundSeq;
    const training = store.training();
    const holdoutDocs = store.holdout();
    const newQuarantined = store.all().filter((d) => d.seq > lastSeq && d.status === 'quarantined').length;
    const counts = { trigger, trainDocuments: training.length, holdoutDocuments: holdoutDocs.length, newQuarantined, ...store.counts() };
    const quarantineLine = (n: number) => `label-check: ${n} new documents quarantined (their labels contradict the knowledge graph or the training set; see rmbert train feedback list --quarantined), not trained on`;

    if (training.length === 0) {
      const reasons = newQuarantined > 0 ? [quarantineLine(newQuarantined), 'nothing left to train on'] : ['no training documents in the store'];
      const outcome = newQuarantined > 0 ? 'refused' : 'skipped';
      store.recordRound({ at: this.now(), outcome, seq, reasons }, []);
      this.deps.metrics?.store(store.counts());
      if (outcome === 'refused') {
        this.counters.refused++;
        this.log.info('challenger refused', { ...counts, failed: ['label-check'], reasons });
        return { outcome: 'refused', figures: null, reasons, failed: ['label-check'] };
      }
      this.log.info('no training data', counts);
      return { outcome: 'skipped', reason: 'no training data' };
    }

    const championDir = await this.refreshTypes();
    const train = training.flatMap((e) => feedbackToSentences(e, this.deps.segment));
    const holdout = holdoutDocs.flatMap((e) => feedbackToSentences(e, this.deps.segment));
    const replayPool = this.deps.replay ?? [];
    const replay = sampleReplay(replayPool, Math.min(s.replayMax, Math.round(s.replayRatio * train.length)), s.round.seed);
    this.counters.rounds++;
    this.log.info('round started', { ...counts, trainSentences: train.length, replaySentences: replay.length, holdoutSentences: holdout.length, champion: championDir });
    const result = await this.deps.trainer.runRound({ championDir, train, replay, holdout, options: s.round, signal, progress: this.deps.progress });
    if (result.status === 'interrupted') {
      this.log.info('round interrupted; nothing recorded, the feedback stays in the store', { steps: result.steps });
      return { outcome: 'interrupted' };
    }
    const relativeDistance = result.championL1 > 0 ? result.distanceL1 / result.championL1 : 0;
    const decision: GateDecision = decidePromotion(
      { gold: result.gold, holdout: result.holdout, goldTypes: result.goldTypes, goldSurfaces: result.goldSurfaces, relativeDistance },
      s.gate,
    );
    const reasons = newQuarantined > 0 ? [...decision.reasons, quarantineLine(newQuarantined)] : decision.reasons;
    const figures: RoundFigures = {
      gold: { champion: result.gold.champion.f1, challenger: result.gold.challenger.f1, sentences: result.gold.sentences },
      holdout: { champion: result.holdout.champion.f1, challenger: result.holdout.challenger.f1, sentences: result.holdout.sentences },
      trainDocuments: training.length,
      replaySentences: result.replaySentences,
      quarantined: newQuarantined,
      relativeDistance,
    };
    const trained = {
      champion: result.champion.version,
      status: result.status,
      steps: result.steps,
      schedule: result.schedule,
      trainSeconds: Math.round(result.trainSeconds * 10) / 10,
      meanLoss: result.meanLoss,
      distanceL1: result.distanceL1,
    };
    const trainedIds = training.map((d) => d.documentId);
    this.deps.metrics?.roundScores(result, trainedIds.length);

    if (!decision.promote) {
      this.counters.refused++;
      this.log.info('challenger refused', { ...trained, figures, failed: decision.failed, reasons });
      store.recordRound({ at: this.now(), outcome: 'refused', seq, reasons }, trainedIds);
      this.deps.metrics?.store(store.counts());
      return { outcome: 'refused', figures, reasons, failed: decision.failed };
    }

    const name = nextVersionName(result.champion.config.name, (n) => existsSync(path.join(s.modelDir, n)));
    const artifact = await this.deps.trainer.writeChallenger(result, s.modelDir, name, {
      feedbackDocuments: training.length,
      heldOutDocuments: holdoutDocs.length,
      trainSentences: result.trainSentences,
      replaySentences: result.replaySentences,
      steps: result.steps,
      status: result.status,
      optimizer: 'recadam',
      anneal: { kind: s.round.anneal, ...result.schedule, gamma: s.round.gamma },
      learningRate: s.round.learningRate,
      gate: { ...figures, reasons: decision.reasons },
    });
    const sha256 = await this.deps.manifestSha256(artifact.dir);
    const version = name;
    const update: ModelUpdateNotice = { version, artifactLocation: artifact.dir, sha256, metrics: updateMetrics(result), createdAt: this.now() };
    this.counters.promoted++;
    this.log.info('challenger promoted', { ...trained, figures, reasons, version, location: artifact.dir, sha256 });
    await this.commit({ rejections: [], update, positions: new Map() }, signal);
    store.recordRound({ at: this.now(), outcome: 'promoted', seq, version, reasons }, trainedIds);
    this.deps.metrics?.store(store.counts());
    this.log.info('round recorded', { ...counts, outcome: 'promoted', version });
    return { outcome: 'promoted', version, location: artifact.dir, sha256, figures, reasons, failed: [] };
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
