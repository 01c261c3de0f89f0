/**
 * What the benchmarks share: the model to measure (the shipped one, or a stand-in of the backbone's size,
 * said which) and the inputs (the medical test set with knowledge injected, synthetic longer records) for
 * engines.ts and engines-soak.ts; the stage against the local servers (topics, Neo4j graph, configuration)
 * for stream.ts and stage-soak.ts; the RSS analysis of the memory soaks (engines-soak.ts, stage-soak.ts).
 */
import fs from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildConfig, isolatedRunOverrides, type StageConfig } from '../src/config/index.ts';
import type { InjectedSentence } from '../src/domain/index.ts';
import { mulberry32 } from '../src/domain/random.ts';
import {
  createSnapshot,
  InMemoryKnowledgeGraph,
  KnowledgeInjector,
  kgVersionOf,
  loadSpoFile,
  Neo4jKnowledgeGraph,
  readSpoFile,
  staticKnowledge,
} from '../src/knowledge/index.ts';
import { loadArtifact } from '../src/model/artifact.ts';
import { BioDecoder, labelledPositions, logSoftmaxRows } from '../src/model/decode.ts';
import type { CrfScores } from '../src/model/decode.ts';
import { BertTokenizer } from '../src/model/tokenizer.ts';
import type { ArtifactConfig, BertConfig, InferenceEngine, ModelArtifact, WeightMap } from '../src/model/types.ts';
import { bioLabels, MEDICAL_TYPES, readKbertTsv, type NerSentence } from '../src/train/datasets.ts';
import { prepareExamples, type PreparedSet } from '../src/train/evaluate.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const MEDICAL_TEST = path.resolve(ROOT, '../shared/data/kbert-medical-ner/test.tsv');
export const KG_FILE = path.join(ROOT, 'data/kg/Medical.spo');

/** The backbone's size, for the stand-in model when nothing is shipped yet. */
export const BACKBONE_SIZE: BertConfig = {
  vocabSize: 21128,
  hiddenSize: 256,
  numLayers: 4,
  numHeads: 4,
  intermediateSize: 1024,
  maxPositions: 512,
  typeVocabSize: 2,
  layerNormEps: 1e-12,
};

export interface BenchModel {
  artifact: ModelArtifact;
  /** Which model this is, in words. */
  source: string;
  /** True for the fine-tuned medical model: decoded entities and F1 mean something. */
  fineTuned: boolean;
  /** The artifact's weights file when it holds every weight the benchmark uses, else null. */
  weightsFile: string | null;
}


function randomTensor(shape: number[], rng: () => number, std: number, base = 0): { shape: number[]; data: Float32Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  // Uniform with the given standard deviation: enough for timing, no Box-Muller needed.
  const half = std * Math.sqrt(3);
  return { shape, data: Float32Array.from({ length: n }, () => base + (rng() * 2 - 1) * half) };
}

function randomHead(weights: WeightMap, hidden: number, numLabels: number, rng: () => number): void {
  weights.set('classifier.weight', randomTensor([numLabels, hidden], rng, 0.02));
  weights.set('classifier.bias', { shape: [numLabels], data: new Float32Array(numLabels) });
}

