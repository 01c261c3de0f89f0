/**
 * NER fine-tuning (RM-BERT, K-BERT and BERT baselines, ablations) from a backbone artifact.
 *
 * - Inputs: sentences with knowledge injected by the sentence tree (or not, for the BERT baseline /
 *   -KG), labels on original tokens only; injected and special tokens are ignored by the loss.
 * - Loss: mean token cross-entropy over labelled tokens; gradients clipped by global norm.
 * - Optimizer: RecAdam (recall learning) or plain Adam through the same code path; learning rate
 *   with linear warm-up and linear decay (K-BERT's BertAdam schedule).
 * - Model selection on the dev set by strict micro F1 after every epoch; the artifact holds the best
 *   epoch's weights.
 * - Checkpoints (weights, optimizer moments, theta*, position in the epoch, dropout seed, best
 *   weights) at every epoch end, every few minutes, on abort (SIGINT) and at the time limit; a run
 *   resumes exactly where the checkpoint left it (the batch order of an epoch depends only on the
 *   seed and the epoch number).
 * - Logs: curve.jsonl (one JSON object per logged step and per epoch) and curve.svg in the run directory.
 */
import { mkdir, readFile, rename, rm, writeFile, appendFile, stat } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import cliProgress from 'cli-progress';
import { ConfigError, ModelError } from '../errors/index.ts';
import { loadArtifact, writeArtifact } from '../model/artifact.ts';
import { BertModel } from '../model/bert.ts';
import { readSafetensors, toWeightMap, writeSafetensors } from '../model/safetensors.ts';
import type { BertTokenizer } from '../model/tokenizer.ts';
import type { ArtifactConfig, BertConfig, KnowledgeOptions, ModelArtifact, WeightMap } from '../model/types.ts';
import type { NerSentence } from './datasets.ts';
import { bioLabels } from './datasets.ts';
import { buildInputs, createInjector, disposeInputs, evaluateModel, lengthBatches, prepareExamples } from './evaluate.ts';
import type { KnowledgeSetup, PreparedSet } from './evaluate.ts';

export { createInjector } from './evaluate.ts';
export type { InjectorSetup, KnowledgeSetup } from './evaluate.ts';
import type { NerEvaluation } from './metrics.ts';
import { renderCharts } from './plot.ts';
import type { Chart } from './plot.ts';
import { plainAdam, RecAdam } from './recadam.ts';
import type { AnnealKind, RecAdamState } from './recadam.ts';

export type Ablation = 'none' | 'no-mask' | 'no-pos' | 'no-kg' | 'no-recall';
export const ABLATIONS: readonly Ablation[] = ['none', 'no-mask', 'no-pos', 'no-kg', 'no-recall'];

export type ModelSource = { backboneDir: string } | { random: BertConfig };

export interface FineTuneOptions {
  /** Artifact name, e.g. "rmbert-medical". */
  name: string;
  datasetName: string;
  train: readonly NerSentence[];
  dev: readonly NerSentence[];
  types: readonly string[];
  tokenizer: BertTokenizer;
  model: ModelSource;
  knowledge: KnowledgeSetup;
  optimizer: 'recadam' | 'adam';
  anneal: AnnealKind;
  k: number;
  t0: number;
  gamma: number;
  learningRate: number;
  /** Fraction of all steps spent warming the learning rate up linearly. */
  warmup: number;
  weightDecay: number;
  /** Global gradient-norm clip; 0 = off. */
  clipNorm: number;
  dropout: number;
  epochs: number;
  /** Padded tokens per batch (batch size x longest input). */
  batchTokens: number;
  /** Most sentences in one batch. */
  maxBatchSentences: number;
  seed: number;
  /** Stop (checkpoint + artifact of the best epoch so far) after this many minutes of training. */
  maxMinutes?: number;
  /** Where the model artifact goes; none written when absent. */
  outDir?: string;
  overwrite?: boolean;
  /** Weight precision of the artifact (default F32; F16 halves its size). */
  dtype?: 'F32' | 'F16';
  /** Checkpoint, curve.jsonl and curve.svg. */
  runDir: string;
  resume?: boolean;
  checkpointMinutes?: number;
  /** Steps between curve entries (loss averaged over them). */
  logEvery?: number;
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** Show a progress bar on stderr. */
  progress?: boolean;
  /** Called after every optimizer step (tests use it to watch tensor counts). */
  onStep?: (info: StepInfo) => void;
  /** Facts recorded in the artifact's training section (e.g. the experiment). */
  extraTraining?: Record<string, unknown>;
}

