import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import {
  CONFIG_FILE,
  MANIFEST_FILE,
  WEIGHTS_FILE,
  artifactVersion,
  canonicalJson,
  embeddingsShowFoldedText,
  expectedWeightShapes,
  loadArtifact,
  parseArtifactConfig,
  tokenizerConfigOf,
  tokenizerOptionsOf,
  writeArtifact,
} from '../../../src/model/artifact.ts';
import { readSafetensors, toWeightMap, writeSafetensors } from '../../../src/model/safetensors.ts';
import { BertTokenizer, SHIPPED_VOCAB_SHA256 } from '../../../src/model/tokenizer.ts';
import type { ArtifactConfig, BertConfig, WeightMap } from '../../../src/model/types.ts';
import { ModelError } from '../../../src/errors/index.ts';

const model: BertConfig = {
  vocabSize: 50,
  hiddenSize: 8,
  numLayers: 2,
  numHeads: 2,
  intermediateSize: 16,
  maxPositions: 20,
  typeVocabSize: 2,
  layerNormEps: 1e-12,
};
const config: ArtifactConfig = {
  name: 'rmbert-test-0.0.1',
  model,
  labels: ['O', 'B-DIS', 'I-DIS'],
  vocabSha256: SHIPPED_VOCAB_SHA256,
  knowledge: { inject: 'relation+object', maxEntities: 2, maxLength: 128, enabled: true },
  createdAt: '2026-01-01T00:00:00.000Z',
};

function randomWeights(cfg: BertConfig, numLabels: number, mlmHead = false): WeightMap {
  let seed = 7;
  const weights: WeightMap = new Map();
  for (const [name, shape] of expectedWeightShapes(cfg, { numLabels, mlmHead })) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      data[i] = seed / 2 ** 31 - 0.5;
    }
    weights.set(name, { shape, data });
  }
  return weights;
}

const sha = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'rmbert-artifact-'));
}

/** Re-hashes an artifact's files after a deliberate edit, so that only the edited content is wrong. */
async function rehash(dir: string, name = config.name): Promise<void> {
  const files: Record<string, string> = {};
  for (const f of [CONFIG_FILE, WEIGHTS_FILE]) files[f] = sha(await readFile(path.join(dir, f)));
  const v = artifactVersion(name, files);
  await writeFile(path.join(dir, MANIFEST_FILE), JSON.stringify({ files, version: `${v.name}+${v.hash}` }));
}

async function rejects(dir: string, message: RegExp): Promise<void> {
  await assert.rejects(loadArtifact(dir), (e: unknown) => {
    assert.ok(e instanceof ModelError, String(e));
    assert.match(e.message, message);
    return true;
  });
}

