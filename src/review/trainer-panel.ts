/**
 * The trainer panel's data: the trainer's rounds as they happen, from two sources:
 * - the model-updates topic (every promoted model, with its round's scores; read from the start at
 *   every start of the page, so promoted rounds survive restarts), and
 * - the trainer's Prometheus metrics (its /metrics, polled): a round in progress, every round that
 *   ended (promoted, refused with the checks that refused it, failed), the last round's champion and
 *   challenger F1 on the gold set and the feedback holdout, the feedback store's counts.
 * Rounds seen only through the metrics live in memory (bounded); the topic holds the promoted ones.
 */

export interface ModelUpdateView {
  version: string;
  createdAt: number;
  metrics: Readonly<Record<string, number>>;
}

export interface Scores {
  goldChampion: number | null;
  goldChallenger: number | null;
  holdoutChampion: number | null;
  holdoutChallenger: number | null;
}

export interface TrainerSnapshot {
  at: number;
  rounds: Record<string, number>;
  refusals: Record<string, number>;
  scores: Scores;
  stored: Record<string, number>;
  ready: boolean | null;
  /** ms since the epoch, null when no round is running. */
  roundStartedAt: number | null;
  roundSecondsSum: number | null;
}

export interface RoundView {
  endedAt: number;
  outcome: string;
  /** Gate checks that refused the round. */
  failed: string[];
  scores: Scores;
  /** The promoted model's version (from the model-updates topic). */
  version: string | null;
  durationSeconds: number | null;
}

export interface PanelView {
  inService: { version: string; since: number } | null;
  trainer: { url: string | null; reachable: boolean; lastPolledAt: number | null; error: string | null; ready: boolean | null; roundInProgressSince: number | null; stored: Record<string, number>; totals: Record<string, number> };
  rounds: RoundView[];
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Samples of a Prometheus text exposition (comments skipped; label values unescaped). */
export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[3]) {
      for (const l of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_x, c: string) => (c === 'n' ? '\n' : c));
    }
    const value = Number(m[4]);
    if (!Number.isNaN(value)) out.push({ name: m[1], labels, value });
  }
  return out;
}

export function trainerSnapshot(text: string, at: number, prefix = 'rmbert_trainer_'): TrainerSnapshot {
  const samples = parsePrometheus(text);
  const byLabel = (name: string, label: string): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const s of samples) if (s.name === prefix + name && s.labels[label] !== undefined) out[s.labels[label]] = s.value;
    return out;
  };
  const one = (name: string): number | null => samples.find((s) => s.name === prefix + name)?.value ?? null;
  const f1 = samples.filter((s) => s.name === `${prefix}f1`);
  const score = (set: string, model: string) => f1.find((s) => s.labels.set === set && s.labels.model === model)?.value ?? null;
  const started = one('round_started_timestamp_seconds');
  const ready = one('ready');
  return {
    at,
    rounds: byLabel('rounds_total', 'outcome'),
    refusals: byLabel('refusals_total', 'check'),
    scores: { goldChampion: score('gold', 'champion'), goldChallenger: score('gold', 'challenger'), holdoutChampion: score('holdout', 'champion'), holdoutChallenger: score('holdout', 'challenger') },
    stored: byLabel('feedback_stored', 'state'),
    ready: ready === null ? null : ready === 1,
    roundStartedAt: started ? started * 1000 : null,
    roundSecondsSum: one('round_seconds_sum'),
  };
}

function delta(now: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(now)) {
    const d = v - (before[k] ?? 0);
    if (d > 0) out[k] = d;
  }
  return out;
}

const NO_SCORES: Scores = { goldChampion: null, goldChallenger: null, holdoutChampion: null, holdoutChallenger: null };

export class TrainerPanel {
  private readonly updates: ModelUpdateView[] = [];
  private readonly observed: RoundView[] = [];
  private latest: TrainerSnapshot | null = null;
  private error: string | null = null;
  private lastPolledAt: number | null = null;

  constructor(
    private readonly metricsUrl: string | null,
    private readonly maxRounds = 500,
    /** A promoted round seen in the metrics matches a model update this close in time. */
    private readonly matchWindowMs = 120_000,
  ) {}

