/**
 * One continual-learning round of the trainer sidecar: fine-tune the model in service (the
 * champion) on clinician feedback with RecAdam, and score champion and challenger on the frozen
 * gold set and the feedback holdout.
 *
 * Unlike `fineTune` (which starts from a backbone and gives the task a new classification head),
 * a round continues from a fine-tuned NER artifact: every weight, the head included, starts at the
 * champion's value and theta* is the champion's weights, so RecAdam's penalty pulls the whole model
 * back towards the model that earned its place. Examples, batches, the learning-rate schedule, the
 * optimizer and evaluation are src/train's own (prepareExamples, epochBatches, warmupLinear, RecAdam,
 * evaluateModel); only the short step loop is here.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import cliProgress from 'cli-progress';
import { formatModelVersion } from '../domain/index.ts';
import { ConfigError, ModelError } from '../errors/index.ts';
import { CONFIG_FILE, parseArtifactConfig, writeArtifact } from '../model/artifact.ts';
import { CRF_WEIGHT_NAMES } from '../model/decode.ts';
import type { CrfScores } from '../model/decode.ts';
import type { BertModel } from '../model/bert.ts';
import type { BertTokenizer } from '../model/tokenizer.ts';
import type { ArtifactConfig, KnowledgeOptions, ModelArtifact, WeightMap } from '../model/types.ts';
import type { NerSentence } from './datasets.ts';
import { buildInputs, createInjector, disposeInputs, evaluateModel, loadNerModel, prepareExamples } from './evaluate.ts';
import type { InjectorSetup, KnowledgeSetup, PreparedSet } from './evaluate.ts';
import { epochBatches, warmupLinear } from './finetune.ts';
import { prf, spansFromBio } from './metrics.ts';
import type { NerEvaluation, Prf } from './metrics.ts';
import type { SetScores } from './promotion.ts';
import { RecAdam } from './recadam.ts';
import type { AnnealKind } from './recadam.ts';

export interface ContinualOptions {
  learningRate: number;
  gamma: number;
  anneal: AnnealKind;
  k: number;
  t0: number;
  /** Passes over the round's examples, at most. */
  epochs: number;
  maxSteps: number;
  /** Training time limit (evaluation excluded). */
  maxMinutes: number;
  batchTokens: number;
  batchSize: number;
  seed: number;
  /** Fraction of the planned steps with linear warm-up (default 0.1). */
  warmup?: number;
  /** Decoupled weight decay (default 0.01). */
  weightDecay?: number;
  /** Global gradient-norm clip (default 1; 0 = off). */
  clipNorm?: number;
  /** Default 0.1. */
  dropout?: number;
  /**
   * RecAdam's schedule scaled to the round (overrides k and t0): t0 = t0Fraction x the round's
   * planned steps, k = span / planned steps, so lambda rises from sigmoid(-span x t0Fraction) to
   * sigmoid(span x (1 - t0Fraction)) whatever the round's length. A fixed t0 in steps keeps a short
   * round at the champion and lets a long one forget it.
   */
  annealRound?: { t0Fraction: number; span: number };
}

export interface GoldSet {
  /** For logs and the artifact's record (e.g. the file name). */
  name: string;
  sentences: readonly NerSentence[];
}

