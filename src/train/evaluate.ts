/**
 * Turning labelled sentences into model inputs (knowledge injected, labels aligned) and model
 * predictions back into per-character tags, so that scoring always happens on the dataset's own
 * characters: injected and special tokens are dropped, and a token that covers several characters
 * (WordPiece keeps digit and Latin runs together) gives its tag to its first character and I- of
 * the same type (or O) to the others.
 */
import * as tf from '@tensorflow/tfjs-core';
import { writeAdditiveMask } from '../domain/index.ts';
import type { InjectedSentence } from '../domain/index.ts';
import { ConfigError } from '../errors/index.ts';
import { createSnapshot, InMemoryKnowledgeGraph, KnowledgeInjector, loadSpoFile, staticKnowledge } from '../knowledge/index.ts';
import type { InjectMode, SentenceTree } from '../knowledge/index.ts';
import { loadArtifact } from '../model/artifact.ts';
import { BertModel } from '../model/bert.ts';
import type { BertInputs } from '../model/bert.ts';
import type { BertTokenizer } from '../model/tokenizer.ts';
import type { ModelArtifact } from '../model/types.ts';
import { BioDecoder, crfScoresFrom, labelledPositions, logSoftmaxRows } from '../model/decode.ts';
import type { CrfScores } from '../model/decode.ts';
import type { NerSentence } from './datasets.ts';
import { originalLabels } from './datasets.ts';
import { NerEvaluator } from './metrics.ts';
import type { NerEvaluation } from './metrics.ts';

export interface KnowledgeSetup {
  enabled: boolean;
  /** .spo file of the graph to inject (required when enabled). */
  kgFile?: string;
  /** More .spo files loaded into the same graph (e.g. a term list); names in several files get the union of their triples. */
  extraKgFiles?: readonly string[];
  inject: InjectMode;
  maxEntities: number;
  maxLength: number;
  softPositions: boolean;
  visibilityMatrix: boolean;
}

export interface InjectorSetup {
  injector: KnowledgeInjector;
  /** Version (content hash) of the graph, when knowledge is on. */
  kgVersion?: string;
  triples: number;
}

/** Loads the graph into memory (when enabled) and builds the knowledge injector. */
export async function createInjector(tokenizer: BertTokenizer, k: KnowledgeSetup): Promise<InjectorSetup> {
  const treeOptions = {
    knowledge: k.enabled,
    inject: k.inject,
    maxEntities: k.maxEntities,
    maxLength: k.maxLength,
    softPositions: k.softPositions,
    visibilityMatrix: k.visibilityMatrix,
  };
  if (!k.enabled) return { injector: new KnowledgeInjector(tokenizer, null, treeOptions), triples: 0 };
  if (!k.kgFile) throw new ConfigError(['knowledge injection is on but no knowledge graph file (.spo) was given']);
  const graph = new InMemoryKnowledgeGraph();
  const reports = [];
  for (const file of [k.kgFile, ...(k.extraKgFiles ?? [])]) reports.push(await loadSpoFile(file, graph));
  const snapshot = await createSnapshot(graph, { maxEntities: k.maxEntities });
  // The last load's stamp hashes the union of every file, the same stamp `rmbert kg load` leaves in Neo4j
  // after loading the same files one after the other (or one file holding their union).
  const kgVersion = reports[reports.length - 1].stamp.version;
  return {
    injector: new KnowledgeInjector(tokenizer, staticKnowledge(snapshot), treeOptions),
    kgVersion,
    triples: reports.reduce((n, r) => n + r.distinctTriples, 0),
  };
}

/** One model input: a window of one sentence, with per-token label ids (-1: ignored by the loss). */
export interface NerExample {
  /** Index of the sentence in its set. */
  sentence: number;
  tree: SentenceTree;
  labelIds: Int32Array;
}

export interface PreparedSet {
  sentences: readonly NerSentence[];
  examples: NerExample[];
  stats: {
    sentences: number;
    windows: number;
    tokens: number;
    originalTokens: number;
    injectedTokens: number;
    droppedBranches: number;
    /** Sentences with at least one injected branch. */
    sentencesWithKnowledge: number;
    maxTokens: number;
  };
}

/** Per UTF-16 code unit of `s.text`, the label id of the character it belongs to (I- for the inside of a character). */
export function charLabelIds(s: NerSentence, labelIndex: ReadonlyMap<string, number>): Int32Array {
  const out = new Int32Array(s.text.length);
  let at = 0;
  for (let i = 0; i < s.chars.length; i++) {
    const tag = s.labels[i];
    const id = labelIndex.get(tag);
    if (id === undefined) throw new RangeError(`label ${tag} is not in the model's label set`);
    out[at] = id;
    const inside = tag === 'O' ? id : labelIndex.get(`I-${tag.slice(2)}`)!;
    for (let k = 1; k < s.chars[i].length; k++) out[at + k] = inside;
    at += s.chars[i].length;
  }
  return out;
}

