/**
 * Masked-LM pretraining of the BERT backbone on the general-domain corpus (src/train/corpus.ts).
 *
 * Masking as in BERT: 15% of the non-special tokens of each sequence are chosen; of those 80% become
 * [MASK], 10% a random token of the corpus vocabulary, 10% stay. The loss is the mean cross-entropy over
 * the chosen positions only, and the MLM head runs only at those positions, over the token ids the corpus
 * contains (an exact softmax over every possible target; see BertModel.mlmLogits).
 * Visibility for pretraining is all-visible (no knowledge) and soft positions equal hard positions.
 *
 * Optimiser: AdamW (decoupled weight decay, none on biases and LayerNorm), linear warmup then linear decay
 * to zero over the run, global-norm gradient clipping. The schedule's progress is the larger of
 * step / maxSteps and trainingSeconds / (maxMinutes * 60), so a time-limited run still anneals to zero.
 *
 * Determinism: the data order (a seeded permutation per epoch) and each step's masking (a PRNG seeded by
 * seed and step) depend only on the seed and the step number, so a resumed run sees exactly the batches
 * an uninterrupted run would have seen. Checkpoints hold fp32 weights, both Adam moments, the step, tokens
 * seen, training seconds and the dropout seed, written atomically (temp dir + rename).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { ModelError, SchemaError } from '../errors/index.ts';
import { BertModel } from '../model/bert.ts';
import { readSafetensors, toWeightMap, writeSafetensors } from '../model/safetensors.ts';
import type { BertTokenizer } from '../model/tokenizer.ts';
import type { BertConfig, WeightMap } from '../model/types.ts';
import { mulberry32, shuffleInPlace } from '../domain/random.ts';
import type { PretrainCorpus } from './corpus.ts';

export interface PretrainOptions {
  config: BertConfig;
  batchSize: number;
  learningRate: number;
  warmupSteps: number;
  weightDecay: number;
  clipNorm: number;
  maskProbability: number;
  /** Dropout during pretraining (0 saves the mask generation; a sub-epoch run does not overfit). */
  dropout: number;
  maxSteps: number;
  maxMinutes: number;
  checkpointMinutes: number;
  seed: number;
  /** Checkpoints and the JSON-lines log go here. */
  outDir: string;
  /** Continue from the latest checkpoint in outDir (weights, moments, step). */
  resume: boolean;
  /** Start from these weights (HF layout) with a fresh optimiser state; ignored when resuming. */
  initWeights?: WeightMap;
  /** Number of checkpoints to keep. */
  keepCheckpoints: number;
}

export const DEFAULT_PRETRAIN_OPTIONS: Omit<PretrainOptions, 'config' | 'outDir'> = {
  batchSize: 16,
  learningRate: 5e-4,
  warmupSteps: 100,
  weightDecay: 0.01,
  clipNorm: 1.0,
  maskProbability: 0.15,
  dropout: 0,
  maxSteps: 1_000_000,
  maxMinutes: 100,
  checkpointMinutes: 10,
  seed: 1,
  resume: false,
  keepCheckpoints: 2,
};

export interface StepLog {
  step: number;
  loss: number;
  lr: number;
  tokensSeen: number;
  tokensPerSecond: number;
  elapsedSeconds: number;
  maskedTokens: number;
}

export interface PretrainResult {
  model: BertModel;
  steps: number;
  tokensSeen: number;
  trainSeconds: number;
  /** Mean loss over the last up-to-50 steps. */
  finalLoss: number;
  lossCurve: { step: number; loss: number }[];
  stoppedBy: 'max-steps' | 'max-minutes';
}

interface CheckpointState {
  step: number;
  tokensSeen: number;
  trainSeconds: number;
  dropoutSeed: number;
  seed: number;
  corpusKey: string;
  config: BertConfig;
  lossCurve: { step: number; loss: number }[];
  createdAt: string;
}

export interface MaskedBatch {
  /** [B * T] input ids after masking. */
  inputIds: Int32Array;
  /** Flat positions b * T + t that carry a target. */
  positions: Int32Array;
  /** Target index into corpus.vocabUsed for each position. */
  targets: Int32Array;
}

/** Which sequence (row of corpus.sequences) the i-th example of the run is: a seeded permutation per epoch. */
export class SequenceOrder {
  private epoch = -1;
  private order: Int32Array;
  constructor(
    private readonly numSequences: number,
    private readonly seed: number,
  ) {
    this.order = new Int32Array(numSequences);
  }
  at(example: number): number {
    const epoch = Math.floor(example / this.numSequences);
    if (epoch !== this.epoch) {
      for (let i = 0; i < this.numSequences; i++) this.order[i] = i;
      shuffleInPlace(this.order, mulberry32(this.seed * 7919 + epoch));
      this.epoch = epoch;
    }
    return this.order[example % this.numSequences];
  }
}