export interface ContinualTrainerOptions {
  tokenizer: BertTokenizer;
  /** Graph file for knowledge injection (in memory); null: only models trained without knowledge can be continued. */
  kgFile: string | null;
  gold: GoldSet;
  /** Structured events (no document text is ever passed). */
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

export interface RoundInput {
  championDir: string;
  /** Feedback sentences (in a fixed order: the round is deterministic given its inputs). */
  train: readonly NerSentence[];
  /** Sentences of the original training data mixed in so the model does not forget (not scored). */
  replay?: readonly NerSentence[];
  holdout: readonly NerSentence[];
  options: ContinualOptions;
  signal?: AbortSignal;
  /** Progress bar on stderr. */
  progress?: boolean;
}

export type RoundStatus = 'completed' | 'step-limit' | 'time-limit' | 'interrupted';

export interface RoundResult {
  status: RoundStatus;
  champion: { dir: string; version: string; config: ArtifactConfig };
  steps: number;
  /** Examples (sentence windows) trained on, counting repeats over epochs. */
  trainedExamples: number;
  trainSentences: number;
  trainSeconds: number;
  /** Mean training loss over the round's last epoch (or the steps run). */
  meanLoss: number;
  /** ||theta - theta*||_1 at the end: how far the challenger moved from the champion. */
  distanceL1: number;
  /** ||theta*||_1 of the champion: distanceL1 / this is how far the round moved, relatively. */
  championL1: number;
  /** Replay sentences trained on beside the feedback. */
  replaySentences: number;
  /** RecAdam's k and t0 as used (after scaling to the round) and the planned steps. */
  schedule: { k: number; t0: number; planned: number };
  gold: SetScores;
  /** Gold-set strict F1 per entity type, champion and challenger. */
  goldTypes: Record<string, { champion: Prf; challenger: Prf }>;
  /** Per gold entity surface: mentions, and how many each model found exactly (span and type). */
  goldSurfaces: SurfaceScore[];
  holdout: SetScores;
  /** The challenger's weights; null when the round was interrupted. */
  challenger: WeightMap | null;
  /** Knowledge options the challenger was trained with (as the artifact records them). */
  knowledge: KnowledgeOptions;
}

const EMPTY: Prf = prf(0, 0, 0);

export interface SurfaceScore {
  surface: string;
  mentions: number;
  champion: number;
  challenger: number;
}

/** Per gold surface (the entity's text): mentions and exact matches, for the gate's per-surface check. */
export function surfaceHits(sentences: readonly NerSentence[], predicted: readonly string[][]): Map<string, { mentions: number; found: number }> {
  const out = new Map<string, { mentions: number; found: number }>();
  sentences.forEach((s, i) => {
    const found = new Set(spansFromBio(predicted[i]).map((e) => `${e.start}:${e.end}:${e.type}`));
    for (const e of spansFromBio(s.labels)) {
      const surface = s.chars.slice(e.start, e.end).join('');
      const h = out.get(surface) ?? { mentions: 0, found: 0 };
      h.mentions++;
      if (found.has(`${e.start}:${e.end}:${e.type}`)) h.found++;
      out.set(surface, h);
    }
  });
  return out;
}

function weightsL1(weights: WeightMap): number {
  let sum = 0;
  for (const w of weights.values()) {
    const data = w.data as ArrayLike<number>;
    for (let i = 0; i < data.length; i++) sum += Math.abs(data[i]);
  }
  return sum;
}

/** Entity types of a BIO label list, in label order. */
function typesOf(labels: readonly string[]): string[] {
  return labels.filter((l) => l.startsWith('B-')).map((l) => l.slice(2));
}

export class ContinualTrainer {
  private injectors = new Map<string, Promise<InjectorSetup>>();
  /** Champion scores on the gold set, by champion version and knowledge setup: the gold set is frozen. */
  private goldScores = new Map<string, { evaluation: NerEvaluation; predicted: string[][]; sentences: number }>();
  private goldSets = new Map<string, PreparedSet>();
  private readonly log: NonNullable<ContinualTrainerOptions['log']>;

  constructor(private readonly o: ContinualTrainerOptions) {
    this.log = o.log ?? (() => undefined);
  }

