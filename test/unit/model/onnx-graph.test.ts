import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelError } from '../../../src/errors/index.ts';
import { buildOnnxModel, forwardFlops, quantizeColumns } from '../../../src/model/onnx/graph.ts';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { countOpTypes, onnx } from '../../../src/model/onnx/proto.ts';
import type { BertConfig } from '../../../src/model/types.ts';
import { mulberry32, randomWeights } from './onnx-fixtures.ts';

const CONFIG: BertConfig = { vocabSize: 50, hiddenSize: 16, numLayers: 3, numHeads: 4, intermediateSize: 32, maxPositions: 40, typeVocabSize: 2, layerNormEps: 1e-12 };
const weights = randomWeights(CONFIG, 5, mulberry32(2), 0.3);

function decode(bytes: Uint8Array) {
  return onnx.ModelProto.decode(bytes);
}

test('the graph has the named inputs with dynamic batch and sequence axes, and logits [batch, seq, labels]', () => {
  const model = decode(buildOnnxModel(CONFIG, weights).bytes);
  assert.deepEqual(model.opsetImport.map((o) => [o.domain, Number(o.version)]), [['', 17], ['com.microsoft', 1]]);
  const dims = (v: OnnxTypes.IValueInfoProto) => v.type!.tensorType!.shape!.dim!.map((d) => d.dimParam || Number(d.dimValue));
  assert.deepEqual(model.graph!.input!.map((i) => [i.name, i.type!.tensorType!.elemType, dims(i)]), [
    ['input_ids', 7, ['batch', 'seq']],
    ['soft_positions', 7, ['batch', 'seq']],
    ['segment_ids', 7, ['batch', 'seq']],
    ['visibility_mask', 1, ['batch', 'seq', 'seq']],
  ]);
  assert.deepEqual(model.graph!.output!.map((o) => [o.name, dims(o)]), [['logits', ['batch', 'seq', 5]]]);
});

test('fused form: one Attention, two SkipLayerNormalization and one BiasGelu per layer; the mask is unsqueezed once', () => {
  const counts = countOpTypes(buildOnnxModel(CONFIG, weights).bytes);
  assert.equal(counts['com.microsoft.Attention'], 3);
  assert.equal(counts['com.microsoft.SkipLayerNormalization'], 6);
  assert.equal(counts['com.microsoft.BiasGelu'], 3);
  assert.equal(counts.Unsqueeze, 1);
  assert.equal(counts.Gather, 3);
  const standard = countOpTypes(buildOnnxModel(CONFIG, weights, { form: 'standard' }).bytes);
  assert.equal(standard.Erf, 3);
  assert.equal(standard.Softmax, 3);
  assert.equal(standard.LayerNormalization, 7);
  assert.equal(Object.keys(standard).some((k) => k.startsWith('com.microsoft')), false);
  const int8 = countOpTypes(buildOnnxModel(CONFIG, weights, { quantize: 'int8' }).bytes);
  assert.equal(int8['com.microsoft.DynamicQuantizeMatMul'], 3 * 4);
  assert.equal(int8['com.microsoft.MultiHeadAttention'], 3);
});

test('weights are transposed to [in, out], with 1/sqrt(head size) folded into the query columns and bias', () => {
  const model = decode(buildOnnxModel(CONFIG, weights).bytes);
  const init = (name: string) => {
    const t = model.graph!.initializer!.find((x) => x.name === name)!;
    const raw = t.rawData!;
    return { dims: t.dims!.map(Number), data: new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)) };
  };
  const H = CONFIG.hiddenSize;
  const qkv = init('layer1.qkv.w');
  assert.deepEqual(qkv.dims, [H, 3 * H]);
  const q = weights.get('bert.encoder.layer.1.attention.self.query.weight')!.data; // [out, in]
  const v = weights.get('bert.encoder.layer.1.attention.self.value.weight')!.data;
  const scale = 1 / Math.sqrt(H / CONFIG.numHeads);
  for (const [i, o] of [[0, 0], [3, 7], [15, 2]]) {
    assert.ok(Math.abs(qkv.data[i * 3 * H + o] - q[o * H + i] * scale) < 1e-7);
    assert.equal(qkv.data[i * 3 * H + 2 * H + o], v[o * H + i]);
  }
  const bias = init('layer1.qkv.bias');
  const qb = weights.get('bert.encoder.layer.1.attention.self.query.bias')!.data;
  assert.ok(Math.abs(bias.data[5] - qb[5] * scale) < 1e-7);
  const ffnIn = init('layer2.ffn_in.w');
  assert.deepEqual(ffnIn.dims, [H, CONFIG.intermediateSize]);
});

test('missing or misshapen weights are a ModelError naming the weight', () => {
  const missing = new Map(weights);
  missing.delete('bert.encoder.layer.2.output.dense.weight');
  assert.throws(() => buildOnnxModel(CONFIG, missing), (e: unknown) => e instanceof ModelError && /bert\.encoder\.layer\.2\.output\.dense\.weight/.test(e.message));
  const wrong = new Map(weights);
  wrong.set('bert.embeddings.LayerNorm.bias', { shape: [3], data: new Float32Array(3) });
  assert.throws(() => buildOnnxModel(CONFIG, wrong), /LayerNorm\.bias has shape \[3\], expected \[16\]/);
  assert.throws(() => buildOnnxModel({ ...CONFIG, numHeads: 3 }, weights), /not divisible/);
});

test('per-column quantisation: values within range, reconstruction within half a step', () => {
  const rows = 7;
  const cols = 5;
  const rng = mulberry32(8);
  const w = Float32Array.from({ length: rows * cols }, (_, i) => (rng() - 0.5) * (1 + (i % cols)));
  for (const format of ['u8', 's8-7bit'] as const) {
    const { q, scale, zero } = quantizeColumns(w, rows, cols, format);
    const limit = format === 'u8' ? 127 : 63;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const level = q[r * cols + c] - zero[c];
        assert.ok(Math.abs(level) <= limit);
        assert.ok(Math.abs(level * scale[c] - w[r * cols + c]) <= scale[c] / 2 + 1e-7);
      }
    }
    // The largest magnitude in each column uses the full range.
    for (let c = 0; c < cols; c++) {
      let best = 0;
      for (let r = 0; r < rows; r++) best = Math.max(best, Math.abs(q[r * cols + c] - zero[c]));
      assert.equal(best, limit);
    }
  }
});

test('FLOP count: dense layers scale with tokens, attention with seq^2', () => {
  const c: BertConfig = { ...CONFIG, hiddenSize: 256, intermediateSize: 1024, numLayers: 4 };
  // Per token per layer: 2 * (4 H^2 + 2 H I) = 2 * (262144 + 524288).
  const dense = 2 * (4 * 256 * 256 + 2 * 256 * 1024);
  assert.equal(forwardFlops(c, 11, 1, 1), 4 * (dense + 4 * 256) + 2 * 256 * 11);
  assert.equal(forwardFlops(c, 11, 2, 10) - 2 * forwardFlops(c, 11, 1, 10), 0);
  assert.equal(forwardFlops(c, 11, 1, 20) - 2 * forwardFlops(c, 11, 1, 10), 4 * 4 * 256 * (400 - 200));
});