/** BERT masking for one batch; deterministic in (seed, step). */
export function maskBatch(
  corpus: PretrainCorpus,
  tokenizer: Pick<BertTokenizer, 'clsId' | 'sepId' | 'padId' | 'maskId' | 'unkId'>,
  order: SequenceOrder,
  step: number,
  batchSize: number,
  seed: number,
  maskProbability: number,
  subsetIndex: Int32Array,
): MaskedBatch {
  const T = corpus.seqLen;
  const random = mulberry32((seed * 1_000_003 + step * 7_919) >>> 0);
  const inputIds = new Int32Array(batchSize * T);
  const positions: number[] = [];
  const targets: number[] = [];
  const replaceable = corpus.vocabUsed.filter((id) => id !== tokenizer.clsId && id !== tokenizer.sepId && id !== tokenizer.padId && id !== tokenizer.maskId);
  for (let b = 0; b < batchSize; b++) {
    const row = order.at(step * batchSize + b) * T;
    const candidates: number[] = [];
    for (let t = 0; t < T; t++) {
      const id = corpus.sequences[row + t];
      inputIds[b * T + t] = id;
      if (id !== tokenizer.clsId && id !== tokenizer.sepId && id !== tokenizer.padId) candidates.push(t);
    }
    const count = Math.max(1, Math.round(candidates.length * maskProbability));
    shuffleInPlace(candidates, random);
    const chosen = candidates.slice(0, count).sort((x, y) => x - y);
    for (const t of chosen) {
      const flat = b * T + t;
      const original = inputIds[flat];
      positions.push(flat);
      targets.push(subsetIndex[original]);
      const r = random();
      if (r < 0.8) inputIds[flat] = tokenizer.maskId;
      else if (r < 0.9) inputIds[flat] = replaceable[Math.floor(random() * replaceable.length)];
    }
  }
  return { inputIds, positions: Int32Array.from(positions), targets: Int32Array.from(targets) };
}

/** Learning rate at `progress` in [0, 1] of the run: linear warmup over warmupSteps, then linear decay. */
export function learningRateAt(opts: Pick<PretrainOptions, 'learningRate' | 'warmupSteps'>, step: number, progress: number): number {
  if (step < opts.warmupSteps) return (opts.learningRate * (step + 1)) / opts.warmupSteps;
  return opts.learningRate * Math.max(0, 1 - progress);
}

function decays(name: string): boolean {
  return !name.endsWith('.bias') && !name.includes('LayerNorm');
}

/** AdamW with decoupled weight decay and global-norm clipping over a BertModel's variables. */
export class AdamW {
  /** Moments by HF name. */
  readonly m = new Map<string, tf.Variable>();
  readonly v = new Map<string, tf.Variable>();
  private readonly hfNameOf = new Map<string, string>();
  constructor(
    private readonly variables: Map<string, tf.Variable>,
    private readonly opts: { beta1: number; beta2: number; epsilon: number; weightDecay: number; clipNorm: number },
  ) {
    for (const [name, variable] of variables) {
      this.hfNameOf.set(variable.name, name);
      this.m.set(name, tf.variable(tf.zerosLike(variable), false));
      this.v.set(name, tf.variable(tf.zerosLike(variable), false));
    }
  }

  /**
   * Applies one update; `step` counts from 0. `grads` as tf.variableGrads returns them (keyed by tf
   * variable name). Returns the global gradient norm before clipping.
   */
  apply(grads: tf.NamedTensorMap, lr: number, step: number): tf.Scalar {
    return tf.tidy(() => {
      const { beta1, beta2, epsilon, weightDecay, clipNorm } = this.opts;
      const keys = Object.keys(grads);
      const norm = tf.sqrt(tf.addN(keys.map((k) => tf.sum(tf.square(grads[k]))))) as tf.Scalar;
      const scale = tf.minimum(1, tf.div(clipNorm, tf.add(norm, 1e-6)));
      const bc1 = 1 - beta1 ** (step + 1);
      const bc2 = 1 - beta2 ** (step + 1);
      for (const key of keys) {
        const name = this.hfNameOf.get(key);
        if (!name) throw new ModelError(`gradient for unknown variable ${key}`);
        const variable = this.variables.get(name)!;
        const g = tf.mul(grads[key], scale);
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
        v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)));
        let update = tf.div(tf.div(m, bc1), tf.add(tf.sqrt(tf.div(v, bc2)), epsilon));
        if (weightDecay > 0 && decays(name)) update = tf.add(update, tf.mul(variable, weightDecay));
        variable.assign(tf.sub(variable, tf.mul(update, lr)));
      }
      return tf.keep(norm);
    });
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