  addUpdate(u: ModelUpdateView): void {
    if (this.updates.some((x) => x.version === u.version && x.createdAt === u.createdAt)) return;
    this.updates.push(u);
    this.updates.sort((a, b) => a.createdAt - b.createdAt);
    if (this.updates.length > this.maxRounds) this.updates.shift();
  }

  /** A new reading of the trainer's metrics: the rounds that ended since the last one become events. */
  observe(s: TrainerSnapshot): void {
    const before = this.latest;
    this.latest = s;
    this.error = null;
    this.lastPolledAt = s.at;
    // The first reading (or one after the trainer restarted, its counters back to zero) is a baseline.
    if (!before || Object.entries(before.rounds).some(([k, v]) => (s.rounds[k] ?? 0) < v)) return;
    const ended = delta(s.rounds, before.rounds);
    const failed = Object.keys(delta(s.refusals, before.refusals)).sort();
    const rounds = Object.values(ended).reduce((a, b) => a + b, 0);
    const duration = s.roundSecondsSum !== null && before.roundSecondsSum !== null && rounds === 1 ? s.roundSecondsSum - before.roundSecondsSum : null;
    for (const [outcome, n] of Object.entries(ended)) {
      for (let i = 0; i < n; i++) {
        const trained = outcome === 'promoted' || outcome === 'refused';
        this.observed.push({ endedAt: s.at, outcome, failed: outcome === 'refused' ? failed : [], scores: trained ? { ...s.scores } : NO_SCORES, version: null, durationSeconds: duration });
      }
    }
    while (this.observed.length > this.maxRounds) this.observed.shift();
  }

  pollFailed(error: string, at: number): void {
    this.error = error;
    this.lastPolledAt = at;
  }

  /** Promoted rounds from the topic, the other rounds from the metrics, in time order. */
  view(): PanelView {
    const rounds: RoundView[] = this.updates.map((u) => ({
      endedAt: u.createdAt,
      outcome: 'promoted',
      failed: [],
      scores: { goldChampion: u.metrics.goldF1Champion ?? null, goldChallenger: u.metrics.goldF1 ?? u.metrics.f1 ?? null, holdoutChampion: u.metrics.holdoutF1Champion ?? null, holdoutChallenger: u.metrics.holdoutF1 ?? null },
      version: u.version,
      durationSeconds: null,
    }));
    for (const r of this.observed) {
      if (r.outcome === 'promoted') {
        const match = rounds.find((x) => x.version !== null && x.durationSeconds === null && Math.abs(x.endedAt - r.endedAt) <= this.matchWindowMs);
        if (match) {
          match.durationSeconds = r.durationSeconds;
          continue;
        }
      }
      rounds.push({ ...r, failed: [...r.failed] });
    }
    rounds.sort((a, b) => a.endedAt - b.endedAt);
    const last = this.updates.at(-1);
    const s = this.latest;
    return {
      inService: last ? { version: last.version, since: last.createdAt } : null,
      trainer: {
        url: this.metricsUrl,
        reachable: s !== null && this.error === null,
        lastPolledAt: this.lastPolledAt,
        error: this.error,
        ready: s?.ready ?? null,
        roundInProgressSince: s?.roundStartedAt ?? null,
        stored: s?.stored ?? {},
        totals: s?.rounds ?? {},
      },
      rounds: rounds.slice(-this.maxRounds),
    };
  }
}

/** Polls the trainer's /metrics every `intervalMs` into the panel until stopped. */
export function pollTrainer(panel: TrainerPanel, url: string, intervalMs: number, now: () => number = Date.now): { stop(): void } {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const tick = async () => {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(Math.min(10_000, intervalMs * 2)) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      panel.observe(trainerSnapshot(await res.text(), now()));
    } catch (error) {
      panel.pollFailed(`cannot read the trainer's metrics at ${url}: ${(error as Error).message}`, now());
    }
    if (!stopped) timer = setTimeout(tick, intervalMs);
  };
  void tick();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