export interface StepInfo {
  step: number;
  epoch: number;
  loss: number;
}

export interface EpochRecord {
  epoch: number;
  step: number;
  trainLoss: number;
  dev: { strictF1: number; strictP: number; strictR: number; kbertF1: number };
  seconds: number;
}

export interface FineTuneResult {
  status: 'completed' | 'interrupted' | 'time-limit';
  steps: number;
  epochsCompleted: number;
  bestEpoch: number;
  bestDev: NerEvaluation | null;
  history: EpochRecord[];
  /** Training throughput (optimizer steps only, dev evaluation excluded). */
  trainSentencesPerSecond: number;
  trainSeconds: number;
  parameters: number;
  artifact: ModelArtifact | null;
  runDir: string;
  prepared: { train: PreparedSet['stats']; dev: PreparedSet['stats'] };
}

/** Applies an ablation of paper fig. 6 to the knowledge setup and optimizer. */
export function applyAblation(
  ablation: Ablation,
  knowledge: KnowledgeSetup,
  optimizer: 'recadam' | 'adam',
): { knowledge: KnowledgeSetup; optimizer: 'recadam' | 'adam' } {
  switch (ablation) {
    case 'none':
      return { knowledge, optimizer };
    case 'no-mask':
      return { knowledge: { ...knowledge, visibilityMatrix: false }, optimizer };
    case 'no-pos':
      return { knowledge: { ...knowledge, softPositions: false }, optimizer };
    case 'no-kg':
      return { knowledge: { ...knowledge, enabled: false }, optimizer };
    case 'no-recall':
      return { knowledge, optimizer: 'adam' };
  }
}

/** Linear warm-up over `warmupSteps`, then linear decay to 0 at `totalSteps` (K-BERT's BertAdam). */
export function warmupLinear(base: number, warmupSteps: number, totalSteps: number): (step: number) => number {
  return (step) => {
    if (step <= warmupSteps && warmupSteps > 0) return (base * step) / warmupSteps;
    if (totalSteps <= warmupSteps) return base;
    return base * Math.max(0, (totalSteps - step) / (totalSteps - warmupSteps));
  };
}

/** Seeded xorshift32 in [0, 1): the same sequence on every platform. */
export function seededRandom(seed: number): () => number {
  let state = (seed >>> 0) ^ 0x9e3779b9 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 0x1_0000_0000;
  };
}

/**
 * The batches of one epoch: shuffle (seed, epoch), sort by length within pools of 50 batches to
 * limit padding, shuffle the batches. Depends on nothing else, so a resumed run sees the same order.
 */