  /** Entity types of an artifact's labels (reads its config only; the round verifies the whole artifact). */
  static async artifactTypes(dir: string): Promise<string[]> {
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(path.join(dir, CONFIG_FILE), 'utf8'));
    } catch (error) {
      throw new ModelError(`artifact ${dir}: cannot read ${CONFIG_FILE}: ${(error as Error).message}`, { cause: error });
    }
    const config = parseArtifactConfig(raw, `artifact ${dir}: ${CONFIG_FILE}`);
    if (config.labels.length === 0) throw new ModelError(`artifact ${dir} has no token-classification head; the trainer continues a fine-tuned NER model`);
    return typesOf(config.labels);
  }

  private injector(setup: KnowledgeSetup): Promise<InjectorSetup> {
    const key = JSON.stringify(setup);
    let p = this.injectors.get(key);
    if (!p) {
      p = createInjector(this.o.tokenizer, setup);
      p.catch(() => this.injectors.delete(key));
      this.injectors.set(key, p);
    }
    return p;
  }

  async runRound(input: RoundInput): Promise<RoundResult> {
    const { options: o } = input;
    const loaded = await loadNerModel(input.championDir, this.o.tokenizer);
    const { artifact, model, labels, types } = loaded;
    const championVersion = formatModelVersion(artifact.version);
    let optimizer: RecAdam | null = null;
    try {
      if (loaded.knowledge.enabled && !this.o.kgFile) {
        throw new ConfigError([`the model in service (${championVersion}) was trained with knowledge injection; give the graph file (--kg-file / RMBERT_KG_FILE)`]);
      }
      const setup: KnowledgeSetup = { ...loaded.knowledge, ...(loaded.knowledge.enabled ? { kgFile: this.o.kgFile! } : {}) };
      const { injector, kgVersion } = await this.injector(setup);
      const trainedOn = artifact.config.knowledge.kgVersion;
      if (loaded.knowledge.enabled && trainedOn && kgVersion && trainedOn !== kgVersion) {
        this.log('the graph file differs from the one the model in service was trained with', { championKgVersion: trainedOn.slice(0, 12), kgVersion: kgVersion.slice(0, 12) });
      }
      const unknownGold = [...new Set(this.o.gold.sentences.flatMap((s) => s.labels.filter((l) => l !== 'O').map((l) => l.slice(2))))].filter((t) => !types.includes(t));
      if (unknownGold.length > 0) {
        throw new ConfigError([`the gold set ${this.o.gold.name} has entity types the model in service does not know: ${unknownGold.join(', ')} (model types: ${types.join(', ')})`]);
      }

      const setKey = `${JSON.stringify(setup)}|${labels.join(',')}`;
      let goldSet = this.goldSets.get(setKey);
      if (!goldSet) {
        goldSet = await prepareExamples(this.o.gold.sentences, injector, labels);
        this.goldSets.set(setKey, goldSet);
      }
      const replay = input.replay ?? [];
      const trainSet = await prepareExamples([...input.train, ...replay], injector, labels);
      const holdoutSet = await prepareExamples(input.holdout, injector, labels);
      if (trainSet.examples.length === 0) throw new ConfigError(['the round has no training examples']);
      const evaluate = (set: PreparedSet) => evaluateModel(model, labels, set, types, { padId: this.o.tokenizer.padId, crf: loaded.crf });
      const score = async (set: PreparedSet): Promise<Prf> => (set.sentences.length === 0 ? EMPTY : (await evaluate(set)).evaluation.strict);

      // The champion, scored before any step (the model below becomes the challenger in place).
      const goldKey = `${championVersion}|${setKey}`;
      let championGold = this.goldScores.get(goldKey);
      if (!championGold) {
        championGold = { ...(await evaluate(goldSet)), sentences: goldSet.sentences.length };
        this.goldScores.set(goldKey, championGold);
      }
      const championHoldout = await score(holdoutSet);

      const result = await this.train(model, trainSet, labels, o, input, loaded.crf);
      optimizer = result.optimizer;
      const status = result.status;
      const challengerEval = status === 'interrupted' ? null : await evaluate(goldSet);
      const challengerGold = challengerEval?.evaluation.strict ?? EMPTY;
      const challengerHoldout = status === 'interrupted' ? EMPTY : await score(holdoutSet);
      const goldTypes: RoundResult['goldTypes'] = {};
      for (const t of types) goldTypes[t] = { champion: championGold.evaluation.perType[t] ?? EMPTY, challenger: challengerEval?.evaluation.perType[t] ?? EMPTY };
      const before = surfaceHits(goldSet.sentences, championGold.predicted);
      const after = challengerEval ? surfaceHits(goldSet.sentences, challengerEval.predicted) : new Map<string, { found: number }>();
      const goldSurfaces = [...before].map(([surface, h]) => ({ surface, mentions: h.mentions, champion: h.found, challenger: after.get(surface)?.found ?? 0 }));
      return {
        status,
        champion: { dir: artifact.dir, version: championVersion, config: artifact.config },
        steps: optimizer.step,
        trainedExamples: result.examples,
        trainSentences: input.train.length,
        trainSeconds: result.seconds,
        meanLoss: result.meanLoss,
        distanceL1: await optimizer.distanceL1(),
        championL1: weightsL1(artifact.weights),
        replaySentences: replay.length,
        schedule: result.schedule,
        gold: { champion: championGold.evaluation.strict, challenger: challengerGold, sentences: championGold.sentences },
        goldTypes,
        goldSurfaces,
        holdout: { champion: championHoldout, challenger: challengerHoldout, sentences: holdoutSet.sentences.length },
        // A CRF output layer is not trained here (the step below is cross-entropy on the emissions): the
        // challenger keeps the champion's transition scores, so both decode the same way.
        challenger: status === 'interrupted' ? null : withCrfOf(artifact.weights, await model.toWeightMap()),
        knowledge: { ...artifact.config.knowledge, ...(loaded.knowledge.enabled && kgVersion ? { kgVersion } : {}) },
      };
    } finally {
      optimizer?.dispose();
      model.dispose();
    }
  }

  private async train(
    model: BertModel,
    set: PreparedSet,
    labels: readonly string[],
    o: ContinualOptions,
    input: RoundInput,
    crf: CrfScores | null,
  ): Promise<{ optimizer: RecAdam; status: RoundStatus; examples: number; seconds: number; meanLoss: number; schedule: RoundResult['schedule'] }> {
    model.dropoutRate = o.dropout ?? 0.1;
    model.dropoutSeed = o.seed;
    const perEpoch = epochBatches(set, 0, o.seed, o.batchTokens, o.batchSize).length;
    const planned = Math.max(1, Math.min(o.maxSteps, perEpoch * o.epochs));
    const schedule = warmupLinear(o.learningRate, Math.round((o.warmup ?? 0.1) * planned), planned);
    const k = o.annealRound ? o.annealRound.span / planned : o.k;
    const t0 = o.annealRound ? o.annealRound.t0Fraction * planned : o.t0;
    // Every weight is anchored: theta* is the whole champion, its classification head included.
    const optimizer = new RecAdam(model.variables, {
      learningRate: schedule,
      gamma: o.gamma,
      anneal: { kind: o.anneal, k, t0 },
      weightDecay: o.weightDecay ?? 0.01,
      isPretrained: () => true,
    });
    const clipNorm = o.clipNorm ?? 1;
    const variableList = [...model.variables.values()];
    const L = labels.length;
    const padId = this.o.tokenizer.padId;
    const crfLayer = crf ? crfConstants(crf, labels) : null;

    const step = async (batch: number[]): Promise<number> => {
      const trees = batch.map((i) => set.examples[i].tree);
      const { inputs, T } = buildInputs(trees, padId);
      const B = trees.length;
      const onehot = new Float32Array(B * T * L);
      let count = 0;
      batch.forEach((i, b) => {
        const ids = set.examples[i].labelIds;
        for (let h = 0; h < ids.length; h++) {
          if (ids[h] < 0) continue;
          onehot[(b * T + h) * L + ids[h]] = 1;
          count++;
        }
      });
      const target = tf.tensor2d(onehot, [B * T, L]);
      // A model with a CRF output layer decodes emissions + its transitions; it is trained here on the
      // CRF's own likelihood (transitions fixed), as it was trained. Cross-entropy on the emissions alone
      // moves them against the transitions and cost the gold set about a point even at a learning rate
      // too small to learn anything (benchmarks/results/learning-loop-sweep.json).
      const crfBatch = crfLayer ? crfBatchTensors(batch.map((i) => set.examples[i].labelIds), T, L) : null;
      const { value, grads } = tf.variableGrads(
        () =>
          tf.tidy(() => {
            if (crfLayer && crfBatch) {
              const logits3 = tf.reshape(model.tokenLogits(inputs, true), [B, T, L]) as tf.Tensor3D;
              return tf.div(crfNegLogLikelihood(logits3, crfBatch, crfLayer), Math.max(1, count)) as tf.Scalar;
            }
            const logits = tf.reshape(model.tokenLogits(inputs, true), [B * T, L]);
            return tf.div(tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), target))), Math.max(1, count)) as tf.Scalar;
          }),
        variableList,
      );
      crfBatch?.dispose();
      disposeInputs(inputs);
      target.dispose();
      const named = new Map<string, tf.Tensor>();
      for (const [vname, g] of Object.entries(grads)) named.set(model.hfNameOf.get(vname)!, g);
      let applied = named;
      if (clipNorm > 0) {
        const scale = tf.tidy(() => tf.minimum(1, tf.div(clipNorm, tf.add(tf.sqrt(tf.addN([...named.values()].map((g) => tf.sum(tf.square(g))))), 1e-6))));
        applied = new Map([...named].map(([n, g]) => [n, tf.mul(g, scale)]));
        scale.dispose();
      }
      optimizer.applyGradients(applied);
      model.weightsChanged();
      const loss = (await value.data())[0];
      for (const g of named.values()) g.dispose();
      if (applied !== named) for (const g of applied.values()) g.dispose();
      value.dispose();
      return loss;
    };

    const bar = input.progress
      ? new cliProgress.SingleBar(
          { stream: process.stderr, format: 'round |{bar}| {value}/{total} steps | loss {loss}', hideCursor: true, noTTYOutput: true, notTTYSchedule: 15_000 },
          cliProgress.Presets.shades_classic,
        )
      : null;
    bar?.start(planned, 0, { loss: '-' });
    const started = performance.now();
    const limitMs = o.maxMinutes * 60_000;
    let status: RoundStatus = 'completed';
    let examples = 0;
    let lossSum = 0;
    let lossCount = 0;
    try {
      outer: for (let epoch = 0; epoch < o.epochs; epoch++) {
        lossSum = 0;
        lossCount = 0;
        for (const batch of epochBatches(set, epoch, o.seed, o.batchTokens, o.batchSize)) {
          if (input.signal?.aborted) {
            status = 'interrupted';
            break outer;
          }
          if (optimizer.step >= o.maxSteps) {
            status = 'step-limit';
            break outer;
          }
          if (performance.now() - started > limitMs) {
            status = 'time-limit';
            break outer;
          }
          const loss = await step(batch);
          if (!Number.isFinite(loss)) throw new ModelError(`training diverged at step ${optimizer.step}: loss ${loss} (lower the learning rate or gamma)`);
          examples += batch.length;
          lossSum += loss;
          lossCount++;
          bar?.update(optimizer.step, { loss: loss.toFixed(4) });
        }
      }
    } catch (error) {
      optimizer.dispose();
      throw error;
    } finally {
      bar?.stop();
      crfLayer?.dispose();
    }
    return { optimizer, status, examples, seconds: (performance.now() - started) / 1000, meanLoss: lossCount ? lossSum / lossCount : NaN, schedule: { k, t0, planned } };
  }

  /**
   * Writes a challenger as a new artifact `<modelDir>/<name>`: the champion's config with the new
   * name, the knowledge options it was trained with and a record of the round.
   */
  async writeChallenger(result: RoundResult, modelDir: string, name: string, training: Record<string, unknown>): Promise<ModelArtifact> {
    if (!result.challenger) throw new ModelError('the round was interrupted; there is no challenger to write');
    const config: ArtifactConfig = {
      ...result.champion.config,
      name,
      knowledge: result.knowledge,
      training: { task: 'ner-feedback', parent: result.champion.version, parentTraining: result.champion.config.training ?? null, ...training },
      createdAt: new Date().toISOString(),
    };
    return writeArtifact(path.join(modelDir, name), config, result.challenger, { dtype: 'F32' });
  }
}

