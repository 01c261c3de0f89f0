/**
 * Builds the ONNX graph of the BERT encoder + token-classification head straight from a model's config
 * and weights (Hugging Face names, Linear weights [out, in]); no export step, no Python.
 *
 * Inputs: input_ids, soft_positions, segment_ids int64 [batch, seq]; visibility_mask float32
 * [batch, seq, seq], additive (0 visible, MASK_NEGATIVE not), the same mask in every layer.
 * Output: logits float32 [batch, seq, numLabels].
 *
 * Weights are transposed to [in, out] once here so every dense layer is a plain MatMul, and
 * 1/sqrt(headSize) is folded into the query weights and bias. Two forms of the same math:
 * - 'standard': opset-17 ops only (MatMul, Add, Softmax, Erf GELU, LayerNormalization). The reference.
 * - 'fused' (default): com.microsoft contrib ops that ONNX Runtime's CPU kernels implement:
 *   Attention (QKV projection + attention with the additive mask passed as attention_bias),
 *   BiasGelu (exact erf GELU) and SkipLayerNormalization. ORT at level 'all' fuses the standard
 *   form's LayerNorm and GELU itself, but not attention with an additive 3-D mask.
 * `quantize: 'int8'` stores the dense weights as 8-bit integers (symmetric, one scale per output column) and
 * runs them with com.microsoft DynamicQuantizeMatMul (activations quantised to uint8 per tensor at run time);
 * attention itself (scores, softmax, context) and the classification head stay fp32. Weights default to
 * int8 limited to [-63, 63] (see quantizeColumns): the fastest form on AVX2 machines here, 1.3-1.5x fp32.
 */
import { ModelError } from '../../errors/index.ts';
import type { BertConfig, WeightMap, WeightTensor } from '../types.ts';
import { DataType, GraphBuilder } from './proto.ts';

export type OnnxGraphForm = 'standard' | 'fused';
export type OnnxQuantization = 'none' | 'int8';
export type Int8WeightFormat = 'u8' | 's8-7bit';

export interface OnnxGraphOptions {
  form?: OnnxGraphForm;
  /** Fused form only: the contrib attention kernel (int8 always uses MultiHeadAttention after its own QKV MatMul). */
  attentionOp?: 'Attention' | 'MultiHeadAttention';
  quantize?: OnnxQuantization;
  /** Storage of int8 weights; see quantizeColumns. */
  int8Weights?: Int8WeightFormat;
}

export interface BuiltOnnxModel {
  bytes: Uint8Array;
  numLabels: number;
  form: OnnxGraphForm;
  quantize: OnnxQuantization;
  /** Op types in the graph as built (before ORT's own optimisations). */
  opTypes: Record<string, number>;
}

export const ONNX_INPUT_NAMES = ['input_ids', 'soft_positions', 'segment_ids', 'visibility_mask'] as const;
export const ONNX_OUTPUT_NAME = 'logits';

const MS = 'com.microsoft';

function need(weights: WeightMap, name: string, shape: number[]): WeightTensor {
  const w = weights.get(name);
  if (!w) throw new ModelError(`model weights lack ${name}`);
  if (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i])) {
    throw new ModelError(`weight ${name} has shape [${w.shape}], expected [${shape}]`);
  }
  if (w.data.length !== shape.reduce((a, b) => a * b, 1)) throw new ModelError(`weight ${name}: data length does not match its shape`);
  return w;
}

/** [out, in] (PyTorch Linear) -> [in, out], optionally scaling every value. */
function transposed(w: WeightTensor, scale = 1): Float32Array {
  const [rows, cols] = w.shape;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = w.data[r * cols + c] * scale;
  }
  return out;
}

/** Column-concatenates [in, a], [in, b], ... into [in, a + b + ...]. */
function concatColumns(parts: Float32Array[], rows: number): Float32Array {
  const widths = parts.map((p) => p.length / rows);
  const total = widths.reduce((a, b) => a + b, 0);
  const out = new Float32Array(rows * total);
  for (let r = 0; r < rows; r++) {
    let offset = r * total;
    parts.forEach((p, k) => {
      out.set(p.subarray(r * widths[k], (r + 1) * widths[k]), offset);
      offset += widths[k];
    });
  }
  return out;
}