export function epochBatches(set: PreparedSet, epoch: number, seed: number, batchTokens: number, maxSentences: number): number[][] {
  const rand = seededRandom(seed * 1_000_003 + epoch * 7919 + 1);
  const order = set.examples.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const poolSize = Math.max(1, maxSentences * 50);
  const batches: number[][] = [];
  for (let p = 0; p < order.length; p += poolSize) {
    const pool = order.slice(p, p + poolSize).sort((a, b) => set.examples[a].tree.tokenIds.length - set.examples[b].tree.tokenIds.length);
    batches.push(...lengthBatches(set.examples, pool, batchTokens, maxSentences));
  }
  for (let i = batches.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [batches[i], batches[j]] = [batches[j], batches[i]];
  }
  return batches;
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

const CHECKPOINT_DIR = 'checkpoint';
const CHECKPOINT_VERSION = 1;

interface CheckpointState {
  version: number;
  fingerprint: string;
  epoch: number;
  /** Next batch to run in `epoch`. */
  batchIndex: number;
  step: number;
  dropoutSeed: number;
  bestEpoch: number;
  bestStrictF1: number;
  bestDev: NerEvaluation | null;
  history: EpochRecord[];
  trainSeconds: number;
  trainSentences: number;
  lossSum: number;
  lossCount: number;
  savedAt: string;
}

async function variablesToMap(vars: ReadonlyMap<string, tf.Variable>): Promise<WeightMap> {
  const out: WeightMap = new Map();
  for (const [name, v] of vars) out.set(name, { shape: [...v.shape], data: new Float32Array((await v.data()) as Float32Array) });
  return out;
}

function prefixed(prefix: string, m: WeightMap): [string, { shape: number[]; data: Float32Array }][] {
  return [...m].map(([k, v]) => [`${prefix}${k}`, v]);
}

function unprefixed(prefix: string, m: WeightMap): WeightMap {
  const out: WeightMap = new Map();
  for (const [k, v] of m) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), v);
  return out;
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/** Writes the checkpoint into a temp directory and renames it over the previous one. */
async function saveCheckpoint(runDir: string, state: CheckpointState, variables: WeightMap, optimizer: RecAdamState, best: WeightMap | null): Promise<void> {
  const target = path.join(runDir, CHECKPOINT_DIR);
  const temp = path.join(runDir, `.${CHECKPOINT_DIR}.tmp-${process.pid}-${Date.now()}`);
  await mkdir(temp, { recursive: true });
  const tensors = new Map([
    ...prefixed('model.', variables),
    ...prefixed('adam.m.', optimizer.m),
    ...prefixed('adam.v.', optimizer.v),
    ...prefixed('anchor.', optimizer.anchors),
  ]);
  await writeFile(path.join(temp, 'state.safetensors'), writeSafetensors(tensors, { dtype: 'F32' }));
  if (best) await writeFile(path.join(temp, 'best.safetensors'), writeSafetensors(best, { dtype: 'F32' }));
  await writeFile(path.join(temp, 'state.json'), JSON.stringify({ ...state, optimizerStep: optimizer.step }, null, 1) + '\n');
  if (await exists(target)) {
    const old = `${target}.old-${process.pid}-${Date.now()}`;
    await rename(target, old);
    await rename(temp, target);
    await rm(old, { recursive: true, force: true });
  } else {
    await rename(temp, target);
  }
}

interface LoadedCheckpoint {
  state: CheckpointState;
  variables: WeightMap;
  optimizer: RecAdamState;
  best: WeightMap | null;
}

async function loadCheckpoint(runDir: string): Promise<LoadedCheckpoint | null> {
  const dir = path.join(runDir, CHECKPOINT_DIR);
  if (!(await exists(path.join(dir, 'state.json')))) return null;
  const state = JSON.parse(await readFile(path.join(dir, 'state.json'), 'utf8')) as CheckpointState & { optimizerStep: number };
  if (state.version !== CHECKPOINT_VERSION) throw new ModelError(`${dir}: checkpoint version ${state.version}, this build reads ${CHECKPOINT_VERSION}`);
  const all = toWeightMap(readSafetensors(await readFile(path.join(dir, 'state.safetensors'))));
  const bestFile = path.join(dir, 'best.safetensors');
  const best = (await exists(bestFile)) ? toWeightMap(readSafetensors(await readFile(bestFile))) : null;
  return {
    state,
    variables: unprefixed('model.', all),
    optimizer: { step: state.optimizerStep, m: unprefixed('adam.m.', all), v: unprefixed('adam.v.', all), anchors: unprefixed('anchor.', all) },
    best,
  };
}

function assignVariables(model: BertModel, weights: WeightMap, what: string): void {
  for (const [name, v] of model.variables) {
    const w = weights.get(name);
    if (!w || w.shape.join(',') !== v.shape.join(',')) throw new ModelError(`${what}: parameter ${name} is missing or has another shape`);
    tf.tidy(() => v.assign(tf.tensor(w.data, v.shape, 'float32')));
  }
  model.weightsChanged();
}

// ---------------------------------------------------------------------------------------------
// Curves

interface CurveStep {
  kind: 'step';
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  lambda: number;
  l1: number;
  gradNorm: number;
  sentencesPerSecond: number;
}

type CurveEntry = CurveStep | ({ kind: 'epoch' } & EpochRecord);

async function readCurve(file: string): Promise<CurveEntry[]> {
  if (!(await exists(file))) return [];
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as CurveEntry);
}