interface CrfConstants {
  /** transitions[prev, next] with BIO-invalid moves at -1e4, as the decoder forbids them. */
  transitions: tf.Tensor3D;
  start: tf.Tensor2D;
  end: tf.Tensor2D;
  trans: Float64Array;
  startArr: Float64Array;
  endArr: Float64Array;
  dispose(): void;
}

const FORBIDDEN = -1e4;

export function crfConstants(crf: CrfScores, labels: readonly string[]): CrfConstants {
  const L = labels.length;
  const parsed = labels.map((l) => (l === 'O' ? { kind: 'O', type: '' } : { kind: l[0], type: l.slice(2) }));
  const trans = new Float64Array(L * L);
  const startArr = new Float64Array(L);
  for (let next = 0; next < L; next++) {
    const n = parsed[next];
    startArr[next] = crf.start[next] + (n.kind === 'I' ? FORBIDDEN : 0);
    for (let prev = 0; prev < L; prev++) {
      const p = parsed[prev];
      const ok = n.kind !== 'I' || (p.kind !== 'O' && p.type === n.type);
      trans[prev * L + next] = crf.transitions[prev * L + next] + (ok ? 0 : FORBIDDEN);
    }
  }
  const endArr = Float64Array.from(crf.end);
  const transitions = tf.tensor3d(Float32Array.from(trans), [1, L, L]);
  const start = tf.tensor2d(Float32Array.from(startArr), [1, L]);
  const end = tf.tensor2d(Float32Array.from(endArr), [1, L]);
  return { transitions, start, end, trans, startArr, endArr, dispose: () => tf.dispose([transitions, start, end]) };
}