/**
 * Per-column 8-bit quantisation of a [rows, cols] matrix, symmetric around zero.
 * 'u8': uint8 with zero point 128 (ORT's U8U8 kernels). 's8-7bit': int8 limited to [-63, 63], the
 * "reduce range" that keeps AVX2's u8 x s8 pairwise multiply-add (vpmaddubsw) from saturating 16 bits:
 * full-range int8 weights lose up to ~15% of a product's magnitude on machines without VNNI.
 */
export function quantizeColumns(
  w: Float32Array,
  rows: number,
  cols: number,
  format: Int8WeightFormat,
): { q: Uint8Array | Int8Array; scale: Float32Array; zero: Uint8Array | Int8Array } {
  const qmax = format === 'u8' ? 127 : 63;
  const scale = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) scale[c] = Math.max(scale[c], Math.abs(w[r * cols + c]));
  }
  for (let c = 0; c < cols; c++) scale[c] = scale[c] > 0 ? scale[c] / qmax : 1;
  const offset = format === 'u8' ? 128 : 0;
  const q = format === 'u8' ? new Uint8Array(rows * cols) : new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      q[r * cols + c] = offset + Math.max(-qmax, Math.min(qmax, Math.round(w[r * cols + c] / scale[c])));
    }
  }
  const zero = format === 'u8' ? new Uint8Array(cols).fill(128) : new Int8Array(cols);
  return { q, scale, zero };
}

/** Number of labels of the classification head in `weights`. */
export function classifierLabels(config: BertConfig, weights: WeightMap): number {
  const w = weights.get('classifier.weight');
  if (!w || w.shape.length !== 2 || w.shape[1] !== config.hiddenSize) {
    throw new ModelError('model weights have no token-classification head (classifier.weight [numLabels, hidden])');
  }
  return w.shape[0];
}