/** Injects knowledge into every sentence (in chunks) and aligns the labels to the tokens. */
export async function prepareExamples(
  sentences: readonly NerSentence[],
  injector: KnowledgeInjector,
  labels: readonly string[],
  chunk = 512,
): Promise<PreparedSet> {
  const labelIndex = new Map(labels.map((l, i) => [l, i]));
  const examples: NerExample[] = [];
  const stats = { sentences: sentences.length, windows: 0, tokens: 0, originalTokens: 0, injectedTokens: 0, droppedBranches: 0, sentencesWithKnowledge: 0, maxTokens: 0 };
  for (let from = 0; from < sentences.length; from += chunk) {
    const part = sentences.slice(from, from + chunk);
    const batch = await injector.inject(part.map((s) => ({ text: s.text })));
    part.forEach((s, i) => {
      const ids = charLabelIds(s, labelIndex);
      let injected = 0;
      for (const tree of batch.trees[i]) {
        const labelIds = new Int32Array(tree.tokenIds.length);
        for (let h = 0; h < labelIds.length; h++) {
          const c = tree.charStart[h];
          labelIds[h] = tree.branch[h] >= 0 || c < 0 ? -1 : ids[c];
        }
        examples.push({ sentence: from + i, tree, labelIds });
        stats.windows++;
        stats.tokens += tree.tokenIds.length;
        stats.originalTokens += tree.originalTokens;
        injected += tree.injectedTokens;
        stats.droppedBranches += tree.droppedBranches;
        stats.maxTokens = Math.max(stats.maxTokens, tree.tokenIds.length);
      }
      stats.injectedTokens += injected;
      if (injected > 0) stats.sentencesWithKnowledge++;
    });
  }
  return { sentences, examples, stats };
}

/** Batches of example indices, each with at most `batchTokens` padded tokens (and `maxSentences` examples). */
export function lengthBatches(examples: readonly NerExample[], order: readonly number[], batchTokens: number, maxSentences = Infinity): number[][] {
  const batches: number[][] = [];
  let current: number[] = [];
  let longest = 0;
  for (const i of order) {
    const len = examples[i].tree.tokenIds.length;
    const nextLongest = Math.max(longest, len);
    if (current.length > 0 && (nextLongest * (current.length + 1) > batchTokens || current.length >= maxSentences)) {
      batches.push(current);
      current = [];
      longest = 0;
    }
    current.push(i);
    longest = Math.max(longest, len);
  }
  if (current.length) batches.push(current);
  return batches;
}

/** Padded model inputs for a batch (typed arrays built first, one tensor each). */
export function buildInputs(sentences: readonly InjectedSentence[], padId = 0): { inputs: BertInputs; T: number } {
  const B = sentences.length;
  let T = 1;
  for (const s of sentences) T = Math.max(T, s.tokenIds.length);
  const tokenIds = new Int32Array(B * T).fill(padId);
  const positions = new Int32Array(B * T);
  const segments = new Int32Array(B * T);
  const mask = new Float32Array(B * T * T);
  sentences.forEach((s, b) => {
    tokenIds.set(s.tokenIds, b * T);
    positions.set(s.softPositions, b * T);
    segments.set(s.segmentIds, b * T);
    writeAdditiveMask(s, mask, b * T * T, T, T);
  });
  const inputs: BertInputs = {
    tokenIds: tf.tensor2d(tokenIds, [B, T], 'int32'),
    softPositions: tf.tensor2d(positions, [B, T], 'int32'),
    segmentIds: tf.tensor2d(segments, [B, T], 'int32'),
    mask: tf.tensor3d(mask, [B, T, T], 'float32'),
  };
  return { inputs, T };
}

export function disposeInputs(inputs: BertInputs): void {
  inputs.tokenIds.dispose();
  inputs.softPositions.dispose();
  inputs.segmentIds.dispose();
  inputs.mask.dispose();
}

export interface PredictOptions {
  /** Padded tokens per forward batch (default 4096). */
  batchTokens?: number;
  /** Most sentences per forward batch (default 16). */
  maxSentences?: number;
  padId?: number;
  onProgress?: (done: number) => void;
  /** Learned transition scores when the model has a CRF output layer (see LoadedNerModel.crf). */
  crf?: CrfScores | null;
}

/**
 * Per-character tags of every sentence, predicted by the model (no dropout) and decoded with the
 * BIO-constrained Viterbi per window. Characters no token covers (whitespace) get O.
 */