interface CrfBatch {
  /** [B, P, T]: picks each example's labelled positions out of its T token rows. */
  select: tf.Tensor3D;
  /** [B, P, L]: the gold tag at each labelled position (0 beyond the example's end). */
  gold: tf.Tensor3D;
  /** Per labelled step p >= 1, [B, 1]: 1 where the example has a position p. */
  steps: tf.Tensor2D[];
  /** Gold path's transition score per example (constant: transitions are not trained). */
  goldTransitions: number;
  labelIds: Int32Array[];
  P: number;
  dispose(): void;
}

export function crfBatchTensors(labelIds: readonly Int32Array[] | readonly number[][], T: number, L: number): CrfBatch {
  const positions = labelIds.map((ids) => {
    const out: number[] = [];
    for (let h = 0; h < ids.length; h++) if (ids[h] >= 0) out.push(h);
    return out;
  });
  const B = labelIds.length;
  const P = Math.max(1, ...positions.map((p) => p.length));
  const select = new Float32Array(B * P * T);
  const gold = new Float32Array(B * P * L);
  const stepMasks: Float32Array[] = Array.from({ length: P }, () => new Float32Array(B));
  positions.forEach((pos, b) => {
    pos.forEach((h, p) => {
      select[(b * P + p) * T + h] = 1;
      gold[(b * P + p) * L + labelIds[b][h]] = 1;
      stepMasks[p][b] = 1;
    });
  });
  const selectT = tf.tensor3d(select, [B, P, T]);
  const goldT = tf.tensor3d(gold, [B, P, L]);
  const steps = stepMasks.map((m) => tf.tensor2d(m, [B, 1]));
  return {
    select: selectT,
    gold: goldT,
    steps,
    goldTransitions: 0,
    labelIds: labelIds.map((x) => Int32Array.from(x)),
    P,
    dispose: () => tf.dispose([selectT, goldT, ...steps]),
  };
}