const LATEST = 'latest.json';

export function latestCheckpoint(outDir: string): string | null {
  const file = path.join(outDir, LATEST);
  if (!existsSync(file)) return null;
  const { dir } = JSON.parse(readFileSync(file, 'utf8')) as { dir: string };
  const full = path.join(outDir, dir);
  return existsSync(path.join(full, 'state.json')) ? full : null;
}

async function writeCheckpoint(outDir: string, model: BertModel, adam: AdamW, state: CheckpointState, keep: number): Promise<string> {
  mkdirSync(outDir, { recursive: true });
  const name = `ckpt-${String(state.step).padStart(7, '0')}`;
  const tmp = path.join(outDir, `.${name}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  const weights = await model.toWeightMap();
  writeFileSync(path.join(tmp, 'weights.safetensors'), writeSafetensors(weights, { dtype: 'F32' }));
  // Moments are kept in the model's variable layout (Linear weights [in, out]); only this code reads them.
  const moments = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [n, t] of adam.m) moments.set(`m.${n}`, { shape: [...t.shape], data: new Float32Array((await t.data()) as Float32Array) });
  for (const [n, t] of adam.v) moments.set(`v.${n}`, { shape: [...t.shape], data: new Float32Array((await t.data()) as Float32Array) });
  writeFileSync(path.join(tmp, 'optimizer.safetensors'), writeSafetensors(moments, { dtype: 'F32' }));
  writeFileSync(path.join(tmp, 'state.json'), JSON.stringify(state, null, 2));
  const final = path.join(outDir, name);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  writeFileSync(path.join(outDir, `${LATEST}.tmp`), JSON.stringify({ dir: name }));
  renameSync(path.join(outDir, `${LATEST}.tmp`), path.join(outDir, LATEST));
  const old = readdirSync(outDir)
    .filter((f) => /^ckpt-\d+$/.test(f))
    .sort();
  for (const f of old.slice(0, Math.max(0, old.length - keep))) rmSync(path.join(outDir, f), { recursive: true, force: true });
  return final;
}

function readWeights(file: string): WeightMap {
  return toWeightMap(readSafetensors(readFileSync(file)));
}

// ---------------------------------------------------------------------------------------------
// The loop

export interface PretrainHooks {
  onStep?: (log: StepLog) => void;
  onCheckpoint?: (dir: string) => void;
  log?: (line: string) => void;
}

export async function pretrain(
  corpus: PretrainCorpus,
  tokenizer: BertTokenizer,
  options: PretrainOptions,
  hooks: PretrainHooks = {},
): Promise<PretrainResult> {
  const log = hooks.log ?? (() => {});
  const opts = options;
  if (opts.config.vocabSize !== tokenizer.vocabSize) {
    throw new ModelError(`config vocabSize ${opts.config.vocabSize} differs from the tokenizer's ${tokenizer.vocabSize}`);
  }
  if (corpus.seqLen > opts.config.maxPositions) throw new ModelError(`sequence length ${corpus.seqLen} exceeds maxPositions`);
  const T = corpus.seqLen;
  const B = opts.batchSize;

  let model: BertModel;
  let step = 0;
  let tokensSeen = 0;
  let trainSeconds = 0;
  let lossCurve: { step: number; loss: number }[] = [];
  const resumeDir = opts.resume ? latestCheckpoint(opts.outDir) : null;
  if (opts.resume && !resumeDir) throw new SchemaError(`--resume: no checkpoint in ${opts.outDir} (latest.json missing)`);
  let restoredMoments: WeightMap | null = null;
  if (resumeDir) {
    const state = JSON.parse(readFileSync(path.join(resumeDir, 'state.json'), 'utf8')) as CheckpointState;
    if (JSON.stringify(state.config) !== JSON.stringify(opts.config)) {
      throw new ModelError(`checkpoint ${resumeDir} has model config ${JSON.stringify(state.config)}, not ${JSON.stringify(opts.config)}`);
    }
    if (state.corpusKey !== corpus.key) log(`warning: checkpoint was trained on corpus ${state.corpusKey}, now ${corpus.key}`);
    model = BertModel.fromWeights(opts.config, readWeights(path.join(resumeDir, 'weights.safetensors')), 0, { dropout: opts.dropout });
    restoredMoments = readWeights(path.join(resumeDir, 'optimizer.safetensors'));
    step = state.step;
    tokensSeen = state.tokensSeen;
    trainSeconds = state.trainSeconds;
    lossCurve = state.lossCurve;
    model.dropoutSeed = state.dropoutSeed;
    log(`resumed from ${resumeDir} at step ${step} (${tokensSeen} tokens seen)`);
  } else if (opts.initWeights) {
    model = BertModel.fromWeights(opts.config, opts.initWeights, 0, { dropout: opts.dropout, seed: opts.seed });
    log('initialised from given weights with a fresh optimiser state');
  } else {
    model = BertModel.init(opts.config, { seed: opts.seed, mlmHead: true, dropout: opts.dropout });
  }
  if (!model.hasMlmHead) {
    // Weights without an MLM head (e.g. a token classifier): add a fresh head.
    const weights = await model.toWeightMap();
    model.dispose();
    const fresh = BertModel.init(opts.config, { seed: opts.seed, mlmHead: true });
    const full = await fresh.toWeightMap();
    fresh.dispose();
    for (const [n, w] of weights) if (!n.startsWith('classifier.')) full.set(n, w);
    model = BertModel.fromWeights(opts.config, full, 0, { dropout: opts.dropout, seed: opts.seed });
  }
  model.dropoutRate = opts.dropout;

  const adam = new AdamW(model.variables, { beta1: 0.9, beta2: 0.999, epsilon: 1e-6, weightDecay: opts.weightDecay, clipNorm: opts.clipNorm });
  if (restoredMoments) {
    for (const [n, t] of adam.m) t.assign(tf.tensor(restoredMoments.get(`m.${n}`)!.data, t.shape));
    for (const [n, t] of adam.v) t.assign(tf.tensor(restoredMoments.get(`v.${n}`)!.data, t.shape));
  }

  const subsetIndex = new Int32Array(tokenizer.vocabSize).fill(-1);
  corpus.vocabUsed.forEach((id, i) => (subsetIndex[id] = i));
  const vocabSubset = tf.tensor1d(corpus.vocabUsed, 'int32');
  const softPositions = tf.tidy(() => tf.tile(tf.expandDims(tf.range(0, T, 1, 'int32'), 0), [B, 1])) as tf.Tensor2D;
  const segmentIds = tf.zeros([B, T], 'int32') as tf.Tensor2D;
  const allVisible = tf.zeros([B, T, T], 'float32') as tf.Tensor3D;
  const order = new SequenceOrder(corpus.numSequences, opts.seed);
  const varList = [...model.variables.values()];
  const logFile = path.join(opts.outDir, 'train-log.jsonl');
  mkdirSync(opts.outDir, { recursive: true });

  const budgetSeconds = opts.maxMinutes * 60;
  const runStart = performance.now();
  const startSeconds = trainSeconds;
  let lastCheckpoint = performance.now();
  let stoppedBy: PretrainResult['stoppedBy'] = 'max-steps';
  const recent: number[] = [];
  let windowStart = performance.now();
  let windowTokens = 0;
  const state = (): CheckpointState => ({
    step,
    tokensSeen,
    trainSeconds,
    dropoutSeed: model.dropoutSeed,
    seed: opts.seed,
    corpusKey: corpus.key,
    config: opts.config,
    lossCurve,
    createdAt: new Date().toISOString(),
  });

  while (step < opts.maxSteps) {
    trainSeconds = startSeconds + (performance.now() - runStart) / 1000;
    if (trainSeconds >= budgetSeconds) {
      stoppedBy = 'max-minutes';
      break;
    }
    const progress = Math.max(step / opts.maxSteps, trainSeconds / budgetSeconds);
    const lr = learningRateAt(opts, step, progress);
    const batch = maskBatch(corpus, tokenizer, order, step, B, opts.seed, opts.maskProbability, subsetIndex);
    const lossTensor = tf.tidy(() => {
      const tokenIds = tf.tensor2d(batch.inputIds, [B, T], 'int32');
      const positions = tf.tensor1d(batch.positions, 'int32');
      const labels = tf.oneHot(tf.tensor1d(batch.targets, 'int32'), corpus.vocabUsed.length);
      const { value, grads } = tf.variableGrads(() => {
        const hidden = model.encode({ tokenIds, softPositions, segmentIds, mask: allVisible }, true);
        const logits = model.mlmLogits(hidden, positions, true, vocabSubset);
        return tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;
      }, varList);
      adam.apply(grads, lr, step).dispose();
      return value;
    });
    const loss = (await lossTensor.data())[0];
    lossTensor.dispose();
    if (!Number.isFinite(loss)) throw new ModelError(`pretraining diverged at step ${step}: loss ${loss}`);
    const seqTokens = B * T;
    step++;
    tokensSeen += seqTokens;
    windowTokens += seqTokens;
    recent.push(loss);
    if (recent.length > 50) recent.shift();
    trainSeconds = startSeconds + (performance.now() - runStart) / 1000;
    const windowSeconds = (performance.now() - windowStart) / 1000;
    const entry: StepLog = {
      step,
      loss,
      lr,
      tokensSeen,
      tokensPerSecond: windowTokens / Math.max(windowSeconds, 1e-9),
      elapsedSeconds: trainSeconds,
      maskedTokens: batch.positions.length,
    };
    if (windowSeconds > 30) {
      windowStart = performance.now();
      windowTokens = 0;
    }
    if (step % 10 === 0 || step === 1) lossCurve.push({ step, loss: recent.reduce((a, b) => a + b, 0) / recent.length });
    appendFileSync(logFile, `${JSON.stringify(entry)}\n`);
    hooks.onStep?.(entry);
    if ((performance.now() - lastCheckpoint) / 60000 >= opts.checkpointMinutes) {
      const dir = await writeCheckpoint(opts.outDir, model, adam, state(), opts.keepCheckpoints);
      hooks.onCheckpoint?.(dir);
      lastCheckpoint = performance.now();
    }
  }
  if (step >= opts.maxSteps) stoppedBy = 'max-steps';
  const dir = await writeCheckpoint(opts.outDir, model, adam, state(), opts.keepCheckpoints);
  hooks.onCheckpoint?.(dir);
  adam.dispose();
  tf.dispose([vocabSubset, softPositions, segmentIds, allVisible]);
  return {
    model,
    steps: step,
    tokensSeen,
    trainSeconds,
    finalLoss: recent.length ? recent.reduce((a, b) => a + b, 0) / recent.length : NaN,
    lossCurve,
    stoppedBy,
  };
}

