/**
 * The BERT encoder in TensorFlow.js (tfjs-core ops only): word + soft-position + segment embeddings,
 * LayerNorm, L layers of multi-head self-attention with the additive visibility mask [B, T, T] (the same
 * mask in every layer, broadcast over heads), exact (erf) GELU feed-forward, a token-classification head
 * and a masked-LM head whose decoder is tied to the word embeddings.
 *
 * Layout. `variables` are keyed by the Hugging Face names of src/model/types.ts. Linear weights are held
 * transposed, [in, out], because that is the layout a plain x @ W matmul wants (HF stores [out, in]);
 * `toWeightMap()` exports HF layout again. Embedding tables, LayerNorm parameters and biases keep HF layout.
 *
 * Speed on tfjs-wasm (the CPU training backend here), measured: a transposed matMul is far slower than a
 * plain one, so keys are transposed explicitly and — on wasm — gradients go through custom-gradient ops
 * whose backward passes transpose explicitly, and an embedding lookup whose backward pass is a
 * scatter-add (wasm has no UnsortedSegmentSum, which tf.gather's gradient needs). Batched matMul runs at
 * ~1.5 GFLOP/s against ~20 for a 2-D one, but splitting into per-(example, head) 2-D blocks is worse
 * for batches: wasm's slice/unstack copy the whole input tensor for every piece, so the cost grows with
 * the square of the batch. Attention therefore loops over heads for a single sentence and uses one
 * batched matMul otherwise. wasm's gather is slow per element (~70 ns), so inference sums the three
 * embeddings in JavaScript from cached copies of the tables.
 */
import * as tf from '@tensorflow/tfjs-core';
// Gradients are registered separately from the ops in tfjs-core; training needs them.
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { ModelError } from '../errors/index.ts';
import type { BertConfig, WeightMap } from './types.ts';

export interface BertInputs {
  /** [B, T] int32 token ids. */
  tokenIds: tf.Tensor2D;
  /** [B, T] int32 soft positions (index into the position embeddings). */
  softPositions: tf.Tensor2D;
  /** [B, T] int32 segment ids. */
  segmentIds: tf.Tensor2D;
  /** [B, T, T] float32 additive visibility mask: 0 visible, MASK_NEGATIVE not. */
  mask: tf.Tensor3D;
}

export interface BertInitOptions {
  /** Size of the token-classification head; 0 or absent for none. */
  numLabels?: number;
  seed: number;
  /** Create the masked-LM head (cls.predictions.*). */
  mlmHead?: boolean;
  /** Dropout rate used when `training` is true (hidden states and attention probabilities). Default 0.1. */
  dropout?: number;
}

export interface BertLoadOptions {
  /** Seed for a classification head that the weights do not contain (fine-tuning from a backbone). */
  seed?: number;
  dropout?: number;
  /** Keep the MLM head if the weights have one (default true). */
  mlmHead?: boolean;
}

/**
 * How the forward pass computes attention and gradients; a property of each model (BertModel.kernels),
 * 'auto' everywhere unless a test or benchmark pins a form to compare.
 */
export interface KernelOptions {
  /**
   * 'auto': on the wasm and cpu backends. Explicit-transpose matMuls (wasm's transposed matMul is ~50x
   * slower than plain) and a scatter-add gradient for gathers: tf.gather's own gradient runs
   * UnsortedSegmentSum, which wasm lacks and the pure-JS cpu backend computes one vocabulary row at a time.
   */
  customGradients: 'auto' | 'on' | 'off';
  /** 'auto': per-head 2-D loop for one sentence, one batched matMul for more. */
  attention: 'auto' | 'loop' | 'batched';
  /** 'auto': sum embeddings in JavaScript for inference on wasm and cpu; 'gather': always tf.gather. */
  inferenceEmbeddings: 'auto' | 'js' | 'gather';
}
export const DEFAULT_KERNELS: Readonly<KernelOptions> = Object.freeze({ customGradients: 'auto', attention: 'auto', inferenceEmbeddings: 'auto' });