export function buildOnnxModel(config: BertConfig, weights: WeightMap, options: OnnxGraphOptions = {}): BuiltOnnxModel {
  const form = options.form ?? 'fused';
  const quantize = options.quantize ?? 'none';
  const attentionOp = options.attentionOp ?? 'Attention';
  const int8Weights = options.int8Weights ?? 's8-7bit';
  const H = config.hiddenSize;
  const nh = config.numHeads;
  if (H % nh !== 0) throw new ModelError(`hidden size ${H} is not divisible by ${nh} heads`);
  const hd = H / nh;
  const I = config.intermediateSize;
  const eps = config.layerNormEps;
  const numLabels = classifierLabels(config, weights);
  const g = new GraphBuilder();
  const p = 'bert.embeddings.';

  const ids = g.input('input_ids', DataType.INT64, ['batch', 'seq']);
  const pos = g.input('soft_positions', DataType.INT64, ['batch', 'seq']);
  const seg = g.input('segment_ids', DataType.INT64, ['batch', 'seq']);
  const mask = g.input('visibility_mask', DataType.FLOAT, ['batch', 'seq', 'seq']);

  const wordEmb = g.initializer('word_embeddings', [config.vocabSize, H], need(weights, `${p}word_embeddings.weight`, [config.vocabSize, H]).data);
  const posEmb = g.initializer('position_embeddings', [config.maxPositions, H], need(weights, `${p}position_embeddings.weight`, [config.maxPositions, H]).data);
  const typeEmb = g.initializer('token_type_embeddings', [config.typeVocabSize, H], need(weights, `${p}token_type_embeddings.weight`, [config.typeVocabSize, H]).data);

  const vec = (name: string, size: number, onnxName = name): string => g.initializer(onnxName, [size], need(weights, name, [size]).data);

  const layerNorm = (x: string, prefix: string): string =>
    g.op('LayerNormalization', [x, vec(`${prefix}.weight`, H), vec(`${prefix}.bias`, H)], {
      attrs: { axis: -1, epsilon: { float: eps } },
      hint: 'ln',
    });

  /** x @ W (W given as [in, out]) + bias; int8 when quantising. */
  const dense = (x: string, wIO: Float32Array, rows: number, cols: number, name: string, bias: string | null): string => {
    if (quantize === 'int8') {
      const { q, scale, zero } = quantizeColumns(wIO, rows, cols, int8Weights);
      const inputs = [x, g.initializer(`${name}.q`, [rows, cols], q), g.initializer(`${name}.scale`, [cols], scale), g.initializer(`${name}.zero`, [cols], zero)];
      if (bias) inputs.push(bias);
      return g.op('DynamicQuantizeMatMul', inputs, { domain: MS, hint: name });
    }
    const y = g.op('MatMul', [x, g.initializer(`${name}.w`, [rows, cols], wIO)], { hint: name });
    return bias ? g.op('Add', [y, bias], { hint: `${name}_bias` }) : y;
  };

  // Embeddings: soft positions index the position table (K-BERT), segment ids the type table.
  const we = g.op('Gather', [wordEmb, ids], { attrs: { axis: 0 }, hint: 'word' });
  const pe = g.op('Gather', [posEmb, pos], { attrs: { axis: 0 }, hint: 'pos' });
  const te = g.op('Gather', [typeEmb, seg], { attrs: { axis: 0 }, hint: 'type' });
  let x = layerNorm(g.op('Add', [g.op('Add', [we, pe]), te]), `${p}LayerNorm`);

  // [batch, seq, seq] -> [batch, 1, seq, seq], once, shared by every layer and broadcast over heads.
  const mask4 = g.op('Unsqueeze', [mask, g.ints('axis1', [1])], { hint: 'mask4' });
  // Reshape targets of the unfused attention, made on first use (an unused initializer draws an ORT warning).
  let headShape = '';
  let hiddenShape = '';
  let qkvSplit = '';
  const qScale = 1 / Math.sqrt(hd);

  for (let l = 0; l < config.numLayers; l++) {
    const lp = `bert.encoder.layer.${l}.`;
    const a = `${lp}attention.`;
    const wq = transposed(need(weights, `${a}self.query.weight`, [H, H]), qScale);
    const wk = transposed(need(weights, `${a}self.key.weight`, [H, H]));
    const wv = transposed(need(weights, `${a}self.value.weight`, [H, H]));
    const bq = need(weights, `${a}self.query.bias`, [H]).data.map((v) => v * qScale);
    const bk = need(weights, `${a}self.key.bias`, [H]).data;
    const bv = need(weights, `${a}self.value.bias`, [H]).data;
    const wqkv = concatColumns([wq, wk, wv], H);
    const bqkv = new Float32Array(3 * H);
    bqkv.set(bq, 0);
    bqkv.set(bk, H);
    bqkv.set(bv, 2 * H);
    const bqkvName = g.initializer(`layer${l}.qkv.bias`, [3 * H], bqkv);

    let context: string;
    if (form === 'fused' && quantize === 'none' && attentionOp === 'Attention') {
      // Attention does the packed QKV GEMM + bias, scores, additive bias, softmax and context in one kernel.
      context = g.op(
        'Attention',
        [x, g.initializer(`layer${l}.qkv.w`, [H, 3 * H], wqkv), bqkvName, '', '', mask4],
        { domain: MS, attrs: { num_heads: nh, scale: { float: 1 } }, hint: `attn${l}` },
      );
    } else {
      const qkv = dense(x, wqkv, H, 3 * H, `layer${l}.qkv`, bqkvName);
      qkvSplit ||= g.ints('split', [H, H, H]);
      const [q, k, v] = g.node('Split', [qkv, qkvSplit], { outputs: 3, attrs: { axis: -1 }, hint: `qkv${l}` });
      if (form === 'fused') {
        // MultiHeadAttention takes Q, K, V [batch, seq, hidden] and the additive mask as attention_bias.
        context = g.op('MultiHeadAttention', [q, k, v, '', '', mask4], {
          domain: MS,
          attrs: { num_heads: nh, scale: { float: 1 } },
          hint: `mha${l}`,
        });
      } else {
        headShape ||= g.ints('bsnh', [0, 0, nh, hd]);
        hiddenShape ||= g.ints('bsh', [0, 0, H]);
        const heads = (t: string, perm: number[]): string =>
          g.op('Transpose', [g.op('Reshape', [t, headShape])], { attrs: { perm } });
        const qh = heads(q, [0, 2, 1, 3]); // [b, nh, s, hd]
        const kt = heads(k, [0, 2, 3, 1]); // [b, nh, hd, s]
        const vh = heads(v, [0, 2, 1, 3]);
        const scores = g.op('Add', [g.op('MatMul', [qh, kt], { hint: `scores${l}` }), mask4]);
        const probs = g.op('Softmax', [scores], { attrs: { axis: -1 } });
        const ctx = g.op('MatMul', [probs, vh], { hint: `ctx${l}` });
        context = g.op('Reshape', [g.op('Transpose', [ctx], { attrs: { perm: [0, 2, 1, 3] } }), hiddenShape]);
      }
    }

    const wo = transposed(need(weights, `${a}output.dense.weight`, [H, H]));
    const bo = vec(`${a}output.dense.bias`, H);
    const w1 = transposed(need(weights, `${lp}intermediate.dense.weight`, [I, H]));
    const b1 = vec(`${lp}intermediate.dense.bias`, I);
    const w2 = transposed(need(weights, `${lp}output.dense.weight`, [H, I]));
    const b2 = vec(`${lp}output.dense.bias`, H);

    if (form === 'fused') {
      const skipLn = (y: string, skip: string, prefix: string, bias: string): string =>
        g.op('SkipLayerNormalization', [y, skip, vec(`${prefix}.weight`, H), vec(`${prefix}.bias`, H), bias], {
          domain: MS,
          attrs: { epsilon: { float: eps } },
          hint: 'skipln',
        });
      const attnOut = skipLn(dense(context, wo, H, H, `layer${l}.attn_out`, null), x, `${a}output.LayerNorm`, bo);
      const inter = g.op('BiasGelu', [dense(attnOut, w1, H, I, `layer${l}.ffn_in`, null), b1], { domain: MS, hint: `gelu${l}` });
      x = skipLn(dense(inter, w2, I, H, `layer${l}.ffn_out`, null), attnOut, `${lp}output.LayerNorm`, b2);
    } else {
      const attnOut = layerNorm(g.op('Add', [dense(context, wo, H, H, `layer${l}.attn_out`, bo), x]), `${a}output.LayerNorm`);
      const h = dense(attnOut, w1, H, I, `layer${l}.ffn_in`, b1);
      // Exact GELU: 0.5 * h * (1 + erf(h / sqrt(2))).
      const erf = g.op('Erf', [g.op('Div', [h, g.initializer(`layer${l}.sqrt2`, [], new Float32Array([Math.SQRT2]))])]);
      const gelu = g.op('Mul', [
        g.op('Mul', [h, g.op('Add', [erf, g.initializer(`layer${l}.one`, [], new Float32Array([1]))])]),
        g.initializer(`layer${l}.half`, [], new Float32Array([0.5])),
      ]);
      x = layerNorm(g.op('Add', [dense(gelu, w2, I, H, `layer${l}.ffn_out`, b2), attnOut]), `${lp}output.LayerNorm`);
    }
  }

  const wc = transposed(need(weights, 'classifier.weight', [numLabels, H]));
  const bc = vec('classifier.bias', numLabels);
  // The head stays fp32 even when quantising: it is tiny and decides the labels directly.
  g.op('Add', [g.op('MatMul', [x, g.initializer('classifier.w', [H, numLabels], wc)]), bc], { output: 'logits' });
  g.output(ONNX_OUTPUT_NAME, DataType.FLOAT, ['batch', 'seq', numLabels]);

  const opTypes: Record<string, number> = {};
  for (const t of g.opTypes()) opTypes[t] = (opTypes[t] ?? 0) + 1;
  const bytes = g.encode('bert_token_classifier', {
    name: 'rmbert-stream',
    version: '1',
    docString: `BERT token classifier: ${config.numLayers} layers, hidden ${H}, ${nh} heads, ${numLabels} labels, ${form}/${quantize}`,
  });
  return { bytes, numLabels, form, quantize, opTypes };
}

/** FLOPs of one forward pass over a padded [batch, seq] input (multiply-add = 2), for throughput reports. */
export function forwardFlops(config: BertConfig, numLabels: number, batch: number, seq: number): number {
  const H = config.hiddenSize;
  const tokens = batch * seq;
  const dense = 2 * tokens * (3 * H * H + H * H + 2 * H * config.intermediateSize);
  const attention = 2 * 2 * batch * seq * seq * H; // QK^T and PV over all heads
  return config.numLayers * (dense + attention) + 2 * tokens * H * numLabels;
}