/** Loss, dev F1 and (for RecAdam) ||theta - theta*||_1 as one SVG. */
export function curveSvg(entries: readonly CurveEntry[], title: string): string {
  const steps = entries.filter((e): e is CurveStep => e.kind === 'step');
  const epochs = entries.filter((e): e is { kind: 'epoch' } & EpochRecord => e.kind === 'epoch');
  const charts: Chart[] = [
    { title: 'training loss', xLabel: 'step', yLabel: 'cross-entropy', series: [{ name: 'train loss', points: steps.map((s) => [s.step, s.loss]) }] },
    {
      title: 'dev F1 (%)',
      xLabel: 'epoch',
      yLabel: 'micro F1 (%)',
      series: [
        { name: 'strict', points: epochs.map((e) => [e.epoch, 100 * e.dev.strictF1]), markers: true },
        { name: 'K-BERT metric', points: epochs.map((e) => [e.epoch, 100 * e.dev.kbertF1]), markers: true },
      ],
    },
  ];
  if (steps.some((s) => s.l1 > 0)) {
    charts.push({ title: '||theta - theta*||_1', xLabel: 'step', yLabel: 'L1 distance', series: [{ name: 'distance to pretrained', points: steps.map((s) => [s.step, s.l1]) }] });
  }
  return renderCharts(charts, { caption: title });
}

// ---------------------------------------------------------------------------------------------
// Training

function fingerprintOf(o: FineTuneOptions, trainSize: number, devSize: number): string {
  return JSON.stringify({
    name: o.name,
    data: o.datasetName,
    trainSize,
    devSize,
    model: 'backboneDir' in o.model ? { backbone: path.resolve(o.model.backboneDir) } : { random: o.model.random },
    knowledge: { ...o.knowledge, kgFile: o.knowledge.kgFile ? path.basename(o.knowledge.kgFile) : undefined },
    optimizer: o.optimizer,
    anneal: o.anneal,
    k: o.k,
    t0: o.t0,
    gamma: o.gamma,
    lr: o.learningRate,
    warmup: o.warmup,
    weightDecay: o.weightDecay,
    clipNorm: o.clipNorm,
    dropout: o.dropout,
    epochs: o.epochs,
    batchTokens: o.batchTokens,
    maxBatchSentences: o.maxBatchSentences,
    seed: o.seed,
  });
}

function fingerprintDiff(a: string, b: string): string[] {
  const x = JSON.parse(a) as Record<string, unknown>;
  const y = JSON.parse(b) as Record<string, unknown>;
  return Object.keys({ ...x, ...y })
    .filter((k) => JSON.stringify(x[k]) !== JSON.stringify(y[k]))
    .map((k) => `${k}: checkpoint has ${JSON.stringify(x[k])}, this run ${JSON.stringify(y[k])}`);
}

interface LoadedModel {
  model: BertModel;
  config: BertConfig;
  pretrained: Set<string>;
  backboneVersion?: string;
  backboneTraining?: Record<string, unknown>;
}

async function buildModel(o: FineTuneOptions, numLabels: number): Promise<LoadedModel> {
  if ('backboneDir' in o.model) {
    const art = await loadArtifact(o.model.backboneDir, { vocabSha256: o.tokenizer.vocabSha256, foldFullWidth: o.tokenizer.foldFullWidth });
    const weights: WeightMap = new Map([...art.weights].filter(([n]) => !n.startsWith('classifier.') && !n.startsWith('cls.')));
    const model = BertModel.fromWeights(art.config.model, weights, numLabels, { seed: o.seed, dropout: o.dropout, mlmHead: false });
    return {
      model,
      config: art.config.model,
      pretrained: new Set([...model.variables.keys()].filter((n) => weights.has(n))),
      backboneVersion: `${art.version.name}+${art.version.hash}`,
      backboneTraining: art.config.training,
    };
  }
  const model = BertModel.init(o.model.random, { numLabels, seed: o.seed, dropout: o.dropout });
  return { model, config: o.model.random, pretrained: new Set([...model.variables.keys()].filter((n) => !n.startsWith('classifier.'))) };
}

