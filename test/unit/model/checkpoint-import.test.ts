import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { importCheckpoint, importCheckpointFile, mapCheckpointName } from '../../../src/model/checkpoint-import.ts';
import { expectedWeightShapes, weightProblems } from '../../../src/model/artifact.ts';
import { writeSafetensors } from '../../../src/model/safetensors.ts';
import type { BertConfig } from '../../../src/model/types.ts';
import { ModelError } from '../../../src/errors/index.ts';

const config: BertConfig = {
  vocabSize: 30,
  hiddenSize: 64,
  numLayers: 2,
  numHeads: 1,
  intermediateSize: 16,
  maxPositions: 12,
  typeVocabSize: 2,
  layerNormEps: 1e-12,
};

/** Contract-named weights with distinct, recognisable values. */
function contractWeights(cfg: BertConfig, numLabels: number, mlmHead: boolean): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  let k = 0;
  for (const [name, shape] of expectedWeightShapes(cfg, { numLabels, mlmHead })) {
    k++;
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => k + i / 1024);
    out.set(name, { shape, data });
  }
  return out;
}

function renamed<T>(weights: Map<string, T>, rename: (n: string) => string): Map<string, T> {
  return new Map([...weights].map(([n, w]) => [rename(n), w]));
}

/** Appends an I64 tensor to a file written by writeSafetensors (rewriting the header by hand). */
function withInt64(bytes: Uint8Array, name: string, values: bigint[]): Uint8Array {
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  const data = bytes.subarray(8 + headerLength);
  header[name] = { dtype: 'I64', shape: [values.length], data_offsets: [data.length, data.length + 8 * values.length] };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length + 8 * values.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setBigInt64(8 + json.length + data.length + 8 * i, v, true));
  return out;
}

test('name mapping covers BertModel, prefixed heads, gamma/beta and the parts that are not weights', () => {
  assert.deepEqual(mapCheckpointName('embeddings.word_embeddings.weight'), { to: 'bert.embeddings.word_embeddings.weight' });
  assert.deepEqual(mapCheckpointName('encoder.layer.3.output.LayerNorm.gamma'), { to: 'bert.encoder.layer.3.output.LayerNorm.weight' });
  assert.deepEqual(mapCheckpointName('bert.embeddings.LayerNorm.beta'), { to: 'bert.embeddings.LayerNorm.bias' });
  assert.deepEqual(mapCheckpointName('classifier.weight'), { to: 'classifier.weight' });
  assert.deepEqual(mapCheckpointName('cls.predictions.decoder.bias'), { to: 'cls.predictions.bias' });
  assert.ok('reason' in mapCheckpointName('cls.predictions.decoder.weight'));
  assert.ok('reason' in mapCheckpointName('bert.pooler.dense.weight'));
  assert.ok('reason' in mapCheckpointName('pooler.dense.bias'));
  assert.ok('reason' in mapCheckpointName('bert.embeddings.position_ids'));
  assert.ok('reason' in mapCheckpointName('cls.seq_relationship.weight'));
  assert.ok('reason' in mapCheckpointName('optimizer.step'));
});

test('a BertModel checkpoint (no prefix, gamma/beta, pooler, position_ids) imports with an inferred config', () => {
  const weights = contractWeights(config, 0, false);
  const file = renamed(weights, (n) => n.replace(/^bert\./, '').replace(/LayerNorm\.weight$/, 'LayerNorm.gamma').replace(/LayerNorm\.bias$/, 'LayerNorm.beta'));
  file.set('pooler.dense.weight', { shape: [64, 64], data: new Float32Array(64 * 64) });
  file.set('pooler.dense.bias', { shape: [64], data: new Float32Array(64) });
  const bytes = withInt64(writeSafetensors(file, { dtype: 'F32' }), 'embeddings.position_ids', [0n, 1n, 2n]);
  const imported = importCheckpoint(bytes);
  assert.equal(imported.configSource, 'inferred');
  assert.deepEqual(imported.config, config);
  assert.equal(imported.numLabels, 0);
  assert.equal(imported.hasMlmHead, false);
  assert.deepEqual(weightProblems(imported.config, 0, imported.weights), []);
  assert.deepEqual(imported.weights, weights);
  assert.deepEqual(imported.unused.map((u) => u.name).sort(), ['embeddings.position_ids', 'pooler.dense.bias', 'pooler.dense.weight']);
  assert.deepEqual(imported.missing, []);
  assert.match(imported.notes.join('\n'), /assumed 1 attention heads/);
  assert.equal(imported.mapped.get('encoder.layer.1.attention.output.LayerNorm.gamma'), 'bert.encoder.layer.1.attention.output.LayerNorm.weight');
});