/**
 * Sum over the batch of the CRF negative log-likelihood: log Z (forward algorithm over each example's
 * labelled positions) minus the gold path's score. Emissions are the raw logits; transitions fixed.
 */
export function crfNegLogLikelihood(logits: tf.Tensor3D, batch: CrfBatch, c: CrfConstants): tf.Scalar {
  const emissions = tf.matMul(batch.select, logits); // [B, P, L]
  const B = logits.shape[0];
  const L = logits.shape[2];
  const at = (p: number) => tf.reshape(tf.slice(emissions, [0, p, 0], [B, 1, L]), [B, L]);
  let alpha = tf.add(at(0), c.start) as tf.Tensor2D;
  for (let p = 1; p < batch.P; p++) {
    const scores = tf.add(tf.reshape(alpha, [B, L, 1]), c.transitions); // [B, L(prev), L(next)]
    const next = tf.add(tf.logSumExp(scores, 1), at(p));
    const m = batch.steps[p];
    alpha = tf.add(tf.mul(next, m), tf.mul(alpha, tf.sub(1, m))) as tf.Tensor2D;
  }
  const logZ = tf.logSumExp(tf.add(alpha, c.end), 1); // [B]
  const goldEmissions = tf.sum(tf.mul(emissions, batch.gold));
  let goldTransitions = 0;
  for (const ids of batch.labelIds) {
    const path: number[] = [];
    for (const id of ids) if (id >= 0) path.push(id);
    if (path.length === 0) continue;
    goldTransitions += c.startArr[path[0]] + c.endArr[path[path.length - 1]];
    for (let i = 1; i < path.length; i++) goldTransitions += c.trans[path[i - 1] * L + path[i]];
  }
  return tf.sub(tf.sub(tf.sum(logZ), goldEmissions), goldTransitions) as tf.Scalar;
}

/** `weights` plus the CRF layer of `source`, when it has one. */
function withCrfOf(source: WeightMap, weights: WeightMap): WeightMap {
  for (const name of CRF_WEIGHT_NAMES) {
    const w = source.get(name);
    if (w) weights.set(name, w);
  }
  return weights;
}
