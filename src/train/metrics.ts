/**
 * NER evaluation over BIO tag sequences (one tag per original character/token).
 *
 * Two scores, both reported:
 * - strict micro P/R/F1: an entity counts as correct only when its span and its type both match;
 * - the K-BERT-compatible score, replicating run_kbert_ner.py's `evaluate`: every B-* tag starts an
 *   entity that runs over the following tags until O, another B-* or the sentence end (an I- of
 *   ANOTHER type continues it); an I- tag with no entity open is ignored (neither gold nor
 *   predicted); a prediction is correct when its (start, end) equals a gold entity's. The type is
 *   never compared. K-BERT also counted predicted B- tags on injected knowledge tokens as
 *   predictions; here predictions exist for original tokens only, so that term is always zero. And
 *   K-BERT cut every input at 256 tokens after injection, losing the gold entities beyond; here
 *   nothing is cut (long sentences are split into windows), so every gold entity counts.
 *
 * Plus per-type strict P/R/F1 (the paper's table 5), an error breakdown, and a paired bootstrap of the
 * F1 difference between two systems scored on the same sentences.
 */
import { mulberry32 } from '../domain/random.ts';

export interface TypedSpan {
  /** First token index. */
  start: number;
  /** One past the last token index. */
  end: number;
  type: string;
}

export interface Prf {
  precision: number;
  recall: number;
  f1: number;
  /** Correct predictions. */
  correct: number;
  predicted: number;
  gold: number;
}

/**
 * Where the predictions went wrong, entity by entity (each predicted entity is counted once, in the
 * first class that applies, in this order):
 * - correct: same span, same type;
 * - typeConfusion: same span, other type (`typePairs` counts "gold->predicted");
 * - boundaryError: overlaps a gold entity of the same type, other span;
 * - boundaryAndType: overlaps only gold entities of other types, other span;
 * - spurious: overlaps no gold entity.
 * missed counts gold entities overlapped by no prediction at all.
 */
export interface ConfusionSummary {
  correct: number;
  typeConfusion: number;
  boundaryError: number;
  boundaryAndType: number;
  spurious: number;
  missed: number;
  typePairs: Record<string, number>;
}

export interface NerEvaluation {
  sentences: number;
  tokens: number;
  strict: Prf;
  kbert: Prf;
  perType: Record<string, Prf>;
  confusion: ConfusionSummary;
}

/**
 * Entities of a BIO sequence, conlleval style: B-X starts an entity; I-X continues it only when the
 * open entity is of type X, otherwise it starts a new one (so invalid sequences still yield spans).
 */
export function spansFromBio(tags: readonly string[]): TypedSpan[] {
  const spans: TypedSpan[] = [];
  let open: TypedSpan | null = null;
  for (let i = 0; i < tags.length; i++) {
    const tag = tags[i];
    const kind = tag[0];
    const type = tag.length > 2 ? tag.slice(2) : '';
    if (kind === 'I' && open && open.type === type) {
      open.end = i + 1;
      continue;
    }
    if (open) {
      spans.push(open);
      open = null;
    }
    if (kind === 'B' || kind === 'I') open = { start: i, end: i + 1, type };
  }
  if (open) spans.push(open);
  return spans;
}

/** Entity boundaries as K-BERT's scorer reads them (type-blind; orphan I- ignored). */
export function kbertSpans(tags: readonly string[]): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  for (let j = 0; j < tags.length; j++) {
    if (tags[j][0] !== 'B') continue;
    let k = j + 1;
    while (k < tags.length && tags[k] !== 'O' && tags[k][0] !== 'B') k++;
    spans.push([j, k - 1]);
  }
  return spans;
}

export function prf(correct: number, predicted: number, gold: number): Prf {
  const precision = predicted > 0 ? correct / predicted : 0;
  const recall = gold > 0 ? correct / gold : 0;
  const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
  return { precision, recall, f1, correct, predicted, gold };
}

interface Counts {
  correct: number;
  predicted: number;
  gold: number;
}

const zeroCounts = (): Counts => ({ correct: 0, predicted: 0, gold: 0 });

/** Accumulates sentence after sentence; `result()` gives the scores so far. */
export class NerEvaluator {
  private sentences = 0;
  private tokens = 0;
  private readonly strict = zeroCounts();
  private readonly kbert = zeroCounts();
  private readonly perType = new Map<string, Counts>();
  private readonly confusion: ConfusionSummary = {
    correct: 0,
    typeConfusion: 0,
    boundaryError: 0,
    boundaryAndType: 0,
    spurious: 0,
    missed: 0,
    typePairs: {},
  };

  /** @param types entity types to report even when absent from gold and predictions. */
  constructor(types: readonly string[] = []) {
    for (const t of types) this.perType.set(t, zeroCounts());
  }