/**
 * The MLM head was trained over the ids the corpus contains only (an exact softmax over every target it
 * could meet); the others kept their initial bias of 0, which would give them too much probability when
 * the head is used over the whole vocabulary. Sets their cls.predictions.bias well below every learned one.
 * Returns the bias given to them. The encoder is unaffected.
 */
export function suppressUnseenTokens(weights: WeightMap, vocabUsed: Int32Array): number {
  const bias = weights.get('cls.predictions.bias');
  if (!bias) return NaN;
  const seen = new Uint8Array(bias.data.length);
  for (const id of vocabUsed) seen[id] = 1;
  let min = Infinity;
  for (let i = 0; i < bias.data.length; i++) if (seen[i]) min = Math.min(min, bias.data[i]);
  const low = Math.floor(min) - 10;
  const data = new Float32Array(bias.data);
  for (let i = 0; i < data.length; i++) if (!seen[i]) data[i] = low;
  weights.set('cls.predictions.bias', { shape: bias.shape, data });
  return low;
}

/** A small standalone SVG line plot of the loss curve (step on x, loss on y). */
export function lossCurveSvg(curve: { step: number; loss: number }[], title: string): string {
  const W = 640;
  const H = 360;
  const L = 60;
  const R = 20;
  const Tp = 40;
  const Bm = 40;
  if (curve.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><text x="20" y="30">no data</text></svg>\n`;
  const maxStep = Math.max(...curve.map((p) => p.step), 1);
  const losses = curve.map((p) => p.loss);
  const lo = Math.floor(Math.min(...losses));
  const hi = Math.ceil(Math.max(...losses));
  const x = (s: number) => L + ((W - L - R) * s) / maxStep;
  const y = (v: number) => Tp + ((H - Tp - Bm) * (hi - v)) / Math.max(hi - lo, 1e-9);
  const pts = curve.map((p) => `${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(' ');
  const yTicks: string[] = [];
  for (let v = lo; v <= hi; v++) {
    yTicks.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/><text x="${L - 8}" y="${y(v) + 4}" text-anchor="end" font-size="11">${v}</text>`);
  }
  const xTicks: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const s = Math.round((maxStep * i) / 4);
    xTicks.push(`<text x="${x(s)}" y="${H - Bm + 16}" text-anchor="middle" font-size="11">${s}</text>`);
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${title}</text>`,
    ...yTicks,
    ...xTicks,
    `<text x="${W / 2}" y="${H - 6}" text-anchor="middle" font-size="12">step</text>`,
    `<text x="14" y="${H / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 14 ${H / 2})">MLM loss (mean of last 50 steps)</text>`,
    `<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="${pts}"/>`,
    '</svg>',
    '',
  ].join('\n');
}