function validate(o: FineTuneOptions): void {
  const problems: string[] = [];
  if (o.train.length === 0) problems.push('the training set is empty');
  if (o.dev.length === 0) problems.push('the dev set is empty');
  if (!(o.epochs >= 1 && Number.isInteger(o.epochs))) problems.push(`epochs must be a positive integer (got ${o.epochs})`);
  if (!(o.learningRate > 0)) problems.push(`learning rate must be > 0 (got ${o.learningRate})`);
  if (!(o.warmup >= 0 && o.warmup < 1)) problems.push(`warmup must be in [0, 1) (got ${o.warmup})`);
  if (!(o.gamma >= 0)) problems.push(`gamma must be >= 0 (got ${o.gamma})`);
  if (!(o.batchTokens >= o.knowledge.maxLength)) problems.push(`batch tokens (${o.batchTokens}) must be at least the max length (${o.knowledge.maxLength})`);
  if (!(o.maxBatchSentences >= 1)) problems.push('batch size must be >= 1');
  if (o.anneal === 'sigmoid' && !(o.k > 0)) problems.push(`k must be > 0 for sigmoid annealing (got ${o.k})`);
  if (o.optimizer === 'recadam' && o.learningRate * o.gamma > 1) {
    // Each step moves theta - theta* by the factor 1 - lr (1 - lambda) gamma: above 1 it overshoots theta*, above 2 it diverges.
    problems.push(`learning rate x gamma = ${o.learningRate * o.gamma} > 1: the recall pull would overshoot theta* every step; lower --lr or --gamma`);
  }
  if (problems.length) throw new ConfigError(problems);
}

