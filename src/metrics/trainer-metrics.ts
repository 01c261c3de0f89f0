/**
 * The trainer sidecar's Prometheus metrics on an explicit registry (served by startMetricsServer on
 * the trainer's own port). Labels are bounded: round outcomes, gate check names (entity types
 * included, a handful), feedback outcomes, set and model. Never document text or ids.
 * Structurally the trainer's TrainerMetricsPort (src/train/sidecar.ts); this folder imports no train code.
 */
import client from 'prom-client';

interface F1Pair {
  champion: { f1: number };
  challenger: { f1: number };
}

export interface TrainerRoundScores {
  gold: F1Pair;
  holdout: F1Pair & { sentences: number };
  distanceL1: number;
  championL1: number;
  trainSeconds: number;
  replaySentences: number;
}

export interface TrainerStoreCounts {
  train: number;
  holdout: number;
  quarantined: number;
  newSinceRound: number;
}

export class PromTrainerMetrics {
  readonly registry: client.Registry;
  private readonly rounds: client.Counter;
  private readonly refusals: client.Counter;
  private readonly roundSeconds: client.Histogram;
  private readonly trainSeconds: client.Gauge;
  private readonly feedbackRecords: client.Counter;
  private readonly stored: client.Gauge;
  private readonly used: client.Counter;
  private readonly replayed: client.Counter;
  private readonly f1: client.Gauge;
  private readonly distance: client.Gauge;
  private readonly relativeDistance: client.Gauge;
  private readonly readyGauge: client.Gauge;
  private readonly check: client.Gauge;
  private readonly roundStartedAt: client.Gauge;
  private readiness: Record<string, boolean> = {};

  constructor(options: { prefix?: string; processMetrics?: boolean } = {}) {
    const p = options.prefix ?? 'rmbert_trainer_';
    this.registry = new client.Registry();
    const registers = [this.registry];
    if (options.processMetrics) client.collectDefaultMetrics({ register: this.registry });
    this.rounds = new client.Counter({ name: `${p}rounds_total`, help: 'Rounds by outcome (promoted, refused, skipped, failed, interrupted)', labelNames: ['outcome'], registers });
    this.refusals = new client.Counter({ name: `${p}refusals_total`, help: 'Refused rounds by the gate check that failed (a round can fail several)', labelNames: ['check'], registers });
    this.roundSeconds = new client.Histogram({ name: `${p}round_seconds`, help: 'Wall time of a round: training, evaluation, promotion', buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600], registers });
    this.trainSeconds = new client.Gauge({ name: `${p}last_train_seconds`, help: 'Training time of the last round that trained', registers });
    this.feedbackRecords = new client.Counter({ name: `${p}feedback_records_total`, help: 'Feedback records read, by what happened to them', labelNames: ['outcome'], registers });
    this.stored = new client.Gauge({ name: `${p}feedback_stored`, help: 'Documents in the feedback store, by state (train, holdout, quarantined, new: training documents no round has seen)', labelNames: ['state'], registers });
    this.used = new client.Counter({ name: `${p}feedback_used_total`, help: 'Feedback documents trained on, summed over rounds', registers });
    this.replayed = new client.Counter({ name: `${p}replay_sentences_total`, help: 'Original training sentences replayed, summed over rounds', registers });
    this.f1 = new client.Gauge({ name: `${p}f1`, help: 'Strict micro F1 of the last round, by set (gold, holdout) and model (champion, challenger)', labelNames: ['set', 'model'], registers });
    this.distance = new client.Gauge({ name: `${p}distance_l1`, help: '||theta - theta*||_1 of the last challenger', registers });
    this.relativeDistance = new client.Gauge({ name: `${p}relative_distance`, help: '||theta - theta*||_1 / ||theta*||_1 of the last challenger', registers });
    this.readyGauge = new client.Gauge({ name: `${p}ready`, help: '1 when the trainer can do its work (store open, consumer started, a model in service found)', registers });
    this.roundStartedAt = new client.Gauge({ name: `${p}round_started_timestamp_seconds`, help: 'When the round in progress started (seconds since the epoch); 0 when none is', registers });
    this.check = new client.Gauge({ name: `${p}readiness_check`, help: 'Readiness checks, 1 = passing', labelNames: ['check'], registers });
  }

  feedback(outcome: string, n = 1): void {
    this.feedbackRecords.inc({ outcome }, n);
  }

  store(c: TrainerStoreCounts): void {
    this.stored.set({ state: 'train' }, c.train);
    this.stored.set({ state: 'holdout' }, c.holdout);
    this.stored.set({ state: 'quarantined' }, c.quarantined);
    this.stored.set({ state: 'new' }, c.newSinceRound);
  }

  roundStarted(at: number): void {
    this.roundStartedAt.set(at / 1000);
  }

  round(outcome: string, seconds: number, failed: readonly string[]): void {
    this.roundStartedAt.set(0);
    this.rounds.inc({ outcome });
    if (outcome === 'promoted' || outcome === 'refused' || outcome === 'failed') this.roundSeconds.observe(seconds);
    for (const check of failed) this.refusals.inc({ check });
  }

  roundScores(r: TrainerRoundScores, trainedDocuments: number): void {
    this.f1.set({ set: 'gold', model: 'champion' }, r.gold.champion.f1);
    this.f1.set({ set: 'gold', model: 'challenger' }, r.gold.challenger.f1);
    if (r.holdout.sentences > 0) {
      this.f1.set({ set: 'holdout', model: 'champion' }, r.holdout.champion.f1);
      this.f1.set({ set: 'holdout', model: 'challenger' }, r.holdout.challenger.f1);
    }
    this.distance.set(r.distanceL1);
    this.relativeDistance.set(r.championL1 > 0 ? r.distanceL1 / r.championL1 : 0);
    this.trainSeconds.set(r.trainSeconds);
    this.used.inc(trainedDocuments);
    this.replayed.inc(r.replaySentences);
  }

  ready(checks: Record<string, boolean>): void {
    this.readiness = { ...checks };
    for (const [name, ok] of Object.entries(checks)) this.check.set({ check: name }, ok ? 1 : 0);
    this.readyGauge.set(Object.values(checks).every(Boolean) ? 1 : 0);
  }

  /** For /readyz. */
  readinessNow(): { ready: boolean; checks: Record<string, boolean> } {
    const checks = { ...this.readiness };
    return { ready: Object.keys(checks).length > 0 && Object.values(checks).every(Boolean), checks };
  }
}