function randomModel(config: BertConfig, numLabels: number, seed: number): WeightMap {
  const rng = mulberry32(seed);
  const H = config.hiddenSize;
  const I = config.intermediateSize;
  const w: WeightMap = new Map();
  const e = 'bert.embeddings.';
  w.set(`${e}word_embeddings.weight`, randomTensor([config.vocabSize, H], rng, 0.02));
  w.set(`${e}position_embeddings.weight`, randomTensor([config.maxPositions, H], rng, 0.02));
  w.set(`${e}token_type_embeddings.weight`, randomTensor([config.typeVocabSize, H], rng, 0.02));
  w.set(`${e}LayerNorm.weight`, randomTensor([H], rng, 0, 1));
  w.set(`${e}LayerNorm.bias`, randomTensor([H], rng, 0));
  for (let l = 0; l < config.numLayers; l++) {
    const p = `bert.encoder.layer.${l}.`;
    for (const n of ['query', 'key', 'value']) {
      w.set(`${p}attention.self.${n}.weight`, randomTensor([H, H], rng, 0.02));
      w.set(`${p}attention.self.${n}.bias`, randomTensor([H], rng, 0.02));
    }
    w.set(`${p}attention.output.dense.weight`, randomTensor([H, H], rng, 0.02));
    w.set(`${p}attention.output.dense.bias`, randomTensor([H], rng, 0.02));
    w.set(`${p}attention.output.LayerNorm.weight`, randomTensor([H], rng, 0, 1));
    w.set(`${p}attention.output.LayerNorm.bias`, randomTensor([H], rng, 0));
    w.set(`${p}intermediate.dense.weight`, randomTensor([I, H], rng, 0.02));
    w.set(`${p}intermediate.dense.bias`, randomTensor([I], rng, 0.02));
    w.set(`${p}output.dense.weight`, randomTensor([H, I], rng, 0.02));
    w.set(`${p}output.dense.bias`, randomTensor([H], rng, 0.02));
    w.set(`${p}output.LayerNorm.weight`, randomTensor([H], rng, 0, 1));
    w.set(`${p}output.LayerNorm.bias`, randomTensor([H], rng, 0));
  }
  randomHead(w, H, numLabels, rng);
  return w;
}

export const MEDICAL_LABELS = bioLabels(MEDICAL_TYPES);

const STAND_IN_KNOWLEDGE = { inject: 'relation+object', maxEntities: 2, maxLength: 256, enabled: true } as const;

function standInConfig(name: string, model: BertConfig, labels: string[]): ArtifactConfig {
  return {
    name,
    model,
    labels,
    vocabSha256: '',
    knowledge: { ...STAND_IN_KNOWLEDGE },
    createdAt: new Date().toISOString(),
  };
}

/** models/medical/ if present, else models/backbone/ with a random head, else a random model of the backbone's size. */
export async function loadBenchModel(): Promise<BenchModel> {
  const medical = path.join(ROOT, 'models/medical');
  const backbone = path.join(ROOT, 'models/backbone');
  if (fs.existsSync(path.join(medical, 'config.json'))) {
    const artifact = await loadArtifact(medical);
    return { artifact, source: `models/medical (${artifact.config.name}, fine-tuned)`, fineTuned: true, weightsFile: path.join(medical, 'weights.safetensors') };
  }
  if (fs.existsSync(path.join(backbone, 'config.json'))) {
    const artifact = await loadArtifact(backbone);
    const weights: WeightMap = new Map(artifact.weights);
    randomHead(weights, artifact.config.model.hiddenSize, MEDICAL_LABELS.length, mulberry32(17));
    // A backbone is pretrained without knowledge; the stand-in head is measured on injected input, as the
    // fine-tuned medical model would be (relation + object, <= 2 per name).
    const knowledge = { ...STAND_IN_KNOWLEDGE };
    return {
      artifact: { ...artifact, weights, config: { ...artifact.config, labels: MEDICAL_LABELS, knowledge } },
      source: `models/backbone (${artifact.config.name}) with a random classification head (no fine-tuned model yet)`,
      fineTuned: false,
      weightsFile: null,
    };
  }
  const config = BACKBONE_SIZE;
  const weights = randomModel(config, MEDICAL_LABELS.length, 17);
  return {
    artifact: { dir: '', config: standInConfig('random-backbone-size', config, MEDICAL_LABELS), weights, version: { name: 'random-backbone-size', hash: '000000000000' } },
    source: 'random weights of the backbone size (4 layers, hidden 256, 4 heads, intermediate 1024); no shipped model yet',
    fineTuned: false,
    weightsFile: null,
  };
}

export interface BenchInputs {
  medical: PreparedSet;
  /** Model inputs (windows) of the medical test set, in set order. */
  medicalTrees: InjectedSentence[];
  long256: InjectedSentence[];
  long512: InjectedSentence[];
  /** One sentence of 50 characters (batch-1 latency). */
  sentence50: InjectedSentence;
  knowledge: string;
}

/** Records of exactly `chars` characters cut from the test sentences laid end to end. */
export function syntheticRecords(sentences: readonly NerSentence[], chars: number, count: number): string[] {
  const text = sentences.map((s) => s.text).join('');
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const start = (i * 7919 * chars) % Math.max(1, text.length - chars);
    out.push(text.slice(start, start + chars));
  }
  return out;
}

