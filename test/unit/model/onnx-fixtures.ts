/** Shared inputs for the ONNX engine tests: seeded randomness, random weights, hand-built sentence trees. */
import type { InjectedSentence } from '../../../src/domain/index.ts';
import type { BertConfig, WeightMap } from '../../../src/model/types.ts';

export type Rng = () => number;

export { mulberry32 } from '../../../src/domain/random.ts';

/** HF-named weights, uniform in [-scale, scale] (LayerNorm gains around 1). */
export function randomWeights(config: BertConfig, numLabels: number, rng: Rng, scale: number): WeightMap {
  const H = config.hiddenSize;
  const I = config.intermediateSize;
  const w: WeightMap = new Map();
  const put = (name: string, shape: number[], base = 0, s = scale) =>
    w.set(name, { shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => base + (rng() * 2 - 1) * s) });
  const e = 'bert.embeddings.';
  put(`${e}word_embeddings.weight`, [config.vocabSize, H]);
  put(`${e}position_embeddings.weight`, [config.maxPositions, H]);
  put(`${e}token_type_embeddings.weight`, [config.typeVocabSize, H]);
  put(`${e}LayerNorm.weight`, [H], 1, 0.1);
  put(`${e}LayerNorm.bias`, [H]);
  for (let l = 0; l < config.numLayers; l++) {
    const p = `bert.encoder.layer.${l}.`;
    for (const n of ['query', 'key', 'value']) {
      put(`${p}attention.self.${n}.weight`, [H, H]);
      put(`${p}attention.self.${n}.bias`, [H]);
    }
    put(`${p}attention.output.dense.weight`, [H, H]);
    put(`${p}attention.output.dense.bias`, [H]);
    put(`${p}attention.output.LayerNorm.weight`, [H], 1, 0.1);
    put(`${p}attention.output.LayerNorm.bias`, [H]);
    put(`${p}intermediate.dense.weight`, [I, H]);
    put(`${p}intermediate.dense.bias`, [I]);
    put(`${p}output.dense.weight`, [H, I]);
    put(`${p}output.dense.bias`, [H]);
    put(`${p}output.LayerNorm.weight`, [H], 1, 0.1);
    put(`${p}output.LayerNorm.bias`, [H]);
  }
  put('classifier.weight', [numLabels, H]);
  put('classifier.bias', [numLabels]);
  return w;
}

export interface HandMatch {
  /** Original-token range [start, end) of the matched name. */
  start: number;
  end: number;
  /** Token ids of each injected branch hanging on the name. */
  branches: number[][];
}

/**
 * A sentence tree built by hand from the rules in ARCHITECTURE.md: each name's branches follow its last
 * token; original tokens keep consecutive soft positions, a branch continues from the position after its
 * name, parallel branches share positions; `branch` numbers the branches, `anchor` the names. With `cls`,
 * a [CLS] token (soft position 0, no characters) comes first.
 */
export function sentenceTree(ids: number[], matches: HandMatch[], options: { cls?: number } = {}): InjectedSentence {
  const tokenIds: number[] = [];
  const soft: number[] = [];
  const branch: number[] = [];
  const anchor: number[] = [];
  const charStart: number[] = [];
  const offset = options.cls === undefined ? 0 : 1;
  if (options.cls !== undefined) {
    tokenIds.push(options.cls);
    soft.push(0);
    branch.push(-1);
    anchor.push(-1);
    charStart.push(-1);
  }
  let branchCount = 0;
  for (let i = 0; i < ids.length; i++) {
    const m = matches.findIndex((x) => i >= x.start && i < x.end);
    tokenIds.push(ids[i]);
    soft.push(i + offset);
    branch.push(-1);
    anchor.push(m);
    charStart.push(i);
    if (m >= 0 && i === matches[m].end - 1) {
      for (const b of matches[m].branches) {
        b.forEach((id, k) => {
          tokenIds.push(id);
          soft.push(i + offset + 1 + k);
          branch.push(branchCount);
          anchor.push(m);
          charStart.push(-1);
        });
        branchCount++;
      }
    }
  }
  const n = tokenIds.length;
  return {
    tokenIds: Int32Array.from(tokenIds),
    softPositions: Int32Array.from(soft),
    segmentIds: new Int32Array(n),
    branch: Int32Array.from(branch),
    anchor: Int32Array.from(anchor),
    charStart: Int32Array.from(charStart),
    charEnd: Int32Array.from(charStart, (c) => (c < 0 ? -1 : c + 1)),
  };
}
