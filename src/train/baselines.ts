/**
 * What a model's score means, on the sentences it was scored on:
 * - the training-set dictionary baseline: every entity surface of the training split, looked up in
 *   the evaluated text (leftmost-longest, non-overlapping) and given its most frequent training type;
 * - gold entities split by whether their exact surface string is an entity (any type) in training,
 *   with the recall of each group;
 * - one-character predictions that are not a gold entity;
 * - the predictions as JSON records with UTF-16 offsets, for any other scorer.
 *
 * The dictionary compares exact surfaces: the knowledge layer's Aho-Corasick matcher finds every
 * candidate (it compares after its full-width/case folding), candidates whose text is not exactly a
 * training surface are dropped (folding would let the Examine surface "P" match inside "nbsp"), and
 * the leftmost-longest, non-overlapping ones are kept. Matches start and end on sentence characters.
 */
import { ConceptMatcher } from '../knowledge/matcher.ts';
import type { Token } from '../domain/index.ts';
import type { NerSentence } from './datasets.ts';
import { evaluateNer, pairedBootstrap, sentenceCounts, spansFromBio } from './metrics.ts';
import type { BootstrapInterval, BootstrapOptions, NerEvaluation, Prf } from './metrics.ts';

/** An entity of a sentence: [start, end) in characters of `chars`, with its surface text. */
export interface SentenceEntity {
  start: number;
  end: number;
  type: string;
  text: string;
}

/** Entities of a tag sequence over a sentence's characters (conlleval reading, as the strict score). */
export function sentenceEntities(s: NerSentence, tags: readonly string[]): SentenceEntity[] {
  if (tags.length !== s.chars.length) throw new RangeError(`${tags.length} tags for a sentence of ${s.chars.length} characters`);
  return spansFromBio(tags).map((sp) => ({ ...sp, text: s.chars.slice(sp.start, sp.end).join('') }));
}

/** UTF-16 offset of every character boundary of a sentence: offsets[i] is where character i starts, offsets[n] = text.length. */
export function charOffsets(s: NerSentence): Int32Array {
  const out = new Int32Array(s.chars.length + 1);
  for (let i = 0; i < s.chars.length; i++) out[i + 1] = out[i] + s.chars[i].length;
  return out;
}

/** Picks the most frequent type; ties go to the type counted first. */
function majorityType(counts: ReadonlyMap<string, number>): string {
  let best = '';
  let bestCount = -1;
  for (const [type, n] of counts) {
    if (n > bestCount) {
      best = type;
      bestCount = n;
    }
  }
  return best;
}

/** Longest-match lookup of the training split's entity surfaces. */
export class DictionaryBaseline {
  /** Distinct exact surfaces. */
  readonly surfaces: number;
  /** Entities read from the training split. */
  readonly entities: number;
  private readonly typeCounts: Map<string, Map<string, number>>;
  private readonly matcher: ConceptMatcher;

  private constructor(typeCounts: Map<string, Map<string, number>>, entities: number) {
    this.typeCounts = typeCounts;
    this.entities = entities;
    this.surfaces = typeCounts.size;
    this.matcher = ConceptMatcher.build(typeCounts.keys());
  }

  /** Builds the dictionary from labelled (training) sentences. */
  static fromSentences(sentences: readonly NerSentence[]): DictionaryBaseline {
    const typeCounts = new Map<string, Map<string, number>>();
    let entities = 0;
    for (const s of sentences) {
      for (const e of sentenceEntities(s, s.labels)) {
        entities++;
        let counts = typeCounts.get(e.text);
        if (!counts) typeCounts.set(e.text, (counts = new Map()));
        counts.set(e.type, (counts.get(e.type) ?? 0) + 1);
      }
    }
    return new DictionaryBaseline(typeCounts, entities);
  }

  /** True when `surface` is exactly an entity (any type) of the training split. */
  has(surface: string): boolean {
    return this.typeCounts.has(surface);
  }

  /** The most frequent training type of exactly this surface (ties: the first seen), or undefined. */
  typeOf(surface: string): string | undefined {
    const counts = this.typeCounts.get(surface);
    return counts ? majorityType(counts) : undefined;
  }

  /** Entities the lookup finds in a sentence (leftmost-longest, non-overlapping, on character boundaries). */
  entitiesIn(s: NerSentence): SentenceEntity[] {
    const offsets = charOffsets(s);
    const tokens: Token[] = s.chars.map((c, i) => ({ text: c, id: 0, start: offsets[i], end: offsets[i + 1] }));
    const charAt = new Map<number, number>();
    for (let i = 0; i <= s.chars.length; i++) charAt.set(offsets[i], i);
    const found: SentenceEntity[] = [];
    let from = 0;
    // Sorted by start, then longest first: the first exact surface at or after `from` is the leftmost-longest.
    for (const m of this.matcher.match(s.text, { tokens, mode: 'all' })) {
      if (m.start < from) continue;
      const text = s.text.slice(m.start, m.end);
      const type = this.typeOf(text);
      if (type === undefined) continue;
      found.push({ start: charAt.get(m.start)!, end: charAt.get(m.end)!, type, text });
      from = m.end;
    }
    return found;
  }