export async function prepareInputs(model: BenchModel, options: { long256?: number; long512?: number } = {}): Promise<BenchInputs> {
  const dataset = readKbertTsv(MEDICAL_TEST, { types: MEDICAL_TYPES, name: 'medical-test' });
  const tokenizer = await BertTokenizer.load();
  const k = model.artifact.config.knowledge;
  let source = null;
  let knowledge = 'none (plain sentences)';
  if (k.enabled && fs.existsSync(KG_FILE)) {
    const graph = new InMemoryKnowledgeGraph();
    await loadSpoFile(KG_FILE, graph);
    source = staticKnowledge(await createSnapshot(graph, { maxEntities: k.maxEntities }));
    knowledge = `data/kg/Medical.spo, ${k.inject}, <= ${k.maxEntities} per name`;
  }
  const treeOptions = { knowledge: source !== null, inject: k.inject, maxEntities: k.maxEntities };
  const injector = new KnowledgeInjector(tokenizer, source, { ...treeOptions, maxLength: k.maxLength });
  const medical = await prepareExamples(dataset.sentences, injector, model.artifact.config.labels);
  // Longer records get windows as long as the model takes, so the long-sequence cost shows.
  const longLength = Math.min(512, model.artifact.config.model.maxPositions);
  const longInjector = new KnowledgeInjector(tokenizer, source, { ...treeOptions, maxLength: longLength });
  const inject = async (texts: string[]) => (await longInjector.inject(texts.map((text) => ({ text })))).trees.flat();
  const long256 = await inject(syntheticRecords(dataset.sentences, 256, options.long256 ?? 48));
  const long512 = await inject(syntheticRecords(dataset.sentences, 512, options.long512 ?? 24));
  const [sentence50] = await inject(syntheticRecords(dataset.sentences, 50, 1));
  return { medical, medicalTrees: medical.examples.map((e) => e.tree), long256, long512, sentence50, knowledge };
}

export function loadAverage(): number[] {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}

export function machineDescription(): string {
  const cpus = os.cpus();
  return `${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${process.platform}/${process.arch}, Node ${process.versions.node}`;
}

/**
 * Per-character tags of every sentence of a prepared set, predicted by an engine and decoded with the
 * BIO-constrained Viterbi per window (as src/train/evaluate.ts does for the tfjs model).
 */
export async function engineCharTags(engine: InferenceEngine, set: PreparedSet, labels: readonly string[], crf: CrfScores | null = null): Promise<string[][]> {
  const decoder = new BioDecoder(labels, crf);
  const L = labels.length;
  const out = set.sentences.map((s) => new Array<string>(s.chars.length).fill('O'));
  const logits = await engine.classify(set.examples.map((e) => e.tree));
  set.examples.forEach((ex, k) => {
    const s = set.sentences[ex.sentence];
    const unitToChar = new Int32Array(s.text.length);
    let at = 0;
    s.chars.forEach((c, i) => {
      unitToChar.fill(i, at, at + c.length);
      at += c.length;
    });
    const positions = labelledPositions(ex.tree);
    const tags = decoder.viterbi(logSoftmaxRows(logits[k], L, positions), positions.length);
    const target = out[ex.sentence];
    for (let p = 0; p < positions.length; p++) {
      const h = positions[p];
      const first = unitToChar[ex.tree.charStart[h]];
      const last = unitToChar[ex.tree.charEnd[h] - 1];
      const tag = labels[tags[p]];
      target[first] = tag;
      const inside = tag === 'O' ? 'O' : `I-${tag.slice(2)}`;
      for (let c = first + 1; c <= last; c++) target[c] = inside;
    }
  });
  return out;
}

// The stage against the local servers (bash scripts/infra.sh up): benchmarks/stream.ts, benchmarks/stage-soak.ts.

export const BROKERS = ['127.0.0.1:19092'];
export const NEO4J = { uri: 'bolt://127.0.0.1:17687', user: 'neo4j', password: 'rmbert-local' };

/** The sentences of the medical test split, characters joined back together. */
export async function medicalSentences(): Promise<string[]> {
  const lines = (await readFile(MEDICAL_TEST, 'utf8')).split('\n').slice(1);
  return lines.filter((l) => l.includes('\t')).map((l) => l.split('\t')[0].split(' ').join(''));
}