  /**
   * @param gold gold tags (repaired, valid BIO) for the strict score and the breakdown.
   * @param predicted predicted tags, same length.
   * @param kbertGold gold tags as K-BERT's scorer would see them (as in the file, orphan I- kept);
   *   defaults to `gold`.
   */
  add(gold: readonly string[], predicted: readonly string[], kbertGold: readonly string[] = gold): void {
    if (gold.length !== predicted.length || kbertGold.length !== gold.length) {
      throw new RangeError(`gold has ${gold.length} tags, predicted ${predicted.length}, K-BERT gold ${kbertGold.length}: they must be equal`);
    }
    this.sentences++;
    this.tokens += gold.length;
    const goldSpans = spansFromBio(gold);
    const predSpans = spansFromBio(predicted);
    const key = (s: TypedSpan) => `${s.start}:${s.end}`;
    const goldByKey = new Map(goldSpans.map((s) => [key(s), s]));

    for (const g of goldSpans) this.typeCounts(g.type).gold++;
    for (const p of predSpans) {
      this.typeCounts(p.type).predicted++;
      const same = goldByKey.get(key(p));
      if (same && same.type === p.type) {
        this.strict.correct++;
        this.typeCounts(p.type).correct++;
        this.confusion.correct++;
      } else if (same) {
        this.confusion.typeConfusion++;
        const pair = `${same.type}->${p.type}`;
        this.confusion.typePairs[pair] = (this.confusion.typePairs[pair] ?? 0) + 1;
      } else {
        const overlapping = goldSpans.filter((g) => g.start < p.end && p.start < g.end);
        if (overlapping.length === 0) this.confusion.spurious++;
        else if (overlapping.some((g) => g.type === p.type)) this.confusion.boundaryError++;
        else this.confusion.boundaryAndType++;
      }
    }
    for (const g of goldSpans) {
      if (!predSpans.some((p) => p.start < g.end && g.start < p.end)) this.confusion.missed++;
    }
    this.strict.predicted += predSpans.length;
    this.strict.gold += goldSpans.length;

    const kGold = kbertSpans(kbertGold);
    const kPred = kbertSpans(predicted);
    const kGoldKeys = new Set(kGold.map(([s, e]) => `${s}:${e}`));
    this.kbert.gold += kGold.length;
    this.kbert.predicted += kPred.length;
    for (const [s, e] of kPred) if (kGoldKeys.has(`${s}:${e}`)) this.kbert.correct++;
  }

  private typeCounts(type: string): Counts {
    let c = this.perType.get(type);
    if (!c) {
      c = zeroCounts();
      this.perType.set(type, c);
    }
    return c;
  }

  result(): NerEvaluation {
    const perType: Record<string, Prf> = {};
    for (const [t, c] of this.perType) perType[t] = prf(c.correct, c.predicted, c.gold);
    return {
      sentences: this.sentences,
      tokens: this.tokens,
      strict: prf(this.strict.correct, this.strict.predicted, this.strict.gold),
      kbert: prf(this.kbert.correct, this.kbert.predicted, this.kbert.gold),
      perType,
      confusion: { ...this.confusion, typePairs: { ...this.confusion.typePairs } },
    };
  }
}

/** Scores a whole set at once. */
export function evaluateNer(
  items: Iterable<{ gold: readonly string[]; predicted: readonly string[]; kbertGold?: readonly string[] }>,
  types: readonly string[] = [],
): NerEvaluation {
  const ev = new NerEvaluator(types);
  for (const it of items) ev.add(it.gold, it.predicted, it.kbertGold);
  return ev.result();
}

/** Strict counts of one sentence: the unit that the paired bootstrap resamples. */
export interface SentenceCounts {
  /** Predicted entities equal to a gold entity (span and type). */
  tp: number;
  predicted: number;
  gold: number;
}

/** Strict counts of one sentence, as NerEvaluator counts them (conlleval spans, span + type). */
export function sentenceCounts(gold: readonly string[], predicted: readonly string[]): SentenceCounts {
  if (gold.length !== predicted.length) throw new RangeError(`gold has ${gold.length} tags, predicted ${predicted.length}: they must be equal`);
  const goldSpans = spansFromBio(gold);
  const predSpans = spansFromBio(predicted);
  const goldKeys = new Set(goldSpans.map((s) => `${s.start}:${s.end}:${s.type}`));
  let tp = 0;
  for (const p of predSpans) if (goldKeys.has(`${p.start}:${p.end}:${p.type}`)) tp++;
  return { tp, predicted: predSpans.length, gold: goldSpans.length };
}

/** Micro F1 of summed counts: 2 tp / (predicted + gold), 0 when nothing was predicted or gold. */
export function microF1(tp: number, predicted: number, gold: number): number {
  return predicted + gold > 0 ? (2 * tp) / (predicted + gold) : 0;
}