  /** BIO tags of the lookup's entities, one per character. */
  tag(s: NerSentence): string[] {
    const tags = new Array<string>(s.chars.length).fill('O');
    for (const e of this.entitiesIn(s)) {
      tags[e.start] = `B-${e.type}`;
      for (let i = e.start + 1; i < e.end; i++) tags[i] = `I-${e.type}`;
    }
    return tags;
  }
}

export interface RecallGroup {
  /** Gold entities in the group. */
  gold: number;
  /** Of them, predicted exactly (span and type). */
  found: number;
  recall: number;
}

export interface SurfaceRecall {
  seen: RecallGroup;
  unseen: RecallGroup;
}

/**
 * Recall of gold entities whose exact surface is an entity of the training split (seen) and of the
 * others (unseen). A gold entity is found when a prediction has its span and its type.
 */
export function surfaceRecall(
  sentences: readonly NerSentence[],
  predicted: readonly (readonly string[])[],
  isSeen: (surface: string) => boolean,
): SurfaceRecall {
  const seen = { gold: 0, found: 0 };
  const unseen = { gold: 0, found: 0 };
  sentences.forEach((s, i) => {
    const predKeys = new Set(spansFromBio(predicted[i]).map((p) => `${p.start}:${p.end}:${p.type}`));
    for (const g of sentenceEntities(s, s.labels)) {
      const group = isSeen(g.text) ? seen : unseen;
      group.gold++;
      if (predKeys.has(`${g.start}:${g.end}:${g.type}`)) group.found++;
    }
  });
  const done = (g: { gold: number; found: number }): RecallGroup => ({ ...g, recall: g.gold > 0 ? g.found / g.gold : 0 });
  return { seen: done(seen), unseen: done(unseen) };
}

export interface SingleCharStats {
  predictions: number;
  /** Predictions that are not exactly a gold entity (span and type). */
  falsePositives: number;
  /** Predictions one character long. */
  singleChar: number;
  /** One-character predictions that are not exactly a gold entity. */
  singleCharWrong: number;
  /** singleCharWrong / predictions. */
  shareOfPredictions: number;
  /** singleCharWrong / singleChar. */
  shareOfSingleChar: number;
  /** singleCharWrong / falsePositives. */
  shareOfFalsePositives: number;
}

/** How many predictions are wrong one-character entities (a fragment, or a stray character). */
export function singleCharErrors(sentences: readonly NerSentence[], predicted: readonly (readonly string[])[]): SingleCharStats {
  let predictions = 0;
  let falsePositives = 0;
  let singleChar = 0;
  let singleCharWrong = 0;
  sentences.forEach((s, i) => {
    const goldKeys = new Set(spansFromBio(s.labels).map((g) => `${g.start}:${g.end}:${g.type}`));
    for (const p of spansFromBio(predicted[i])) {
      predictions++;
      const wrong = !goldKeys.has(`${p.start}:${p.end}:${p.type}`);
      if (wrong) falsePositives++;
      if (p.end - p.start === 1) {
        singleChar++;
        if (wrong) singleCharWrong++;
      }
    }
  });
  const share = (a: number, b: number) => (b > 0 ? a / b : 0);
  return {
    predictions,
    falsePositives,
    singleChar,
    singleCharWrong,
    shareOfPredictions: share(singleCharWrong, predictions),
    shareOfSingleChar: share(singleCharWrong, singleChar),
    shareOfFalsePositives: share(singleCharWrong, falsePositives),
  };
}

/** An entity in a predictions file: UTF-16 offsets into `text`, end exclusive. */
export interface EntityRecord {
  start: number;
  end: number;
  type: string;
  text: string;
}

export interface PredictionRecord {
  sentence: number;
  text: string;
  entities: EntityRecord[];
  gold: EntityRecord[];
}

/** One line of `rmbert eval --predictions`: the predicted and gold entities of sentence `index`. */
export function predictionRecord(index: number, s: NerSentence, predicted: readonly string[]): PredictionRecord {
  const offsets = charOffsets(s);
  const records = (tags: readonly string[]): EntityRecord[] =>
    sentenceEntities(s, tags).map((e) => ({ start: offsets[e.start], end: offsets[e.end], type: e.type, text: e.text }));
  return { sentence: index, text: s.text, entities: records(predicted), gold: records(s.labels) };
}

/** Everything `rmbert eval` adds to the model's scores (the dictionary parts are null without a training split). */
export interface ModelAnalysis {
  baseline: {
    /** Where the dictionary came from. */
    train: { source: string; sentences: number; entities: number; surfaces: number };
    evaluation: NerEvaluation;
    /** Per type, model strict F1 minus dictionary strict F1. */
    perTypeF1Delta: Record<string, number>;
  } | null;
  /** Paired bootstrap of model strict F1 - dictionary strict F1. */
  bootstrap: BootstrapInterval | null;
  surfaces: { model: SurfaceRecall; dictionary: SurfaceRecall } | null;
  singleChar: SingleCharStats;
}