export async function fineTune(o: FineTuneOptions): Promise<FineTuneResult> {
  validate(o);
  const log = o.log ?? ((line: string) => console.error(line));
  const labels = bioLabels(o.types);
  await mkdir(o.runDir, { recursive: true });
  const curveFile = path.join(o.runDir, 'curve.jsonl');
  const svgFile = path.join(o.runDir, 'curve.svg');

  const { injector, kgVersion, triples } = await createInjector(o.tokenizer, o.knowledge);
  if (o.knowledge.enabled) log(`knowledge graph ${path.basename(o.knowledge.kgFile!)}: ${triples} triples, version ${kgVersion?.slice(0, 12)}`);
  const train = await prepareExamples(o.train, injector, labels);
  const dev = await prepareExamples(o.dev, injector, labels);
  log(
    `train: ${train.stats.sentences} sentences, ${train.stats.windows} inputs, ${train.stats.tokens} tokens ` +
      `(${train.stats.injectedTokens} injected, ${train.stats.sentencesWithKnowledge} sentences with knowledge, ${train.stats.droppedBranches} branches dropped); dev ${dev.stats.sentences}`,
  );

  const fingerprint = fingerprintOf(o, o.train.length, o.dev.length);
  const { model, config, pretrained, backboneVersion, backboneTraining } = await buildModel(o, labels.length);
  let optimizer: RecAdam | null = null;
  try {
    const batchesPerEpoch = Array.from({ length: o.epochs }, (_, e) => epochBatches(train, e, o.seed, o.batchTokens, o.maxBatchSentences).length);
    const totalSteps = batchesPerEpoch.reduce((a, b) => a + b, 0);
    const schedule = warmupLinear(o.learningRate, Math.round(o.warmup * totalSteps), totalSteps);
    log(
      `schedule: ${totalSteps} steps (${batchesPerEpoch.join(' + ')} per epoch), warm-up ${Math.round(o.warmup * totalSteps)}, peak lr ${o.learningRate}` +
        (o.optimizer === 'recadam' ? `; RecAdam gamma ${o.gamma}, lambda(t) ${o.anneal} k ${o.k} t0 ${o.t0}` : '; Adam'),
    );
    const common = { weightDecay: o.weightDecay, isPretrained: (n: string) => pretrained.has(n) };
    optimizer = new RecAdam(
      model.variables,
      o.optimizer === 'recadam'
        ? { ...common, learningRate: schedule, gamma: o.gamma, anneal: { kind: o.anneal, k: o.k, t0: o.t0 } }
        : plainAdam(schedule, common),
    );

    let epoch = 0;
    let batchIndex = 0;
    let bestEpoch = -1;
    let bestStrictF1 = -1;
    let bestDev: NerEvaluation | null = null;
    let bestWeights: WeightMap | null = null;
    let history: EpochRecord[] = [];
    let trainSeconds = 0;
    let trainSentences = 0;
    let lossSum = 0;
    let lossCount = 0;

    if (o.resume) {
      const ck = await loadCheckpoint(o.runDir);
      if (!ck) throw new ConfigError([`--resume: no checkpoint in ${path.join(o.runDir, CHECKPOINT_DIR)}`]);
      const diff = fingerprintDiff(ck.state.fingerprint, fingerprint);
      if (diff.length) throw new ConfigError([`the checkpoint in ${o.runDir} was made with other settings; resume with the same ones or start a new run directory:`, ...diff]);
      assignVariables(model, ck.variables, 'checkpoint');
      optimizer.loadState(ck.optimizer);
      model.dropoutSeed = ck.state.dropoutSeed;
      ({ epoch, batchIndex, bestEpoch, bestStrictF1, bestDev, history, trainSeconds, trainSentences, lossSum, lossCount } = ck.state);
      bestWeights = ck.best;
      // Drop curve entries logged after the checkpoint (they will be logged again).
      const kept = (await readCurve(curveFile)).filter((e) => e.step <= ck.state.step);
      await writeFile(curveFile, kept.map((e) => JSON.stringify(e)).join('\n') + (kept.length ? '\n' : ''));
      log(`resumed from ${o.runDir} at epoch ${epoch + 1}, batch ${batchIndex}, step ${ck.state.step}`);
    } else {
      await writeFile(curveFile, '');
    }

    const variableList = [...model.variables.values()];
    const hfName = new Map([...model.variables].map(([n, v]) => [v.name, n]));
    const L = labels.length;
    const logEvery = o.logEvery ?? 20;
    const started = performance.now();
    const limitMs = o.maxMinutes !== undefined ? o.maxMinutes * 60_000 : Infinity;
    const checkpointMs = (o.checkpointMinutes ?? 10) * 60_000;
    let lastCheckpoint = performance.now();
    let windowLoss = 0;
    let windowSteps = 0;
    let windowSentences = 0;
    let windowStart = performance.now();
    let lastGradNorm = 0;
    let status: FineTuneResult['status'] = 'completed';

    /** `nextEpoch` / `nextBatch`: where a resumed run starts. */
    const checkpointState = (nextEpoch: number, nextBatch: number): CheckpointState => ({
      version: CHECKPOINT_VERSION,
      fingerprint,
      epoch: nextEpoch,
      batchIndex: nextBatch,
      step: optimizer!.step,
      dropoutSeed: model.dropoutSeed,
      bestEpoch,
      bestStrictF1,
      bestDev,
      history,
      trainSeconds,
      trainSentences,
      lossSum,
      lossCount,
      savedAt: new Date().toISOString(),
    });
    const checkpoint = async (nextEpoch: number, nextBatch: number) => {
      await saveCheckpoint(o.runDir, checkpointState(nextEpoch, nextBatch), await variablesToMap(model.variables), await optimizer!.exportState(), bestWeights);
      lastCheckpoint = performance.now();
    };

    const bar =
      o.progress === true
        ? new cliProgress.SingleBar(
            {
              stream: process.stderr,
              format: 'epoch {epoch}/{epochs} |{bar}| {value}/{total} batches | loss {loss} | {speed} sent/s | eta {eta_formatted}',
              hideCursor: true,
              noTTYOutput: true,
              notTTYSchedule: 15_000,
              etaBuffer: 50,
            },
            cliProgress.Presets.shades_classic,
          )
        : null;

    const trainStep = async (batch: number[]): Promise<{ loss: number; gradNorm: number }> => {
      const trees = batch.map((i) => train.examples[i].tree);
      const { inputs, T } = buildInputs(trees, o.tokenizer.padId);
      const B = trees.length;
      const onehot = new Float32Array(B * T * L);
      let count = 0;
      batch.forEach((i, b) => {
        const ids = train.examples[i].labelIds;
        for (let h = 0; h < ids.length; h++) {
          if (ids[h] < 0) continue;
          onehot[(b * T + h) * L + ids[h]] = 1;
          count++;
        }
      });
      const target = tf.tensor2d(onehot, [B * T, L]);
      const { value, grads } = tf.variableGrads(
        () =>
          tf.tidy(() => {
            const logits = tf.reshape(model.tokenLogits(inputs, true), [B * T, L]);
            return tf.div(tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), target))), Math.max(1, count)) as tf.Scalar;
          }),
        variableList,
      );
      disposeInputs(inputs);
      target.dispose();
      const named = new Map<string, tf.Tensor>();
      for (const [vname, g] of Object.entries(grads)) named.set(hfName.get(vname)!, g);
      const norm = tf.tidy(() => tf.sqrt(tf.addN([...named.values()].map((g) => tf.sum(tf.square(g))))));
      let applied = named;
      if (o.clipNorm > 0) {
        const scale = tf.tidy(() => tf.minimum(1, tf.div(o.clipNorm, tf.add(norm, 1e-6))));
        applied = new Map([...named].map(([n, g]) => [n, tf.mul(g, scale)]));
        scale.dispose();
      }
      optimizer!.applyGradients(applied);
      model.weightsChanged();
      const [lossValue, normValue] = await Promise.all([value.data(), norm.data()]);
      for (const g of named.values()) g.dispose();
      if (applied !== named) for (const g of applied.values()) g.dispose();
      value.dispose();
      norm.dispose();
      return { loss: lossValue[0], gradNorm: normValue[0] };
    };

    const evaluateDev = async () => (await evaluateModel(model, labels, dev, o.types, { padId: o.tokenizer.padId })).evaluation;

    outer: for (; epoch < o.epochs; epoch++) {
      const batches = epochBatches(train, epoch, o.seed, o.batchTokens, o.maxBatchSentences);
      const epochStarted = performance.now();
      bar?.start(batches.length, batchIndex, { epoch: epoch + 1, epochs: o.epochs, loss: '-', speed: '-' });
      for (; batchIndex < batches.length; batchIndex++) {
        if (o.signal?.aborted) {
          status = 'interrupted';
          break outer;
        }
        if (performance.now() - started > limitMs) {
          status = 'time-limit';
          break outer;
        }
        const t0 = performance.now();
        const { loss, gradNorm } = await trainStep(batches[batchIndex]);
        if (!Number.isFinite(loss)) throw new ModelError(`training diverged at step ${optimizer.step}: loss ${loss} (lower the learning rate or gamma)`);
        const dt = (performance.now() - t0) / 1000;
        trainSeconds += dt;
        trainSentences += batches[batchIndex].length;
        lossSum += loss;
        lossCount++;
        windowLoss += loss;
        windowSteps++;
        windowSentences += batches[batchIndex].length;
        lastGradNorm = gradNorm;
        o.onStep?.({ step: optimizer.step, epoch, loss });
        const speed = trainSentences / Math.max(trainSeconds, 1e-9);
        bar?.update(batchIndex + 1, { loss: loss.toFixed(4), speed: speed.toFixed(1) });
        if (optimizer.step % logEvery === 0) {
          const entry: CurveStep = {
            kind: 'step',
            step: optimizer.step,
            epoch: epoch + (batchIndex + 1) / batches.length,
            loss: windowLoss / windowSteps,
            lr: optimizer.learningRateAt(optimizer.step),
            lambda: o.optimizer === 'recadam' ? optimizer.lambdaAt(optimizer.step) : 1,
            l1: await optimizer.distanceL1(),
            gradNorm: lastGradNorm,
            sentencesPerSecond: windowSentences / ((performance.now() - windowStart) / 1000),
          };
          await appendFile(curveFile, JSON.stringify(entry) + '\n');
          windowLoss = 0;
          windowSteps = 0;
          windowSentences = 0;
          windowStart = performance.now();
        }
        if (performance.now() - lastCheckpoint > checkpointMs) await checkpoint(epoch, batchIndex + 1);
      }
      bar?.stop();
      const evaluation = await evaluateDev();
      const record: EpochRecord = {
        epoch: epoch + 1,
        step: optimizer.step,
        trainLoss: lossCount ? lossSum / lossCount : NaN,
        dev: { strictF1: evaluation.strict.f1, strictP: evaluation.strict.precision, strictR: evaluation.strict.recall, kbertF1: evaluation.kbert.f1 },
        seconds: (performance.now() - epochStarted) / 1000,
      };
      history.push(record);
      lossSum = 0;
      lossCount = 0;
      await appendFile(curveFile, JSON.stringify({ kind: 'epoch', ...record }) + '\n');
      log(
        `epoch ${epoch + 1}/${o.epochs}: train loss ${record.trainLoss.toFixed(4)}, dev strict F1 ${(100 * record.dev.strictF1).toFixed(2)}, ` +
          `K-BERT F1 ${(100 * record.dev.kbertF1).toFixed(2)} (${record.seconds.toFixed(0)} s)`,
      );
      if (evaluation.strict.f1 > bestStrictF1) {
        bestStrictF1 = evaluation.strict.f1;
        bestEpoch = epoch + 1;
        bestDev = evaluation;
        bestWeights = await variablesToMap(model.variables);
      }
      batchIndex = 0;
      await checkpoint(epoch + 1, 0);
      await writeFile(svgFile, curveSvg(await readCurve(curveFile), `${o.name} on ${o.datasetName}`));
    }
    bar?.stop();

    if (status !== 'completed') {
      await checkpoint(epoch, batchIndex);
      log(`${status === 'interrupted' ? 'interrupted' : `time limit of ${o.maxMinutes} min reached`}: checkpoint written to ${path.join(o.runDir, CHECKPOINT_DIR)} (resume with --resume)`);
    }
    if (status === 'time-limit' && optimizer.step > 0) {
      // Score the weights reached so far too: with one short epoch they may be the only ones.
      const evaluation = await evaluateDev();
      if (evaluation.strict.f1 > bestStrictF1) {
        bestStrictF1 = evaluation.strict.f1;
        bestEpoch = epoch + 1;
        bestDev = evaluation;
        bestWeights = await variablesToMap(model.variables);
      }
    }
    await writeFile(svgFile, curveSvg(await readCurve(curveFile), `${o.name} on ${o.datasetName}`));

    let artifact: ModelArtifact | null = null;
    if (o.outDir && status !== 'interrupted' && bestWeights) {
      assignVariables(model, bestWeights, 'best epoch');
      const knowledge: KnowledgeOptions = {
        inject: o.knowledge.inject,
        maxEntities: o.knowledge.maxEntities,
        maxLength: o.knowledge.maxLength,
        enabled: o.knowledge.enabled,
        ...(kgVersion ? { kgVersion } : {}),
      };
      const artifactConfig: ArtifactConfig = {
        name: o.name,
        model: config,
        labels,
        vocabSha256: o.tokenizer.vocabSha256,
        tokenizer: { foldFullWidth: o.tokenizer.foldFullWidth },
        knowledge,
        training: {
          task: 'ner',
          dataset: o.datasetName,
          trainSentences: o.train.length,
          devSentences: o.dev.length,
          backbone: backboneVersion ?? 'random-init',
          backboneTraining: backboneTraining ?? null,
          softPositions: o.knowledge.softPositions,
          visibilityMatrix: o.knowledge.visibilityMatrix,
          kgFile: o.knowledge.kgFile ? path.basename(o.knowledge.kgFile) : null,
          optimizer: o.optimizer,
          anneal: o.optimizer === 'recadam' ? { kind: o.anneal, k: o.k, t0: o.t0, gamma: o.gamma } : null,
          learningRate: o.learningRate,
          warmup: o.warmup,
          weightDecay: o.weightDecay,
          clipNorm: o.clipNorm,
          dropout: o.dropout,
          epochs: o.epochs,
          epochsCompleted: history.length,
          steps: optimizer.step,
          batchTokens: o.batchTokens,
          maxBatchSentences: o.maxBatchSentences,
          seed: o.seed,
          status,
          bestEpoch,
          dev: bestDev ? { strict: bestDev.strict, kbert: bestDev.kbert } : null,
          trainSentencesPerSecond: trainSentences / Math.max(trainSeconds, 1e-9),
          ...o.extraTraining,
        },
        createdAt: new Date().toISOString(),
      };
      artifact = await writeArtifact(o.outDir, artifactConfig, await model.toWeightMap(), {
        dtype: o.dtype ?? 'F32',
        overwrite: o.overwrite ?? false,
        extraFiles: { 'training-curve.svg': await readFile(svgFile, 'utf8'), 'dev-metrics.json': JSON.stringify(bestDev, null, 1) + '\n' },
      });
      log(`model written to ${artifact.dir} (${artifact.version.name}+${artifact.version.hash}), best epoch ${bestEpoch}, dev strict F1 ${(100 * bestStrictF1).toFixed(2)}`);
    }

    return {
      status,
      steps: optimizer.step,
      epochsCompleted: history.length,
      bestEpoch,
      bestDev,
      history,
      trainSentencesPerSecond: trainSentences / Math.max(trainSeconds, 1e-9),
      trainSeconds,
      parameters: model.parameterCount(),
      artifact,
      runDir: o.runDir,
      prepared: { train: train.stats, dev: dev.stats },
    };
  } finally {
    optimizer?.dispose();
    model.dispose();
  }
}