export async function predictCharTags(
  model: BertModel,
  labels: readonly string[],
  set: PreparedSet,
  options: PredictOptions = {},
): Promise<string[][]> {
  const decoder = new BioDecoder(labels, options.crf ?? null);
  const L = labels.length;
  const out = set.sentences.map((s) => new Array<string>(s.chars.length).fill('O'));
  const unitToChar = set.sentences.map((s) => {
    const map = new Int32Array(s.text.length);
    let at = 0;
    s.chars.forEach((c, i) => {
      map.fill(i, at, at + c.length);
      at += c.length;
    });
    return map;
  });
  const order = set.examples.map((_, i) => i).sort((a, b) => set.examples[a].tree.tokenIds.length - set.examples[b].tree.tokenIds.length);
  const batches = lengthBatches(set.examples, order, options.batchTokens ?? 4096, options.maxSentences ?? 16);
  let done = 0;
  for (const batch of batches) {
    const trees = batch.map((i) => set.examples[i].tree);
    const { inputs, T } = buildInputs(trees, options.padId ?? 0);
    const logitsTensor = model.tokenLogits(inputs, false);
    disposeInputs(inputs);
    const logits = (await logitsTensor.data()) as Float32Array;
    logitsTensor.dispose();
    batch.forEach((exampleIndex, b) => {
      const ex = set.examples[exampleIndex];
      const rows = ex.tree.tokenIds.length;
      const own = logits.subarray(b * T * L, (b * T + rows) * L);
      const positions = labelledPositions(ex.tree);
      const logProbs = logSoftmaxRows(own, L, positions);
      const tags = decoder.viterbi(logProbs, positions.length);
      const target = out[ex.sentence];
      const map = unitToChar[ex.sentence];
      for (let p = 0; p < positions.length; p++) {
        const h = positions[p];
        const first = map[ex.tree.charStart[h]];
        const last = map[ex.tree.charEnd[h] - 1];
        const tag = labels[tags[p]];
        target[first] = tag;
        const inside = tag === 'O' ? 'O' : `I-${tag.slice(2)}`;
        for (let c = first + 1; c <= last; c++) target[c] = inside;
      }
    });
    done += batch.length;
    options.onProgress?.(done);
  }
  return out;
}

/** Scores predicted tags against the sentences' gold tags (strict on repaired tags, K-BERT on the file's). */
export function scorePredictions(sentences: readonly NerSentence[], predicted: readonly string[][], types: readonly string[]): NerEvaluation {
  const ev = new NerEvaluator(types);
  sentences.forEach((s, i) => ev.add(s.labels, predicted[i], originalLabels(s)));
  return ev.result();
}

/** Predicts and scores a prepared set. */
export async function evaluateModel(
  model: BertModel,
  labels: readonly string[],
  set: PreparedSet,
  types: readonly string[],
  options: PredictOptions = {},
): Promise<{ evaluation: NerEvaluation; predicted: string[][] }> {
  const predicted = await predictCharTags(model, labels, set, options);
  return { evaluation: scorePredictions(set.sentences, predicted, types), predicted };
}

export interface LoadedNerModel {
  artifact: ModelArtifact;
  model: BertModel;
  labels: string[];
  /** Entity types of the label set, in label order. */
  types: string[];
  /** How the model was trained to see knowledge (graph file still to be chosen by the caller). */
  knowledge: Omit<KnowledgeSetup, 'kgFile'>;
  /** The CRF output layer's scores; null for a softmax head. Pass as PredictOptions.crf. */
  crf: CrfScores | null;
}

/** Loads a fine-tuned NER artifact into a tfjs model, with the knowledge setup it was trained with. */
export async function loadNerModel(dir: string, tokenizer: BertTokenizer): Promise<LoadedNerModel> {
  const artifact = await loadArtifact(dir, { vocabSha256: tokenizer.vocabSha256, foldFullWidth: tokenizer.foldFullWidth });
  const { config } = artifact;
  if (config.labels.length === 0) throw new ConfigError([`${dir} is a backbone without a classification head; give a fine-tuned NER model`]);
  const model = BertModel.fromWeights(config.model, artifact.weights, config.labels.length, { mlmHead: false });
  const training = config.training ?? {};
  const types = config.labels.filter((l) => l.startsWith('B-')).map((l) => l.slice(2));
  return {
    artifact,
    model,
    labels: config.labels,
    types,
    crf: crfScoresFrom(artifact.weights, config.labels.length),
    knowledge: {
      enabled: config.knowledge.enabled,
      inject: config.knowledge.inject,
      maxEntities: config.knowledge.maxEntities,
      maxLength: config.knowledge.maxLength,
      softPositions: training.softPositions !== false,
      visibilityMatrix: training.visibilityMatrix !== false,
    },
  };
}