export interface AnalysisInput {
  sentences: readonly NerSentence[];
  /** The model's tags, one array per sentence. */
  predicted: readonly (readonly string[])[];
  types: readonly string[];
  /** The model's evaluation on the same sentences. */
  evaluation: NerEvaluation;
  /** The training split, for the dictionary baseline and the seen/unseen split; null to skip them. */
  train: { source: string; sentences: readonly NerSentence[] } | null;
  bootstrap?: BootstrapOptions;
}

/** The dictionary baseline, the paired bootstrap, recall on seen/unseen surfaces and the one-character errors. */
export function analyseModel(input: AnalysisInput): ModelAnalysis {
  const { sentences, predicted, types, evaluation } = input;
  if (predicted.length !== sentences.length) throw new RangeError(`${predicted.length} predictions for ${sentences.length} sentences`);
  const singleChar = singleCharErrors(sentences, predicted);
  if (!input.train) return { baseline: null, bootstrap: null, surfaces: null, singleChar };
  const dictionary = DictionaryBaseline.fromSentences(input.train.sentences);
  const lookedUp = sentences.map((s) => dictionary.tag(s));
  const baselineEvaluation = evaluateNer(
    sentences.map((s, i) => ({ gold: s.labels, predicted: lookedUp[i] })),
    types,
  );
  const perTypeF1Delta: Record<string, number> = {};
  for (const t of Object.keys(evaluation.perType)) perTypeF1Delta[t] = evaluation.perType[t].f1 - (baselineEvaluation.perType[t]?.f1 ?? 0);
  const modelCounts = sentences.map((s, i) => sentenceCounts(s.labels, predicted[i]));
  const dictionaryCounts = sentences.map((s, i) => sentenceCounts(s.labels, lookedUp[i]));
  const isSeen = (surface: string) => dictionary.has(surface);
  return {
    baseline: {
      train: { source: input.train.source, sentences: input.train.sentences.length, entities: dictionary.entities, surfaces: dictionary.surfaces },
      evaluation: baselineEvaluation,
      perTypeF1Delta,
    },
    bootstrap: pairedBootstrap(modelCounts, dictionaryCounts, input.bootstrap),
    surfaces: { model: surfaceRecall(sentences, predicted, isSeen), dictionary: surfaceRecall(sentences, lookedUp, isSeen) },
    singleChar,
  };
}

const pct = (x: number) => (100 * x).toFixed(2);
const pct1 = (x: number) => (100 * x).toFixed(1);
const signed = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(2)}`;

/** A few plain-text lines for `rmbert eval`. */
export function formatAnalysis(a: ModelAnalysis, model: NerEvaluation): string {
  const out: string[] = [];
  if (a.baseline && a.bootstrap && a.surfaces) {
    const b = a.baseline.evaluation.strict;
    const line = (m: Prf) => `P ${pct(m.precision)}  R ${pct(m.recall)}  F1 ${pct(m.f1)}  (correct ${m.correct}, predicted ${m.predicted}, gold ${m.gold})`;
    const boot = a.bootstrap;
    out.push(
      `dictionary baseline (${a.baseline.train.surfaces} training surfaces, longest match): ${line(b)}`,
      `  per type F1 model / dictionary / difference: ${Object.keys(model.perType)
        .map((t) => `${t} ${pct(model.perType[t].f1)}/${pct(a.baseline!.evaluation.perType[t]?.f1 ?? 0)}/${signed(a.baseline!.perTypeF1Delta[t])}`)
        .join(', ')}`,
      `model - dictionary strict F1: ${signed(boot.difference)} points, paired bootstrap ${pct1(boot.level)}% interval [${signed(boot.low)}, ${signed(boot.high)}] ` +
        `(${boot.resamples} resamples of ${boot.sentences} sentences, seed ${boot.seed}; model ahead in ${pct1(boot.aBetter)}%)`,
    );
    const { model: m, dictionary: d } = a.surfaces;
    out.push(
      `gold surfaces seen in training: ${m.seen.gold}, recall model ${pct1(m.seen.recall)}% / dictionary ${pct1(d.seen.recall)}%; ` +
        `unseen: ${m.unseen.gold}, recall model ${pct1(m.unseen.recall)}% / dictionary ${pct1(d.unseen.recall)}%`,
    );
  }
  const c = a.singleChar;
  out.push(
    `one-character predictions: ${c.singleChar}, ${c.singleCharWrong} of them wrong: ${pct1(c.shareOfPredictions)}% of all predictions, ` +
      `${pct1(c.shareOfSingleChar)}% of one-character predictions, ${pct1(c.shareOfFalsePositives)}% of false positives`,
  );
  return out.join('\n');
}
