/**
 * The TensorFlow.js inference engine: the same BertModel that training uses, on the best tfjs backend the
 * host has (tfjs-node-gpu, tfjs-node, wasm, cpu; see backend.ts).
 *
 * Sentences are sorted into length buckets and cut into batches that pad only to their own longest
 * sentence, under a cap on padded tokens and on sentences per batch (the mask is batch x T x T, so the
 * cap bounds memory and latency). Inputs are written into reusable typed arrays; graph work runs inside
 * tf.tidy and results are read with `await data()` outside it, so no tensor outlives a call.
 */
import * as tf from '@tensorflow/tfjs-core';
import { writeAdditiveMask, type InjectedSentence, type ModelVersion } from '../domain/index.ts';
import { ModelError } from '../errors/index.ts';
import { selectBackend, type BackendChoice } from './backend.ts';
import { BertModel } from './bert.ts';
import { planBatches } from './onnx/batching.ts';
import type { InferenceEngine, ModelArtifact } from './types.ts';

export interface TfjsEngineOptions {
  /** tfjs backend (default 'auto'). */
  backend?: BackendChoice;
  /** Most padded tokens (sentences x longest length) per batch (default 4096). */
  maxBatchTokens?: number;
  /** Most sentences per batch (default 64). */
  maxBatchSize?: number;
  logger?: (line: string) => void;
}

/** Reusable input arrays for one batch, grown on demand. */
class InputBuffers {
  private ids = new Int32Array(0);
  private positions = new Int32Array(0);
  private segments = new Int32Array(0);
  private mask = new Float32Array(0);

  fill(sentences: readonly InjectedSentence[], seqLen: number, padId: number) {
    const tokens = sentences.length * seqLen;
    if (this.ids.length < tokens) {
      const capacity = Math.max(tokens, this.ids.length * 2);
      this.ids = new Int32Array(capacity);
      this.positions = new Int32Array(capacity);
      this.segments = new Int32Array(capacity);
    }
    if (this.mask.length < tokens * seqLen) this.mask = new Float32Array(Math.max(tokens * seqLen, this.mask.length * 2));
    const ids = this.ids.subarray(0, tokens);
    const positions = this.positions.subarray(0, tokens);
    const segments = this.segments.subarray(0, tokens);
    const mask = this.mask.subarray(0, tokens * seqLen);
    for (let b = 0; b < sentences.length; b++) {
      const s = sentences[b];
      const n = s.tokenIds.length;
      const base = b * seqLen;
      ids.set(s.tokenIds, base);
      positions.set(s.softPositions, base);
      segments.set(s.segmentIds, base);
      // Padding: pad token at position 0, segment 0; its rows see only token 0 and its outputs are dropped.
      ids.fill(padId, base + n, base + seqLen);
      positions.fill(0, base + n, base + seqLen);
      segments.fill(0, base + n, base + seqLen);
      writeAdditiveMask(s, mask, base * seqLen, seqLen);
    }
    return { ids, positions, segments, mask };
  }
}

export class TfjsEngine implements InferenceEngine {
  readonly name: string;
  readonly version: ModelVersion;
  readonly labels: readonly string[];
  private readonly model: BertModel;
  private readonly buffers = new InputBuffers();
  private readonly limits: { maxBatchTokens: number; maxBatchSize: number };
  private readonly padId = 0;
  private disposed = false;

  private constructor(name: string, artifact: ModelArtifact, model: BertModel, limits: { maxBatchTokens: number; maxBatchSize: number }) {
    this.name = name;
    this.version = artifact.version;
    this.labels = [...artifact.config.labels];
    this.model = model;
    this.limits = limits;
  }