/** The graph in Neo4j's default graph, loaded from data/kg/Medical.spo unless that version is there already. */
export async function ensureGraph(): Promise<string> {
  const graph = new Neo4jKnowledgeGraph(NEO4J);
  try {
    await graph.init();
    const triples = [];
    for await (const chunk of readSpoFile(KG_FILE)) triples.push(...chunk.triples);
    const version = kgVersionOf(triples);
    if ((await graph.stamp())?.version !== version) await loadSpoFile(KG_FILE, graph, { replace: true });
    return version;
  } finally {
    await graph.close();
  }
}

/** The stage's configuration for one benchmark run: its own topics, group and transactional id, ONNX Runtime. */
export function stageConfigFor(run: string, modelDir: string, maxRecords: number): StageConfig {
  return buildConfig({
    env: {},
    overrides: {
      'kafka.brokers': BROKERS,
      ...isolatedRunOverrides(run),
      'neo4j.uri': NEO4J.uri,
      'neo4j.user': NEO4J.user,
      'neo4j.password': NEO4J.password,
      'knowledge.versionPollMs': 0,
      'batch.maxRecords': maxRecords,
      'model.dir': modelDir,
      'model.engine': 'onnx',
      'model.pollIntervalMs': 0,
      'metrics.port': 0,
      instanceId: run,
    },
  });
}

// Memory soaks: benchmarks/engines-soak.ts, benchmarks/stage-soak.ts.

export interface RssSample {
  /** Since the start of the run, ms. */
  tMs: number;
  rssMb: number;
}

export interface RssAnalysis {
  /** [from, to] of each window, ms since the start of the run. */
  firstWindowMs: [number, number];
  lastWindowMs: [number, number];
  firstWindowMaxRssMb: number;
  lastWindowMaxRssMb: number;
  /** Least-squares slope of RSS over the samples after the first window, MB per minute. */
  rssSlopeMbPerMin: number;
  slopeSamples: number;
  bounded: boolean;
}

/** The rule behind `bounded`, in words, for the results files. */
export const RSS_BOUNDED_RULE =
  'bounded = max RSS of the last window <= 1.05 x max RSS of the first window + 16 MB, and the least-squares RSS slope over the samples after the first window < 1 MB/min';

/** Least-squares slope of y over x; 0 with fewer than two distinct x. */
export function leastSquaresSlope(xs: readonly number[], ys: readonly number[]): number {
  if (xs.length < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  const num = xs.reduce((a, x, i) => a + (x - mx) * (ys[i] - my), 0);
  const den = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  return den > 0 ? num / den : 0;
}

/**
 * Whether RSS stays bounded over a run of `elapsedMs`: max RSS in the first window (which starts after
 * `warmupMs`) vs the last window (the run's final `windowMs`), and the slope after the first window
 * (RSS_BOUNDED_RULE). An empty window gives NaN and bounded = false.
 */
export function analyseRss(samples: readonly RssSample[], elapsedMs: number, options: { windowMs: number; warmupMs?: number }): RssAnalysis {
  const warmupMs = options.warmupMs ?? 0;
  const firstWindowMs: [number, number] = [warmupMs, warmupMs + options.windowMs];
  const lastWindowMs: [number, number] = [elapsedMs - options.windowMs, elapsedMs];
  const maxRss = (from: number, to: number) => {
    const inside = samples.filter((s) => s.tMs >= from && s.tMs <= to);
    return inside.length ? Math.max(...inside.map((s) => s.rssMb)) : NaN;
  };
  const firstWindowMaxRssMb = maxRss(...firstWindowMs);
  const lastWindowMaxRssMb = maxRss(...lastWindowMs);
  const tail = samples.filter((s) => s.tMs > firstWindowMs[1]);
  const rssSlopeMbPerMin = leastSquaresSlope(
    tail.map((s) => s.tMs / 60_000),
    tail.map((s) => s.rssMb),
  );
  const bounded = lastWindowMaxRssMb <= firstWindowMaxRssMb * 1.05 + 16 && rssSlopeMbPerMin < 1;
  return { firstWindowMs, lastWindowMs, firstWindowMaxRssMb, lastWindowMaxRssMb, rssSlopeMbPerMin, slopeSamples: tail.length, bounded };
}
