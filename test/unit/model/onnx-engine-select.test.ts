import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelError } from '../../../src/errors/index.ts';
import { createEngine, selectEngine } from '../../../src/model/engine-select.ts';
import type { ArtifactConfig, BertConfig, ModelArtifact } from '../../../src/model/types.ts';
import { mulberry32, randomWeights, sentenceTree } from './onnx-fixtures.ts';

const CONFIG: BertConfig = { vocabSize: 120, hiddenSize: 32, numLayers: 1, numHeads: 2, intermediateSize: 64, maxPositions: 64, typeVocabSize: 2, layerNormEps: 1e-12 };
const LABELS = ['O', 'B-X', 'I-X'];

function artifact(): ModelArtifact {
  const config: ArtifactConfig = {
    name: 'select-test',
    model: CONFIG,
    labels: LABELS,
    vocabSha256: '',
    knowledge: { inject: 'relation+object', maxEntities: 2, maxLength: 64, enabled: true },
    createdAt: new Date(0).toISOString(),
  };
  return { dir: '', config, weights: randomWeights(CONFIG, LABELS.length, mulberry32(21), 0.1), version: { name: 'select-test', hash: 'abcdefabcdef' } };
}

const sentences = [
  sentenceTree([5, 6, 7, 8], [{ start: 1, end: 3, branches: [[40, 41]] }], { cls: 2 }),
  sentenceTree([9, 10], []),
];

test('auto picks tfjs-node-gpu only with a GPU, else ONNX Runtime on the CPU, and says why', async () => {
  const lines: string[] = [];
  const selection = await selectEngine(artifact(), { engine: 'auto', threads: 1, logger: (l) => lines.push(l) });
  try {
    if (selection.engine.name === 'tfjs-node-gpu') {
      assert.match(selection.reason, /GPU/);
    } else {
      assert.equal(selection.engine.name, 'onnxruntime-cpu');
      assert.equal(selection.skipped[0].candidate, 'tfjs-node-gpu');
      assert.ok(selection.skipped[0].reason.length > 0);
      assert.match(selection.reason, /no GPU backend .*ONNX Runtime is the fastest CPU engine/);
    }
    assert.ok(lines.some((l) => l.startsWith(`engine: ${selection.engine.name} (`)), lines.join('\n'));
    assert.equal(selection.engine.version.hash, 'abcdefabcdef');
    assert.deepEqual(selection.engine.labels, LABELS);
  } finally {
    await selection.engine.dispose();
  }
});

test('an explicit choice is honoured, and both engines give the same logits', async () => {
  const onnx = await createEngine(artifact(), { engine: 'onnx', threads: 1 });
  const tfjs = await createEngine(artifact(), { engine: 'tfjs' });
  try {
    assert.equal(onnx.name, 'onnxruntime-cpu');
    assert.match(tfjs.name, /^tfjs-/);
    const a = await onnx.classify(sentences);
    const b = await tfjs.classify(sentences);
    for (let i = 0; i < sentences.length; i++) {
      assert.equal(a[i].length, sentences[i].tokenIds.length * LABELS.length);
      let diff = 0;
      let scale = 0;
      a[i].forEach((v, k) => {
        diff = Math.max(diff, Math.abs(v - b[i][k]));
        scale = Math.max(scale, Math.abs(b[i][k]));
      });
      assert.ok(diff / scale < 1e-4, `sentence ${i}: relative difference ${diff / scale}`);
    }
  } finally {
    await onnx.dispose();
    await tfjs.dispose();
  }
  const int8 = await createEngine(artifact(), { engine: 'onnx', quantize: 'int8', threads: 1 });
  assert.equal(int8.name, 'onnxruntime-cpu-int8');
  await int8.dispose();
});

test('an unknown engine name is a ModelError that lists the choices', async () => {
  await assert.rejects(createEngine(artifact(), { engine: 'gpu' as never }), (e: unknown) => e instanceof ModelError && /auto, onnx or tfjs/.test(e.message));
});
