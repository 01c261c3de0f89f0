/**
 * Length-bucketed batching: sentences sorted by length, cut into batches that pad only to their own
 * longest sentence, with a cap on padded tokens (batch x seq) and on sentences per batch. Sorting keeps
 * padding small; the token cap keeps memory (the mask is batch x seq x seq) and latency bounded.
 */
import type { InjectedSentence } from '../../domain/index.ts';

export interface BatchLimits {
  /** Most padded tokens (sentences x longest length) in one batch; a longer single sentence runs alone. */
  maxBatchTokens: number;
  /** Most sentences in one batch. */
  maxBatchSize: number;
}

export interface PlannedBatch {
  /** Indices into the input, shortest first. */
  indices: number[];
  /** Padded length = the longest sentence in the batch. */
  seqLen: number;
}

export function planBatches(lengths: readonly number[], limits: BatchLimits): PlannedBatch[] {
  if (!(limits.maxBatchTokens >= 1) || !(limits.maxBatchSize >= 1)) {
    throw new RangeError(`batch limits must be positive (maxBatchTokens ${limits.maxBatchTokens}, maxBatchSize ${limits.maxBatchSize})`);
  }
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[a] - lengths[b] || a - b);
  const batches: PlannedBatch[] = [];
  let current: PlannedBatch | null = null;
  for (const i of order) {
    const len = lengths[i];
    if (current) {
      const count = current.indices.length;
      if (count < limits.maxBatchSize && (count + 1) * Math.max(len, current.seqLen) <= limits.maxBatchTokens) {
        current.indices.push(i);
        current.seqLen = Math.max(current.seqLen, len);
        continue;
      }
    }
    current = { indices: [i], seqLen: len };
    batches.push(current);
  }
  return batches;
}

/**
 * Reusable input buffers for one batch shape, grown on demand. int64 ids are written through an Int32Array
 * view (low word = value, high word = sign) so no BigInt is made per token.
 */
export class BatchBuffers {
  private ids = new BigInt64Array(0);
  private positions = new BigInt64Array(0);
  private segments = new BigInt64Array(0);
  private mask = new Float32Array(0);

  /** Fills the buffers for `sentences` padded to `seqLen` and returns views of the exact sizes. */
  fill(
    sentences: readonly InjectedSentence[],
    seqLen: number,
    writeMask: (s: InjectedSentence, out: Float32Array, offset: number, stride: number) => void,
    padId: number,
  ): { ids: BigInt64Array; positions: BigInt64Array; segments: BigInt64Array; mask: Float32Array } {
    const batch = sentences.length;
    const tokens = batch * seqLen;
    if (this.ids.length < tokens) {
      const capacity = Math.max(tokens, this.ids.length * 2);
      this.ids = new BigInt64Array(capacity);
      this.positions = new BigInt64Array(capacity);
      this.segments = new BigInt64Array(capacity);
    }
    if (this.mask.length < tokens * seqLen) this.mask = new Float32Array(Math.max(tokens * seqLen, this.mask.length * 2));
    const ids = this.ids.subarray(0, tokens);
    const positions = this.positions.subarray(0, tokens);
    const segments = this.segments.subarray(0, tokens);
    const mask = this.mask.subarray(0, tokens * seqLen);
    const ids32 = new Int32Array(ids.buffer, ids.byteOffset, tokens * 2);
    const pos32 = new Int32Array(positions.buffer, positions.byteOffset, tokens * 2);
    const seg32 = new Int32Array(segments.buffer, segments.byteOffset, tokens * 2);
    for (let b = 0; b < batch; b++) {
      const s = sentences[b];
      const n = s.tokenIds.length;
      const base = b * seqLen;
      for (let t = 0; t < seqLen; t++) {
        const k = 2 * (base + t);
        // Padding: pad token, position 0, segment 0; its rows are masked and its outputs dropped.
        const id = t < n ? s.tokenIds[t] : padId;
        const pos = t < n ? s.softPositions[t] : 0;
        const seg = t < n ? s.segmentIds[t] : 0;
        ids32[k] = id;
        ids32[k + 1] = id < 0 ? -1 : 0;
        pos32[k] = pos;
        pos32[k + 1] = pos < 0 ? -1 : 0;
        seg32[k] = seg;
        seg32[k + 1] = seg < 0 ? -1 : 0;
      }
      writeMask(s, mask, base * seqLen, seqLen);
    }
    return { ids, positions, segments, mask };
  }
}
