/**
 * A small random-weight token classifier, so that `rmbert demo` runs end to end before a model has
 * been trained. Weights follow BERT's initialisation (N(0, 0.02), zero biases, unit LayerNorm) from a
 * seeded generator; the artifact is a real one (manifest, hashes), its predictions are noise.
 */
import { mulberry32 } from '../domain/random.ts';
import { expectedWeightShapes, writeArtifact } from '../model/artifact.ts';
import { SHIPPED_VOCAB_SHA256 } from '../model/tokenizer.ts';
import type { ArtifactConfig, BertConfig, ModelArtifact, WeightMap } from '../model/types.ts';

export const DEMO_LABELS = ['O', 'B-BodyPart', 'I-BodyPart', 'B-Symptom', 'I-Symptom', 'B-Disease', 'I-Disease', 'B-Examine', 'I-Examine', 'B-Cure', 'I-Cure'];

const DEMO_BERT: BertConfig = {
  vocabSize: 21128,
  hiddenSize: 64,
  numLayers: 2,
  numHeads: 2,
  intermediateSize: 128,
  maxPositions: 512,
  typeVocabSize: 2,
  layerNormEps: 1e-12,
};

export async function writeDemoArtifact(dir: string, seed = 1, name = 'rmbert-random-demo'): Promise<ModelArtifact> {
  const uniform = mulberry32(seed);
  const normal = () => Math.sqrt(-2 * Math.log(uniform() + 1e-12)) * Math.cos(2 * Math.PI * uniform());
  const weights: WeightMap = new Map();
  for (const [key, shape] of expectedWeightShapes(DEMO_BERT, { numLabels: DEMO_LABELS.length, mlmHead: false })) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (key.endsWith('LayerNorm.weight')) data.fill(1);
    else if (!key.endsWith('.bias')) for (let i = 0; i < data.length; i++) data[i] = Math.max(-0.04, Math.min(0.04, 0.02 * normal()));
    weights.set(key, { shape, data });
  }
  const config: ArtifactConfig = {
    name,
    model: DEMO_BERT,
    labels: DEMO_LABELS,
    vocabSha256: SHIPPED_VOCAB_SHA256,
    knowledge: { inject: 'relation+object', maxEntities: 2, maxLength: 256, enabled: true },
    training: { note: 'random weights: a stand-in for the demo when no trained model exists; predictions are noise' },
    createdAt: new Date().toISOString(),
  };
  return writeArtifact(dir, config, weights, { dtype: 'F32', overwrite: true });
}