const INIT_STD = 0.02;

/** True for the HF names of Linear weights, which HF stores [out, in] and the model holds [in, out]. */
export function isLinearWeight(name: string): boolean {
  return name.endsWith('.weight') && !name.includes('embeddings') && !name.includes('LayerNorm');
}

/** x @ w whose gradient uses explicit transposes (wasm's transposed matMul is ~50x slower than plain). */
export function matMulExplicitGrad(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    save([a, b]);
    return {
      value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sa, sb] = saved as tf.Tensor2D[];
        return [tf.matMul(dy as tf.Tensor2D, tf.transpose(sb)), tf.matMul(tf.transpose(sa), dy as tf.Tensor2D)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x, w) as tf.Tensor2D;
}

/**
 * table[ids] for a 2-D table and 1-D int32 ids, with a scatter-add gradient (scatterND sums duplicate
 * indices), because tf.gather's own gradient needs UnsortedSegmentSum, which wasm lacks.
 */
export function gatherRowsScatterGrad(table: tf.Tensor2D, ids: tf.Tensor1D): tf.Tensor2D {
  const shape = table.shape;
  const f = tf.customGrad(((t: tf.Tensor, save: tf.GradSaveFunc) => {
    save([]);
    return {
      value: tf.gather(t, ids),
      gradFunc: (dy: tf.Tensor) => tf.scatterND(tf.expandDims(ids, 1), dy, shape),
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(table) as tf.Tensor2D;
}

/** Batched a @ b ([n, p, q] x [n, q, r]) whose gradient uses explicit transposes. */
export function batchMatMulExplicitGrad(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  const f = tf.customGrad(((x: tf.Tensor, y: tf.Tensor, save: tf.GradSaveFunc) => {
    save([x, y]);
    return {
      value: tf.matMul(x as tf.Tensor3D, y as tf.Tensor3D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sy] = saved as tf.Tensor3D[];
        return [
          tf.matMul(dy as tf.Tensor3D, tf.transpose(sy, [0, 2, 1])),
          tf.matMul(tf.transpose(sx, [0, 2, 1]), dy as tf.Tensor3D),
        ];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(a, b) as tf.Tensor3D;
}

function batchMatMul(a: tf.Tensor3D, b: tf.Tensor3D, explicitGrad: boolean): tf.Tensor3D {
  return explicitGrad ? batchMatMulExplicitGrad(a, b) : tf.matMul(a, b);
}

function matMul(x: tf.Tensor2D, w: tf.Tensor2D, explicitGrad: boolean): tf.Tensor2D {
  return explicitGrad ? matMulExplicitGrad(x, w) : tf.matMul(x, w);
}

function gatherRows(table: tf.Tensor2D, ids: tf.Tensor1D, explicitGrad: boolean): tf.Tensor2D {
  return explicitGrad ? gatherRowsScatterGrad(table, ids) : tf.gather(table, ids);
}

/** Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)). */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

function layerNorm(x: tf.Tensor2D, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor2D {
  const mean = tf.mean(x, -1, true);
  const centred = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centred), -1, true);
  return tf.add(tf.mul(tf.mul(centred, tf.rsqrt(tf.add(variance, eps))), gamma), beta);
}

function layerNames(i: number) {
  const p = `bert.encoder.layer.${i}`;
  return {
    q: `${p}.attention.self.query`,
    k: `${p}.attention.self.key`,
    v: `${p}.attention.self.value`,
    ao: `${p}.attention.output.dense`,
    aln: `${p}.attention.output.LayerNorm`,
    inter: `${p}.intermediate.dense`,
    out: `${p}.output.dense`,
    oln: `${p}.output.LayerNorm`,
  };
}

/** HF names and HF shapes of every parameter of a model with this config. */
export function parameterShapes(config: BertConfig, numLabels: number, mlmHead: boolean): Map<string, number[]> {
  const { vocabSize: V, hiddenSize: H, intermediateSize: I } = config;
  const shapes = new Map<string, number[]>();
  shapes.set('bert.embeddings.word_embeddings.weight', [V, H]);
  shapes.set('bert.embeddings.position_embeddings.weight', [config.maxPositions, H]);
  shapes.set('bert.embeddings.token_type_embeddings.weight', [config.typeVocabSize, H]);
  shapes.set('bert.embeddings.LayerNorm.weight', [H]);
  shapes.set('bert.embeddings.LayerNorm.bias', [H]);
  for (let i = 0; i < config.numLayers; i++) {
    const n = layerNames(i);
    for (const lin of [n.q, n.k, n.v, n.ao]) {
      shapes.set(`${lin}.weight`, [H, H]);
      shapes.set(`${lin}.bias`, [H]);
    }
    shapes.set(`${n.aln}.weight`, [H]);
    shapes.set(`${n.aln}.bias`, [H]);
    shapes.set(`${n.inter}.weight`, [I, H]);
    shapes.set(`${n.inter}.bias`, [I]);
    shapes.set(`${n.out}.weight`, [H, I]);
    shapes.set(`${n.out}.bias`, [H]);
    shapes.set(`${n.oln}.weight`, [H]);
    shapes.set(`${n.oln}.bias`, [H]);
  }
  if (numLabels > 0) {
    shapes.set('classifier.weight', [numLabels, H]);
    shapes.set('classifier.bias', [numLabels]);
  }
  if (mlmHead) {
    shapes.set('cls.predictions.transform.dense.weight', [H, H]);
    shapes.set('cls.predictions.transform.dense.bias', [H]);
    shapes.set('cls.predictions.transform.LayerNorm.weight', [H]);
    shapes.set('cls.predictions.transform.LayerNorm.bias', [H]);
    shapes.set('cls.predictions.bias', [V]);
  }
  return shapes;
}

function validateConfig(config: BertConfig): void {
  const problems: string[] = [];
  for (const k of ['vocabSize', 'hiddenSize', 'numLayers', 'numHeads', 'intermediateSize', 'maxPositions', 'typeVocabSize'] as const) {
    if (!Number.isInteger(config[k]) || config[k] <= 0) problems.push(`${k} must be a positive integer (got ${config[k]})`);
  }
  if (config.hiddenSize % config.numHeads !== 0) problems.push(`hiddenSize ${config.hiddenSize} is not divisible by numHeads ${config.numHeads}`);
  if (!(config.layerNormEps > 0)) problems.push(`layerNormEps must be > 0 (got ${config.layerNormEps})`);
  if (problems.length) throw new ModelError(`invalid BERT config: ${problems.join('; ')}`);
}

export class BertModel {
  readonly config: BertConfig;
  readonly numLabels: number;
  readonly hasMlmHead: boolean;
  /**
   * HF name -> variable; Linear weights held [in, out] (see isLinearWeight). The tf variables themselves
   * get tfjs's unique auto names (several models may live in one process), so gradient maps from
   * tf.variableGrads are keyed by those; `hfNameOf` translates.
   */
  readonly variables: Map<string, tf.Variable>;
  /** tf variable name -> HF name. */
  readonly hfNameOf: Map<string, string>;
  dropoutRate: number;
  /** Seed of the dropout masks; advances with every mask so a resumed run can continue the sequence. */
  dropoutSeed: number;
  /** How this model's forward pass computes attention and gradients (tests and benchmarks pin forms). */
  kernels: KernelOptions = { ...DEFAULT_KERNELS };
  private inferenceCache: Map<string, tf.Tensor> | null = null;
  private embeddingTables: { word: Float32Array; position: Float32Array; type: Float32Array } | null = null;
  private disposed = false;

  private constructor(config: BertConfig, numLabels: number, variables: Map<string, tf.Variable>, dropout: number, seed: number) {
    this.config = config;
    this.numLabels = numLabels;
    this.variables = variables;
    this.hfNameOf = new Map([...variables].map(([hf, v]) => [v.name, hf]));
    this.hasMlmHead = variables.has('cls.predictions.bias');
    this.dropoutRate = dropout;
    this.dropoutSeed = seed;
  }

  /** A freshly initialised model (BERT's init: N(0, 0.02) truncated weights, zero biases, unit LayerNorm). */
  static init(config: BertConfig, opts: BertInitOptions): BertModel {
    validateConfig(config);
    const numLabels = opts.numLabels ?? 0;
    const variables = new Map<string, tf.Variable>();
    let k = 0;
    for (const [name, shape] of parameterShapes(config, numLabels, opts.mlmHead ?? false)) {
      variables.set(name, tf.variable(initialValue(name, shape, opts.seed * 1000 + k++), true));
    }
    return new BertModel(config, numLabels, variables, opts.dropout ?? 0.1, opts.seed);
  }

  /**
   * A model from HF-layout weights. Missing encoder weights or wrong shapes are a ModelError. With
   * `numLabels` and no classifier weights, a new head is initialised (fine-tuning from a backbone); without
   * `numLabels` the classifier size comes from the weights (0 if none). Other names (pooler, NSP head, an
   * untied decoder copy) are ignored.
   */
  static fromWeights(config: BertConfig, weights: WeightMap, numLabels?: number, opts: BertLoadOptions = {}): BertModel {
    validateConfig(config);
    const stored = weights.get('classifier.weight');
    const labels = numLabels ?? (stored ? stored.shape[0] : 0);
    const mlm = (opts.mlmHead ?? true) && weights.has('cls.predictions.bias');
    const shapes = parameterShapes(config, labels, mlm);
    const problems: string[] = [];
    for (const [name, shape] of shapes) {
      const w = weights.get(name);
      if (!w) {
        if (!name.startsWith('classifier.')) problems.push(`missing ${name}`);
        continue;
      }
      if (w.shape.join(',') !== shape.join(',')) problems.push(`${name} has shape [${w.shape}], expected [${shape}]`);
      else if (w.data.length !== shape.reduce((a, b) => a * b, 1)) problems.push(`${name} has ${w.data.length} values for shape [${shape}]`);
    }
    if (problems.length) throw new ModelError(`weights do not fit the model config: ${problems.slice(0, 10).join('; ')}${problems.length > 10 ? ` (+${problems.length - 10} more)` : ''}`);
    const variables = new Map<string, tf.Variable>();
    let k = 0;
    for (const [name, shape] of shapes) {
      const w = weights.get(name);
      const value = w ? tf.tidy(() => toModelLayout(name, tf.tensor(w.data, w.shape, 'float32'))) : initialValue(name, shape, (opts.seed ?? 0) * 1000 + k);
      variables.set(name, tf.variable(value, true));
      value.dispose();
      k++;
    }
    return new BertModel(config, labels, variables, opts.dropout ?? 0.1, opts.seed ?? 0);
  }

  private v(name: string): tf.Variable {
    const t = this.variables.get(name);
    if (!t) throw new ModelError(`model has no parameter ${name}`);
    return t;
  }

  /**
   * Call after changing variables other than through a training forward pass (e.g. assigning a snapshot),
   * so the inference pass rebuilds its derived weights.
   */
  weightsChanged(): void {
    if (this.inferenceCache) for (const t of this.inferenceCache.values()) t.dispose();
    this.inferenceCache = null;
    this.embeddingTables = null;
  }

  /**
   * Query weights and bias scaled by 1/sqrt(headSize), so inference skips one elementwise op per layer.
   * Rebuilt lazily after any training pass (variables may have changed).
   */
  private scaledQuery(layer: number): [tf.Tensor2D, tf.Tensor1D] {
    if (!this.inferenceCache) this.inferenceCache = new Map();
    const key = layerNames(layer).q;
    let w = this.inferenceCache.get(`${key}.weight`);
    let b = this.inferenceCache.get(`${key}.bias`);
    if (!w || !b) {
      const scale = 1 / Math.sqrt(this.config.hiddenSize / this.config.numHeads);
      w = tf.keep(tf.mul(this.v(`${key}.weight`), scale));
      b = tf.keep(tf.mul(this.v(`${key}.bias`), scale));
      this.inferenceCache.set(`${key}.weight`, w);
      this.inferenceCache.set(`${key}.bias`, b);
    }
    return [w as tf.Tensor2D, b as tf.Tensor1D];
  }

  private dropout<T extends tf.Tensor>(x: T, training: boolean): T {
    if (!training || this.dropoutRate <= 0) return x;
    return tf.dropout(x, this.dropoutRate, undefined, this.dropoutSeed++) as T;
  }

  /** Custom-gradient kernels for a training pass, when this model's kernels and the backend call for them. */
  private explicitGrad(training: boolean): boolean {
    if (!training) return false;
    const mode = this.kernels.customGradients;
    return mode === 'on' || (mode === 'auto' && (tf.getBackend() === 'wasm' || tf.getBackend() === 'cpu'));
  }

  private dense(x: tf.Tensor2D, name: string, training: boolean): tf.Tensor2D {
    return tf.add(matMul(x, this.v(`${name}.weight`) as tf.Tensor2D, this.explicitGrad(training)), this.v(`${name}.bias`));
  }

  /** Final hidden states [B, T, hidden]. */
  encode(inputs: BertInputs, training = false): tf.Tensor3D {
    if (this.disposed) throw new ModelError('model has been disposed');
    if (training) this.weightsChanged();
    const [B, T] = inputs.tokenIds.shape;
    const { hiddenSize: H, layerNormEps: eps } = this.config;
    if (inputs.mask.shape[0] !== B || inputs.mask.shape[1] !== T || inputs.mask.shape[2] !== T) {
      throw new ModelError(`mask shape [${inputs.mask.shape}] does not match token ids [${B}, ${T}]`);
    }
    return tf.tidy(() => {
      const N = B * T;
      const flat = (t: tf.Tensor2D) => tf.reshape(t, [N]) as tf.Tensor1D;
      const jsEmbeddings =
        !training &&
        (this.kernels.inferenceEmbeddings === 'js' ||
          (this.kernels.inferenceEmbeddings === 'auto' && (tf.getBackend() === 'wasm' || tf.getBackend() === 'cpu')));
      let x = jsEmbeddings ? this.embedInJs(inputs, N) : tf.add(
        tf.add(
          gatherRows(this.v('bert.embeddings.word_embeddings.weight') as tf.Tensor2D, flat(inputs.tokenIds), this.explicitGrad(training)),
          gatherRows(this.v('bert.embeddings.position_embeddings.weight') as tf.Tensor2D, flat(inputs.softPositions), this.explicitGrad(training)),
        ),
        gatherRows(this.v('bert.embeddings.token_type_embeddings.weight') as tf.Tensor2D, flat(inputs.segmentIds), this.explicitGrad(training)),
      ) as tf.Tensor2D;
      x = layerNorm(x, this.v('bert.embeddings.LayerNorm.weight'), this.v('bert.embeddings.LayerNorm.bias'), eps);
      x = this.dropout(x, training);
      const mask4 = tf.reshape(inputs.mask, [B, 1, T, T]);
      for (let i = 0; i < this.config.numLayers; i++) x = this.layer(i, x, B, T, mask4, training);
      return tf.reshape(x, [B, T, H]) as tf.Tensor3D;
    });
  }

  /** word + position + segment embeddings [N, hidden], summed in JavaScript from cached table copies. */
  private embedInJs(inputs: BertInputs, N: number): tf.Tensor2D {
    const H = this.config.hiddenSize;
    if (!this.embeddingTables) {
      this.embeddingTables = {
        word: this.v('bert.embeddings.word_embeddings.weight').dataSync() as Float32Array,
        position: this.v('bert.embeddings.position_embeddings.weight').dataSync() as Float32Array,
        type: this.v('bert.embeddings.token_type_embeddings.weight').dataSync() as Float32Array,
      };
    }
    const { word, position, type } = this.embeddingTables;
    const ids = inputs.tokenIds.dataSync();
    const pos = inputs.softPositions.dataSync();
    const seg = inputs.segmentIds.dataSync();
    const { vocabSize, maxPositions, typeVocabSize } = this.config;
    const out = new Float32Array(N * H);
    for (let n = 0; n < N; n++) {
      const w = ids[n];
      const p = pos[n];
      const s = seg[n];
      if (w < 0 || w >= vocabSize || p < 0 || p >= maxPositions || s < 0 || s >= typeVocabSize) {
        throw new ModelError(`input ${n}: token id ${w}, position ${p} or segment ${s} is out of range`);
      }
      const o = n * H;
      const wo = w * H;
      const po = p * H;
      const so = s * H;
      for (let h = 0; h < H; h++) out[o + h] = word[wo + h] + position[po + h] + type[so + h];
    }
    return tf.tensor2d(out, [N, H]);
  }

  private layer(i: number, x: tf.Tensor2D, B: number, T: number, mask4: tf.Tensor, training: boolean): tf.Tensor2D {
    const n = layerNames(i);
    const { hiddenSize: H, numHeads: nh, layerNormEps: eps } = this.config;
    const d = H / nh;
    let q: tf.Tensor2D;
    if (training) q = tf.mul(this.dense(x, n.q, training), 1 / Math.sqrt(d));
    else {
      const [wq, bq] = this.scaledQuery(i);
      q = tf.add(tf.matMul(x, wq), bq);
    }
    const k = this.dense(x, n.k, training);
    const v = this.dense(x, n.v, training);
    const heads = (t: tf.Tensor2D) => tf.reshape(tf.transpose(tf.reshape(t, [B, T, nh, d]), [0, 2, 1, 3]), [B * nh, T, d]) as tf.Tensor3D;
    const qh = heads(q);
    const vh = heads(v);
    // Keys transposed explicitly to [d, T] per head: no transposed matmul anywhere.
    const kt = tf.reshape(tf.transpose(tf.reshape(k, [B, T, nh, d]), [0, 2, 3, 1]), [B * nh, d, T]) as tf.Tensor3D;
    let context: tf.Tensor3D;
    const batched = this.kernels.attention === 'batched' || (this.kernels.attention === 'auto' && B > 1);
    if (batched) {
      const scores = tf.add(tf.reshape(batchMatMul(qh, kt, this.explicitGrad(training)), [B, nh, T, T]), mask4);
      const probs = this.dropout(tf.softmax(scores), training);
      context = batchMatMul(tf.reshape(probs, [B * nh, T, T]) as tf.Tensor3D, vh, this.explicitGrad(training));
    } else {
      const qs = tf.unstack(qh) as tf.Tensor2D[];
      const ks = tf.unstack(kt) as tf.Tensor2D[];
      const vs = tf.unstack(vh) as tf.Tensor2D[];
      const scores = tf.add(tf.reshape(tf.stack(qs.map((qi, j) => matMul(qi, ks[j], this.explicitGrad(training)))), [B, nh, T, T]), mask4);
      const probs = this.dropout(tf.softmax(scores), training);
      const ps = tf.unstack(tf.reshape(probs, [B * nh, T, T])) as tf.Tensor2D[];
      context = tf.stack(ps.map((pi, j) => matMul(pi, vs[j], this.explicitGrad(training)))) as tf.Tensor3D;
    }
    const merged = tf.reshape(tf.transpose(tf.reshape(context, [B, nh, T, d]), [0, 2, 1, 3]), [B * T, H]) as tf.Tensor2D;
    const attnOut = this.dropout(this.dense(merged, n.ao, training), training);
    const h1 = layerNorm(tf.add(attnOut, x), this.v(`${n.aln}.weight`), this.v(`${n.aln}.bias`), eps);
    const inter = gelu(this.dense(h1, n.inter, training));
    const ffOut = this.dropout(this.dense(inter, n.out, training), training);
    return layerNorm(tf.add(ffOut, h1), this.v(`${n.oln}.weight`), this.v(`${n.oln}.bias`), eps);
  }

  /** Token-classification logits [B, T, numLabels]. */
  tokenLogits(inputs: BertInputs, training = false): tf.Tensor3D {
    if (this.numLabels <= 0) throw new ModelError('model has no token-classification head');
    return tf.tidy(() => {
      const hidden = this.encode(inputs, training);
      const [B, T, H] = hidden.shape;
      const flat = this.dropout(tf.reshape(hidden, [B * T, H]) as tf.Tensor2D, training);
      return tf.reshape(this.dense(flat, 'classifier', training), [B, T, this.numLabels]) as tf.Tensor3D;
    });
  }

  /**
   * Masked-LM logits [M, vocabSize] at `positions` (int32 [M], flat indices b * T + t into hidden
   * [B, T, hidden]); computing the head only where tokens were masked saves most of its cost.
   * With `vocabSubset` (int32 ids) the logits are [M, subset size] over those ids only: the softmax is exact
   * over the subset, which is the whole output space when the subset is every id the corpus contains.
   */
  mlmLogits(hidden: tf.Tensor3D, positions: tf.Tensor1D, training = false, vocabSubset?: tf.Tensor1D): tf.Tensor2D {
    if (!this.hasMlmHead) throw new ModelError('model has no masked-LM head');
    return tf.tidy(() => {
      const [B, T, H] = hidden.shape;
      const rows = gatherRows(tf.reshape(hidden, [B * T, H]) as tf.Tensor2D, positions, this.explicitGrad(training));
      const t = layerNorm(
        gelu(this.dense(rows, 'cls.predictions.transform.dense', training)),
        this.v('cls.predictions.transform.LayerNorm.weight'),
        this.v('cls.predictions.transform.LayerNorm.bias'),
        this.config.layerNormEps,
      );
      const words = this.v('bert.embeddings.word_embeddings.weight') as tf.Tensor2D;
      const bias = this.v('cls.predictions.bias') as tf.Tensor1D;
      if (!vocabSubset) return tf.add(matMul(t, tf.transpose(words), this.explicitGrad(training)), bias) as tf.Tensor2D;
      const decoder = tf.transpose(gatherRows(words, vocabSubset, this.explicitGrad(training))) as tf.Tensor2D;
      const subsetBias = tf.reshape(gatherRows(tf.reshape(bias, [-1, 1]) as tf.Tensor2D, vocabSubset, this.explicitGrad(training)), [-1]);
      return tf.add(matMul(t, decoder, this.explicitGrad(training)), subsetBias) as tf.Tensor2D;
    });
  }

  /** Every parameter in HF names and HF layout (Linear weights [out, in]). */
  async toWeightMap(): Promise<WeightMap> {
    const out: WeightMap = new Map();
    for (const [name, variable] of this.variables) {
      const hf = isLinearWeight(name) ? tf.transpose(variable) : variable;
      const data = (await hf.data()) as Float32Array;
      out.set(name, { shape: [...hf.shape], data: new Float32Array(data) });
      if (hf !== variable) hf.dispose();
    }
    return out;
  }

  /** Number of trainable parameters. */
  parameterCount(): number {
    let n = 0;
    for (const v of this.variables.values()) n += v.size;
    return n;
  }

  dispose(): void {
    if (this.disposed) return;
    this.weightsChanged();
    for (const v of this.variables.values()) v.dispose();
    this.disposed = true;
  }
}

/** HF layout -> model layout (transposes Linear weights). Leaves its input to the caller (fromWeights' tf.tidy disposes it). */
function toModelLayout(name: string, t: tf.Tensor): tf.Tensor {
  return isLinearWeight(name) ? tf.transpose(t) : t;
}

function initialValue(name: string, hfShape: number[], seed: number): tf.Tensor {
  return tf.tidy(() => {
    if (name.includes('LayerNorm.weight')) return tf.ones(hfShape);
    if (name.endsWith('.bias')) return tf.zeros(hfShape);
    const shape = isLinearWeight(name) ? [hfShape[1], hfShape[0]] : hfShape;
    return tf.truncatedNormal(shape, 0, INIT_STD, 'float32', seed);
  });
}