export interface BootstrapOptions {
  /** Resamples (default 1000). */
  resamples?: number;
  /** PRNG seed (default 1): the same seed and inputs give the same interval. */
  seed?: number;
  /** Confidence level (default 0.95: the 2.5 and 97.5 percentiles). */
  level?: number;
}

export interface BootstrapInterval {
  /** F1(a) - F1(b) on the full set. */
  difference: number;
  /** Lower and upper percentiles of the resampled differences. */
  low: number;
  high: number;
  level: number;
  resamples: number;
  seed: number;
  sentences: number;
  /** Share of resamples where a's F1 is above b's. */
  aBetter: number;
}

/** Value at quantile q of sorted values, linear interpolation between order statistics (numpy's default). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const h = (n - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

/**
 * Paired bootstrap of the difference of strict micro F1 between two systems on the same sentences:
 * sentences are drawn with replacement (the same draw for both systems), both micro F1s are
 * recomputed from the drawn sentences' counts, and the interval is given by the percentiles of the
 * differences F1(a) - F1(b). `a[i]` and `b[i]` must be the counts of the same sentence.
 */
export function pairedBootstrap(a: readonly SentenceCounts[], b: readonly SentenceCounts[], options: BootstrapOptions = {}): BootstrapInterval {
  if (a.length !== b.length) throw new RangeError(`the two systems have counts for ${a.length} and ${b.length} sentences: they must be paired`);
  const resamples = options.resamples ?? 1000;
  const seed = options.seed ?? 1;
  const level = options.level ?? 0.95;
  if (!Number.isInteger(resamples) || resamples < 1) throw new RangeError('resamples must be a positive integer');
  if (!(level > 0 && level < 1)) throw new RangeError('level must be in (0, 1)');
  const n = a.length;
  const f1Of = (c: readonly SentenceCounts[]) => {
    let tp = 0;
    let predicted = 0;
    let gold = 0;
    for (const x of c) {
      tp += x.tp;
      predicted += x.predicted;
      gold += x.gold;
    }
    return microF1(tp, predicted, gold);
  };
  const difference = f1Of(a) - f1Of(b);
  if (n === 0) return { difference, low: 0, high: 0, level, resamples, seed, sentences: 0, aBetter: 0 };
  const random = mulberry32(seed);
  const diffs = new Float64Array(resamples);
  let aBetter = 0;
  for (let r = 0; r < resamples; r++) {
    let tpA = 0;
    let predA = 0;
    let goldA = 0;
    let tpB = 0;
    let predB = 0;
    let goldB = 0;
    for (let k = 0; k < n; k++) {
      const i = Math.floor(random() * n);
      tpA += a[i].tp;
      predA += a[i].predicted;
      goldA += a[i].gold;
      tpB += b[i].tp;
      predB += b[i].predicted;
      goldB += b[i].gold;
    }
    const d = microF1(tpA, predA, goldA) - microF1(tpB, predB, goldB);
    diffs[r] = d;
    if (d > 0) aBetter++;
  }
  diffs.sort();
  const tail = (1 - level) / 2;
  return { difference, low: quantile(diffs, tail), high: quantile(diffs, 1 - tail), level, resamples, seed, sentences: n, aBetter: aBetter / resamples };
}

const pct = (x: number) => (100 * x).toFixed(2);

/** A plain-text report: both scores, per-type F1 and the error breakdown. */
export function formatEvaluation(e: NerEvaluation, typeNames: Record<string, string> = {}): string {
  const line = (name: string, m: Prf) =>
    `${name.padEnd(24)} P ${pct(m.precision).padStart(6)}  R ${pct(m.recall).padStart(6)}  F1 ${pct(m.f1).padStart(6)}  ` +
    `(correct ${m.correct}, predicted ${m.predicted}, gold ${m.gold})`;
  const out = [
    `${e.sentences} sentences, ${e.tokens} tokens`,
    line('strict (span + type)', e.strict),
    line('K-BERT (span only)', e.kbert),
    '',
    'per type (strict):',
  ];
  for (const [t, m] of Object.entries(e.perType)) out.push(`  ${line(typeNames[t] ? `${t} ${typeNames[t]}` : t, m)}`);
  const c = e.confusion;
  out.push(
    '',
    'errors:',
    `  type confusions (same span): ${c.typeConfusion}`,
    `  boundary errors (same type): ${c.boundaryError}`,
    `  boundary + type errors:      ${c.boundaryAndType}`,
    `  spurious (no gold overlap):  ${c.spurious}`,
    `  missed (no prediction):      ${c.missed}`,
  );
  const pairs = Object.entries(c.typePairs).sort((a, b) => b[1] - a[1]);
  if (pairs.length) out.push(`  confused gold->predicted: ${pairs.map(([p, n]) => `${p} ${n}`).join(', ')}`);
  return out.join('\n');
}