test('BertForTokenClassification and BertForPreTraining checkpoints keep their heads; fp16 decodes', () => {
  const tokenClassifier = contractWeights(config, 5, false);
  const imported = importCheckpoint(writeSafetensors(tokenClassifier, { dtype: 'F16' }));
  assert.equal(imported.numLabels, 5);
  assert.deepEqual(imported.weights.get('classifier.weight')!.shape, [5, 64]);
  // The first value of each tensor is an integer, exact in half precision; the rest round to within 2^-6.
  const bias = imported.weights.get('classifier.bias')!.data;
  const original = tokenClassifier.get('classifier.bias')!.data;
  assert.equal(bias[0], original[0]);
  for (let i = 0; i < bias.length; i++) assert.ok(Math.abs(bias[i] - original[i]) <= 2 ** -6);
  const dropped = importCheckpoint(writeSafetensors(tokenClassifier, { dtype: 'F32' }), { dropClassifier: true });
  assert.equal(dropped.numLabels, 0);
  assert.ok(!dropped.weights.has('classifier.weight'));
  assert.ok(dropped.unused.some((u) => u.name === 'classifier.weight' && /left out/.test(u.reason)));

  // Pretraining: MLM head with the bias stored as decoder.bias (HF dedupes the tied pair), plus NSP.
  const pretraining = renamed(contractWeights(config, 0, true), (n) => (n === 'cls.predictions.bias' ? 'cls.predictions.decoder.bias' : n));
  pretraining.set('cls.predictions.decoder.weight', { shape: [30, 64], data: new Float32Array(30 * 64) });
  pretraining.set('cls.seq_relationship.weight', { shape: [2, 64], data: new Float32Array(128) });
  pretraining.set('cls.seq_relationship.bias', { shape: [2], data: new Float32Array(2) });
  const mlm = importCheckpoint(writeSafetensors(pretraining, { dtype: 'F32' }), { config });
  assert.equal(mlm.configSource, 'given');
  assert.equal(mlm.hasMlmHead, true);
  assert.deepEqual(mlm.weights.get('cls.predictions.bias')!.shape, [30]);
  assert.deepEqual(weightProblems(config, 0, mlm.weights), []);
  assert.deepEqual(mlm.unused.map((u) => u.name).sort(), ['cls.predictions.decoder.weight', 'cls.seq_relationship.bias', 'cls.seq_relationship.weight']);

  // An incomplete MLM head is left out and reported, not fatal.
  const partial = contractWeights(config, 0, true);
  partial.delete('cls.predictions.transform.LayerNorm.bias');
  const p = importCheckpoint(writeSafetensors(partial, { dtype: 'F32' }), { config });
  assert.equal(p.hasMlmHead, false);
  assert.deepEqual(p.missing, ['cls.predictions.transform.LayerNorm.bias']);
  assert.ok(![...p.weights.keys()].some((n) => n.startsWith('cls.')));
});

test('a config.json beside the file gives the config; bad checkpoints are refused with the reason', async () => {
  const cfg32: BertConfig = { ...config, hiddenSize: 32, numHeads: 4, layerNormEps: 1e-5 };
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-import-'));
  try {
    const file = path.join(dir, 'model.safetensors');
    await writeFile(file, writeSafetensors(contractWeights(cfg32, 3, false), { dtype: 'F32' }));
    await assert.rejects(importCheckpointFile(file), /cannot infer the number of attention heads for hidden size 32/);
    await writeFile(
      path.join(dir, 'config.json'),
      JSON.stringify({
        model_type: 'bert',
        vocab_size: 30,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 16,
        max_position_embeddings: 12,
        type_vocab_size: 2,
        layer_norm_eps: 1e-5,
        hidden_act: 'gelu_new',
      }),
    );
    const imported = await importCheckpointFile(file);
    assert.equal(imported.configSource, 'config.json');
    assert.deepEqual(imported.config, cfg32);
    assert.equal(imported.numLabels, 3);
    assert.match(imported.notes.join('\n'), /hidden_act "gelu_new"/);

    // A config that disagrees with the tensors: every problem is listed.
    assert.throws(
      () => importCheckpoint(writeSafetensors(contractWeights(cfg32, 0, false), { dtype: 'F32' }), { config: { ...cfg32, intermediateSize: 20, numLayers: 3 } }),
      (e: unknown) =>
        e instanceof ModelError &&
        /intermediate\.dense\.weight has shape \[16, 32\], the config needs \[20, 32\]/.test(e.message) &&
        /missing bert\.encoder\.layer\.2\.attention\.self\.query\.weight/.test(e.message),
    );
    const incomplete = contractWeights(config, 0, false);
    incomplete.delete('bert.encoder.layer.1.attention.self.key.bias');
    assert.throws(() => importCheckpoint(writeSafetensors(incomplete, { dtype: 'F32' })), /missing bert\.encoder\.layer\.1\.attention\.self\.key\.bias \[64\]/);
    assert.throws(() => importCheckpoint(new Uint8Array(10)), /not a readable safetensors checkpoint/);
    await assert.rejects(importCheckpointFile(path.join(dir, 'nope.safetensors')), /cannot read checkpoint/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