  /** Builds the model from a loaded artifact on the chosen backend and warms it up. */
  static async load(artifact: ModelArtifact, opts: TfjsEngineOptions = {}): Promise<TfjsEngine> {
    const log = opts.logger ?? (() => {});
    const numLabels = artifact.config.labels.length;
    if (numLabels === 0) throw new ModelError(`artifact ${artifact.config.name} has no token-classification head (a backbone?); it cannot classify`);
    const limits = { maxBatchTokens: opts.maxBatchTokens ?? 4096, maxBatchSize: opts.maxBatchSize ?? 64 };
    if (!(limits.maxBatchTokens >= 1) || !(limits.maxBatchSize >= 1)) {
      throw new ModelError(`batch limits must be positive (maxBatchTokens ${limits.maxBatchTokens}, maxBatchSize ${limits.maxBatchSize})`);
    }
    const selection = await selectBackend(opts.backend ?? 'auto', log);
    // The MLM head is not needed to classify; leaving it out saves memory.
    const model = BertModel.fromWeights(artifact.config.model, artifact.weights, numLabels, { mlmHead: false });
    const engine = new TfjsEngine(selection.engineName, artifact, model, limits);
    await engine.warmUp();
    log(`tfjs engine ready on ${selection.engineName} (${artifact.config.name})`);
    return engine;
  }

  /** One small forward pass, so the first real request does not pay for kernel set-up and cached weights. */
  private async warmUp(): Promise<void> {
    const n = 4;
    const s: InjectedSentence = {
      tokenIds: Int32Array.from({ length: n }, (_, i) => (i + 100) % this.model.config.vocabSize),
      softPositions: Int32Array.from({ length: n }, (_, i) => i),
      segmentIds: new Int32Array(n),
      branch: new Int32Array(n).fill(-1),
      anchor: new Int32Array(n).fill(-1),
      charStart: new Int32Array(n).fill(-1),
      charEnd: new Int32Array(n).fill(-1),
    };
    await this.classify([s]);
  }

  private validate(sentences: readonly InjectedSentence[]): void {
    const { vocabSize, maxPositions, typeVocabSize } = this.model.config;
    sentences.forEach((s, i) => {
      const n = s.tokenIds.length;
      const problem = (what: string) => new ModelError(`sentence ${i}: ${what}`);
      if (n === 0) throw problem('has no tokens');
      if (s.softPositions.length !== n || s.segmentIds.length !== n || s.branch.length !== n || s.anchor.length !== n) {
        throw problem('tokenIds, softPositions, segmentIds, branch and anchor differ in length');
      }
      for (let t = 0; t < n; t++) {
        if (s.tokenIds[t] < 0 || s.tokenIds[t] >= vocabSize) throw problem(`token id ${s.tokenIds[t]} at ${t} is outside the vocabulary (0..${vocabSize - 1})`);
        if (s.softPositions[t] < 0 || s.softPositions[t] >= maxPositions) throw problem(`soft position ${s.softPositions[t]} at ${t} is outside 0..${maxPositions - 1}`);
        if (s.segmentIds[t] < 0 || s.segmentIds[t] >= typeVocabSize) throw problem(`segment id ${s.segmentIds[t]} at ${t} is outside 0..${typeVocabSize - 1}`);
      }
    });
  }

  async classify(sentences: readonly InjectedSentence[]): Promise<Float32Array[]> {
    if (this.disposed) throw new ModelError('tfjs engine has been disposed');
    this.validate(sentences);
    const numLabels = this.labels.length;
    const out: Float32Array[] = new Array(sentences.length);
    const batches = planBatches(
      sentences.map((s) => s.tokenIds.length),
      this.limits,
    );
    for (const plan of batches) {
      const group = plan.indices.map((i) => sentences[i]);
      const B = group.length;
      const T = plan.seqLen;
      const buf = this.buffers.fill(group, T, this.padId);
      const logits = tf.tidy(() =>
        this.model.tokenLogits({
          tokenIds: tf.tensor2d(buf.ids, [B, T], 'int32'),
          softPositions: tf.tensor2d(buf.positions, [B, T], 'int32'),
          segmentIds: tf.tensor2d(buf.segments, [B, T], 'int32'),
          mask: tf.tensor3d(buf.mask, [B, T, T], 'float32'),
        }),
      );
      let data: Float32Array;
      try {
        data = (await logits.data()) as Float32Array;
      } finally {
        logits.dispose();
      }
      plan.indices.forEach((idx, b) => {
        const n = sentences[idx].tokenIds.length;
        out[idx] = data.slice(b * T * numLabels, (b * T + n) * numLabels);
      });
    }
    return out;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.model.dispose();
  }
}
