/**
 * A plain-JavaScript BERT forward pass written straight from the formulas, over HF-layout weights
 * (Linear weights [out, in]), used to check the tfjs model's numbers. Float64 throughout.
 */
import type { BertConfig, WeightMap } from '../../../src/model/types.ts';

export interface RefInput {
  tokenIds: number[];
  softPositions: number[];
  segmentIds: number[];
  /** Additive mask [T][T]. */
  mask: number[][];
}

function w(weights: WeightMap, name: string): Float32Array {
  const t = weights.get(name);
  if (!t) throw new Error(`reference: missing ${name}`);
  return t.data;
}

/** y = x W^T + b with W [out, in]. */
function linear(x: number[][], weight: Float32Array, bias: Float32Array, out: number): number[][] {
  const inDim = x[0].length;
  return x.map((row) => {
    const y = new Array<number>(out);
    for (let o = 0; o < out; o++) {
      let s = bias[o];
      for (let i = 0; i < inDim; i++) s += row[i] * weight[o * inDim + i];
      y[o] = s;
    }
    return y;
  });
}

function layerNorm(x: number[][], g: Float32Array, b: Float32Array, eps: number): number[][] {
  return x.map((row) => {
    const mean = row.reduce((a, v) => a + v, 0) / row.length;
    const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / row.length;
    return row.map((v, i) => ((v - mean) / Math.sqrt(variance + eps)) * g[i] + b[i]);
  });
}

/** erf via Abramowitz-Stegun 7.1.26 is too coarse for 1e-5 checks; use a series / continued fraction. */
export function erf(x: number): number {
  const sign = x < 0 ? -1 : 1;
  const ax = Math.abs(x);
  if (ax < 3) {
    // Maclaurin series, converges fast for |x| < 3.
    let sum = 0;
    let term = ax;
    for (let n = 0; n < 100; n++) {
      sum += term / (2 * n + 1);
      term *= (-ax * ax) / (n + 1);
      if (Math.abs(term) < 1e-17) break;
    }
    return (sign * 2 * sum) / Math.sqrt(Math.PI);
  }
  // erfc continued fraction for large |x|.
  let f = 0;
  for (let k = 60; k >= 1; k--) f = k / 2 / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return sign * (1 - erfc);
}

const gelu = (v: number) => 0.5 * v * (1 + erf(v / Math.SQRT2));

/** Final hidden states [T][H] for one sentence. */
export function referenceEncode(config: BertConfig, weights: WeightMap, input: RefInput): number[][] {
  const H = config.hiddenSize;
  const nh = config.numHeads;
  const d = H / nh;
  const T = input.tokenIds.length;
  const word = w(weights, 'bert.embeddings.word_embeddings.weight');
  const pos = w(weights, 'bert.embeddings.position_embeddings.weight');
  const typ = w(weights, 'bert.embeddings.token_type_embeddings.weight');
  let x: number[][] = [];
  for (let t = 0; t < T; t++) {
    const row = new Array<number>(H);
    for (let h = 0; h < H; h++) {
      row[h] = word[input.tokenIds[t] * H + h] + pos[input.softPositions[t] * H + h] + typ[input.segmentIds[t] * H + h];
    }
    x.push(row);
  }
  x = layerNorm(x, w(weights, 'bert.embeddings.LayerNorm.weight'), w(weights, 'bert.embeddings.LayerNorm.bias'), config.layerNormEps);
  for (let l = 0; l < config.numLayers; l++) {
    const p = `bert.encoder.layer.${l}`;
    const q = linear(x, w(weights, `${p}.attention.self.query.weight`), w(weights, `${p}.attention.self.query.bias`), H);
    const k = linear(x, w(weights, `${p}.attention.self.key.weight`), w(weights, `${p}.attention.self.key.bias`), H);
    const v = linear(x, w(weights, `${p}.attention.self.value.weight`), w(weights, `${p}.attention.self.value.bias`), H);
    const ctx: number[][] = Array.from({ length: T }, () => new Array<number>(H).fill(0));
    for (let head = 0; head < nh; head++) {
      for (let i = 0; i < T; i++) {
        const scores = new Array<number>(T);
        for (let j = 0; j < T; j++) {
          let s = 0;
          for (let e = 0; e < d; e++) s += q[i][head * d + e] * k[j][head * d + e];
          scores[j] = s / Math.sqrt(d) + input.mask[i][j];
        }
        const max = Math.max(...scores);
        const exps = scores.map((s) => Math.exp(s - max));
        const z = exps.reduce((a, b) => a + b, 0);
        for (let j = 0; j < T; j++) {
          const pj = exps[j] / z;
          for (let e = 0; e < d; e++) ctx[i][head * d + e] += pj * v[j][head * d + e];
        }
      }
    }
    const attn = linear(ctx, w(weights, `${p}.attention.output.dense.weight`), w(weights, `${p}.attention.output.dense.bias`), H);
    const h1 = layerNorm(
      attn.map((row, i) => row.map((val, j) => val + x[i][j])),
      w(weights, `${p}.attention.output.LayerNorm.weight`),
      w(weights, `${p}.attention.output.LayerNorm.bias`),
      config.layerNormEps,
    );
    const inter = linear(h1, w(weights, `${p}.intermediate.dense.weight`), w(weights, `${p}.intermediate.dense.bias`), config.intermediateSize).map((r) =>
      r.map(gelu),
    );
    const out = linear(inter, w(weights, `${p}.output.dense.weight`), w(weights, `${p}.output.dense.bias`), H);
    x = layerNorm(
      out.map((row, i) => row.map((val, j) => val + h1[i][j])),
      w(weights, `${p}.output.LayerNorm.weight`),
      w(weights, `${p}.output.LayerNorm.bias`),
      config.layerNormEps,
    );
  }
  return x;
}

export function referenceTokenLogits(config: BertConfig, weights: WeightMap, input: RefInput, numLabels: number): number[][] {
  return linear(referenceEncode(config, weights, input), w(weights, 'classifier.weight'), w(weights, 'classifier.bias'), numLabels);
}

/** MLM logits [V] for one hidden row (transform, GELU, LayerNorm, decoder tied to word embeddings). */
export function referenceMlmLogits(config: BertConfig, weights: WeightMap, hidden: number[]): number[] {
  const H = config.hiddenSize;
  let t = linear([hidden], w(weights, 'cls.predictions.transform.dense.weight'), w(weights, 'cls.predictions.transform.dense.bias'), H).map((r) => r.map(gelu));
  t = layerNorm(t, w(weights, 'cls.predictions.transform.LayerNorm.weight'), w(weights, 'cls.predictions.transform.LayerNorm.bias'), config.layerNormEps);
  return linear(t, w(weights, 'bert.embeddings.word_embeddings.weight'), w(weights, 'cls.predictions.bias'), config.vocabSize)[0];
}
