/**
 * What a document costs the stage, in character units: its characters plus SENTENCE_COST per
 * sentence. Inference time grows with the text and with the number of windows (each sentence is at
 * least one, with its special tokens, its padding to a length bucket, its visibility matrix and its
 * decoding), so 8,600 characters of 痛。 (4,300 sentences) cost far more than 8,600 characters of
 * ordinary clinical prose. SENTENCE_COST is an estimate of that per-window overhead, not a measured
 * constant. Micro-batches are cut on this cost, and it decides which documents go to the heavy lane.
 */

/** Character units a sentence costs beyond its characters. */
export const SENTENCE_COST = 16;

const ENDS = new Set(['。', '！', '？', '；', '!', '?', ';', '\n', '\r', '\u2028', '\u2029']);

/** Characters + SENTENCE_COST per sentence (a run of terminators or line breaks ends one sentence). */
export function documentCost(text: string): number {
  let sentences = 1;
  let previousEnd = false;
  for (let i = 0; i < text.length; i++) {
    const end = ENDS.has(text[i]);
    if (end && !previousEnd) sentences++;
    previousEnd = end;
  }
  return text.length + SENTENCE_COST * sentences;
}