test('writes and loads an fp32 artifact: same weights, manifest hashes, version from the hashes', async () => {
  const root = await tempDir();
  try {
    const dir = path.join(root, 'a');
    const weights = randomWeights(model, 3);
    const written = await writeArtifact(dir, config, weights, { dtype: 'F32', extraFiles: { 'metrics.json': '{"f1":0.5}' } });
    assert.deepEqual((await readdir(root)).sort(), ['a']); // no temp directory left behind
    assert.deepEqual((await readdir(dir)).sort(), [CONFIG_FILE, MANIFEST_FILE, 'metrics.json', WEIGHTS_FILE]);
    const manifest = JSON.parse(await readFile(path.join(dir, MANIFEST_FILE), 'utf8'));
    for (const f of [CONFIG_FILE, WEIGHTS_FILE, 'metrics.json']) assert.equal(manifest.files[f], sha(await readFile(path.join(dir, f))));
    const expectedHash = sha(canonicalJson(manifest.files)).slice(0, 12);
    assert.equal(manifest.version, `rmbert-test-0.0.1+${expectedHash}`);
    assert.deepEqual(written.version, { name: 'rmbert-test-0.0.1', hash: expectedHash });

    const loaded = await loadArtifact(dir);
    assert.deepEqual(loaded.version, written.version);
    assert.deepEqual(loaded.config, config);
    assert.deepEqual(loaded.weights, weights);
    // canonicalJson sorts keys at every level.
    assert.equal(canonicalJson({ b: 1, a: { d: [1, { f: 2, e: 3 }], c: 'x' } }), '{"a":{"c":"x","d":[1,{"e":3,"f":2}]},"b":1}');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('fp16 artifacts load within half-precision rounding; the version changes with the bytes', async () => {
  const root = await tempDir();
  try {
    const weights = randomWeights(model, 3, true);
    const a16 = await writeArtifact(path.join(root, 'h'), config, weights, { dtype: 'F16' });
    const a32 = await writeArtifact(path.join(root, 'f'), config, weights, { dtype: 'F32' });
    assert.notEqual(a16.version.hash, a32.version.hash);
    const loaded = await loadArtifact(path.join(root, 'h'));
    assert.equal(readSafetensors(await readFile(path.join(root, 'h', WEIGHTS_FILE))).tensors.get('classifier.weight')!.dtype, 'F16');
    for (const [name, w] of weights) {
      const got = loaded.weights.get(name)!.data;
      for (let i = 0; i < w.data.length; i++) {
        // |x| < 0.5: half spacing <= 2^-12, rounding error <= 2^-13.
        assert.ok(Math.abs(got[i] - w.data[i]) <= 2 ** -13, `${name}[${i}]`);
      }
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('a tampered weights file is refused, naming the file', async () => {
  const root = await tempDir();
  try {
    const dir = path.join(root, 'a');
    await writeArtifact(dir, config, randomWeights(model, 3), { dtype: 'F32' });
    const file = path.join(dir, WEIGHTS_FILE);
    const bytes = await readFile(file);
    bytes[bytes.length - 5] ^= 0x01;
    await writeFile(file, bytes);
    await rejects(dir, /weights\.safetensors has sha256 [0-9a-f]{64}, the manifest says/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('missing files, a wrong vocabulary, unknown weights, bad shapes and a wrong version are refused', async () => {
  const root = await tempDir();
  try {
    const make = async (name: string): Promise<string> => {
      const dir = path.join(root, name);
      await writeArtifact(dir, config, randomWeights(model, 3), { dtype: 'F32' });
      return dir;
    };
    let dir = await make('missing-config');
    await unlink(path.join(dir, CONFIG_FILE));
    await rejects(dir, /config\.json is missing/);

    dir = await make('missing-manifest');
    await unlink(path.join(dir, MANIFEST_FILE));
    await rejects(dir, /manifest\.json is missing/);

    dir = await make('vocab');
    await writeFile(path.join(dir, CONFIG_FILE), JSON.stringify({ ...config, vocabSha256: 'ab'.repeat(32) }));
    await rehash(dir);
    await rejects(dir, /config\.json was made for vocabulary abababababab/);
    // ...accepted when the tokenizer in use has that vocabulary.
    assert.equal((await loadArtifact(dir, { vocabSha256: 'ab'.repeat(32) })).config.vocabSha256, 'ab'.repeat(32));

    dir = await make('extra-weight');
    const extra = randomWeights(model, 3);
    extra.set('bert.pooler.dense.bias', { shape: [8], data: new Float32Array(8) });
    await writeFile(path.join(dir, WEIGHTS_FILE), writeSafetensors(extra, { dtype: 'F32' }));
    await rehash(dir);
    await rejects(dir, /unknown weight bert\.pooler\.dense\.bias/);

    dir = await make('shape');
    await writeFile(path.join(dir, CONFIG_FILE), JSON.stringify({ ...config, model: { ...model, intermediateSize: 12 } }));
    await rehash(dir);
    await rejects(dir, /intermediate\.dense\.weight has shape \[16, 8\], the config needs \[12, 8\]/);

    dir = await make('labels');
    await writeFile(path.join(dir, CONFIG_FILE), JSON.stringify({ ...config, labels: ['O', 'B-DIS'] }));
    await rehash(dir);
    await rejects(dir, /classifier\.weight has shape \[3, 8\], the config needs \[2, 8\]/);

    dir = await make('version');
    const manifest = JSON.parse(await readFile(path.join(dir, MANIFEST_FILE), 'utf8'));
    await writeFile(path.join(dir, MANIFEST_FILE), JSON.stringify({ ...manifest, version: 'rmbert-test-0.0.1+000000000000' }));
    await rejects(dir, /says version rmbert-test-0\.0\.1\+000000000000/);

    dir = await make('truncated');
    const w = await readFile(path.join(dir, WEIGHTS_FILE));
    await writeFile(path.join(dir, WEIGHTS_FILE), w.subarray(0, w.length - 4));
    await rehash(dir);
    await rejects(dir, /weights\.safetensors: safetensors: .*truncated/);

    dir = await make('bad-config');
    await writeFile(path.join(dir, CONFIG_FILE), JSON.stringify({ ...config, labels: ['B-DIS', 'O'], model: { ...model, numHeads: 3 } }));
    await rehash(dir);
    await rejects(dir, /not a multiple of model\.numHeads[\s\S]*labels\[0\] must be "O"/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('writeArtifact refuses inconsistent weights and an existing directory unless told to overwrite', async () => {
  const root = await tempDir();
  try {
    const dir = path.join(root, 'a');
    const weights = randomWeights(model, 3);
    weights.delete('bert.encoder.layer.1.output.LayerNorm.bias');
    await assert.rejects(writeArtifact(dir, config, weights, { dtype: 'F32' }), /missing weight bert\.encoder\.layer\.1\.output\.LayerNorm\.bias/);
    assert.deepEqual(await readdir(root), []);
    const first = await writeArtifact(dir, config, randomWeights(model, 3), { dtype: 'F32' });
    await assert.rejects(writeArtifact(dir, config, randomWeights(model, 3), { dtype: 'F16' }), /already exists/);
    const second = await writeArtifact(dir, config, randomWeights(model, 3), { dtype: 'F16', overwrite: true });
    assert.notEqual(first.version.hash, second.version.hash);
    assert.deepEqual(await readdir(root), ['a']);
    assert.deepEqual((await loadArtifact(dir)).version, second.version);
    const weightsBack = toWeightMap(readSafetensors(await readFile(path.join(dir, WEIGHTS_FILE))));
    assert.equal(weightsBack.size, expectedWeightShapes(model, { numLabels: 3, mlmHead: false }).size);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('config.tokenizer: absent means full-width folding (every earlier model); recorded, checked and turned into the tokenizer', async () => {
  // Artifacts without the field (all this project trained so far) keep the folding tokenizer.
  assert.deepEqual(tokenizerConfigOf(config), { foldFullWidth: true });
  assert.deepEqual(tokenizerOptionsOf(parseArtifactConfig(JSON.parse(JSON.stringify(config)))), { foldFullWidth: true });
  const unfolded: ArtifactConfig = { ...config, tokenizer: { foldFullWidth: false } };
  assert.deepEqual(tokenizerConfigOf(unfolded), { foldFullWidth: false });
  assert.throws(() => parseArtifactConfig({ ...config, tokenizer: { foldFullWidth: 'no' } }), /tokenizer\.foldFullWidth must be true or false/);
  assert.throws(() => parseArtifactConfig({ ...config, tokenizer: null }), /tokenizer must be an object/);

  const root = await tempDir();
  try {
    const legacy = await writeArtifact(path.join(root, 'legacy'), config, randomWeights(model, 3), { dtype: 'F32' });
    const raw = await writeArtifact(path.join(root, 'raw'), unfolded, randomWeights(model, 3), { dtype: 'F32' });
    assert.equal(JSON.parse(await readFile(path.join(raw.dir, CONFIG_FILE), 'utf8')).tokenizer.foldFullWidth, false);
    assert.equal('tokenizer' in JSON.parse(await readFile(path.join(legacy.dir, CONFIG_FILE), 'utf8')), false);
    // The tokenizer each one needs, from one loaded tokenizer.
    const base = BertTokenizer.loadSync();
    const forRaw = base.withOptions(tokenizerOptionsOf((await loadArtifact(raw.dir)).config));
    assert.equal(forRaw.foldFullWidth, false);
    assert.equal(forRaw.tokenize('，')[0].id, 8024);
    assert.equal(base.withOptions(tokenizerOptionsOf((await loadArtifact(legacy.dir)).config)), base);
    // A caller that says which tokenizer it uses is refused a model made for the other one.
    await assert.rejects(loadArtifact(raw.dir, { foldFullWidth: true }), /does not fold full-width forms .*token ids would not match/);
    await assert.rejects(loadArtifact(legacy.dir, { foldFullWidth: false }), /folds full-width forms \(tokenizer\.foldFullWidth true\)/);
    assert.equal((await loadArtifact(raw.dir, { foldFullWidth: false })).version.name, config.name);
    assert.equal((await loadArtifact(legacy.dir, { foldFullWidth: true })).version.name, config.name);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('embeddingsShowFoldedText: full-width punctuation rows equal to [UNK] mark a checkpoint trained on folded text', () => {
  const hidden = 3;
  const vocab = new Map([['[UNK]', 1], ['，', 2], ['：', 3], ['；', 4], ['（', 5], ['）', 6], [',', 7]]);
  const tk = { unkId: 1, idOf: (t: string) => vocab.get(t) };
  const make = (rows: number[][]): WeightMap =>
    new Map([['bert.embeddings.word_embeddings.weight', { shape: [rows.length, hidden], data: Float32Array.from(rows.flat()) }]]);
  const unk = [0.5, -0.25, 1];
  // As python/rmbert_train/export.py fills ids never seen in a folded corpus: the [UNK] row.
  const folded = make([[0, 0, 0], unk, unk, unk, unk, unk, unk, [1, 2, 3]]);
  assert.equal(embeddingsShowFoldedText(folded, tk), true);
  // One learned row (as bert-base-chinese has for every one of them) is enough to say otherwise.
  const learned = make([[0, 0, 0], unk, unk, unk, [0.5, -0.25, 1.0001], unk, unk, [1, 2, 3]]);
  assert.equal(embeddingsShowFoldedText(learned, tk), false);
  // A vocabulary without these tokens, or no embeddings at all: no evidence.
  assert.equal(embeddingsShowFoldedText(folded, { unkId: 1, idOf: (t) => (t === '，' ? 2 : undefined) }), false);
  assert.equal(embeddingsShowFoldedText(new Map(), tk), false);
});
