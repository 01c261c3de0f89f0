/**
 * A heavy document annotated piece by piece. Building sentence trees for a 100,000-character document
 * at once is seconds of synchronous work (and hundreds of MB of visibility matrices) during which
 * nothing else in the process runs. Cut at sentence boundaries, pieces of a few thousand characters go
 * through the pipeline one after the other, the event loop free in between; their annotations are
 * joined with offsets moved back into the document. Sentences, windows and assertion scopes never
 * cross a sentence boundary, so the joined annotation is the one the whole document would get.
 */
import type { Document, Entity } from '../domain/index.ts';
import type { ModelRuntime } from './ports.ts';
import type { Annotation, BatchProcessor, BatchResult, Outcome } from './processor.ts';
import { segmentSentences } from './segment.ts';

/** Characters per piece (about a hundred sentences of clinical text). */
export const PIECE_CHARS = 4000;

/**
 * Start offsets of pieces of at least `pieceChars` characters, each starting at a sentence start (the
 * first at 0). A sentence longer than twice `pieceChars` (text without sentence ends) is cut every
 * `pieceChars` characters, as the model's windows cut a long sentence anyway: an entity across such a
 * cut is found as two.
 */
export function pieceStarts(text: string, pieceChars = PIECE_CHARS): number[] {
  const starts = [0];
  const cutLong = (until: number) => {
    while (until - starts[starts.length - 1] > 2 * pieceChars) {
      let at = starts[starts.length - 1] + pieceChars;
      // Never between the two halves of a surrogate pair.
      if (at < text.length && text.charCodeAt(at) >= 0xdc00 && text.charCodeAt(at) <= 0xdfff) at++;
      starts.push(at);
    }
  };
  for (const s of segmentSentences('', text)) {
    cutLong(s.start);
    if (s.start - starts[starts.length - 1] >= pieceChars) starts.push(s.start);
  }
  cutLong(text.length);
  return starts;
}

function shift(entity: Entity, by: number): Entity {
  const moved: Entity = { ...entity, start: entity.start + by, end: entity.end + by };
  if (entity.assertion) moved.assertion = { ...entity.assertion, triggers: entity.assertion.triggers.map((t) => ({ ...t, start: t.start + by, end: t.end + by })) };
  return moved;
}

/** Annotates one document in pieces (see above); the result is as for a micro-batch of that one document. */
export async function processInPieces(
  processor: BatchProcessor,
  doc: Document,
  model: ModelRuntime,
  options: { pieceChars?: number; beforePiece?: () => Promise<void> } = {},
): Promise<BatchResult> {
  const pieceChars = options.pieceChars ?? PIECE_CHARS;
  const starts = pieceStarts(doc.text, pieceChars);
  if (starts.length === 1) return processor.process([doc], model);
  const parts: Annotation[] = [];
  const timings: Record<string, number> = {};
  let last: BatchResult | null = null;
  for (let i = 0; i < starts.length; i++) {
    // Let the rest of the process (the normal lane, heartbeats, commits) run between pieces.
    await new Promise<void>((resolve) => setImmediate(resolve));
    await options.beforePiece?.();
    const from = starts[i];
    const to = i + 1 < starts.length ? starts[i + 1] : doc.text.length;
    const result = await processor.process([{ ...doc, text: doc.text.slice(from, to) }], model);
    last = result;
    for (const [stage, ms] of Object.entries(result.timingsMs)) timings[stage] = (timings[stage] ?? 0) + (ms ?? 0);
    const outcome: Outcome = result.outcomes[0];
    // A piece that fails fails the document (dead-lettered whole, as it would be in one go).
    if (!outcome.ok) return { ...result, timingsMs: timings };
    parts.push({ ...outcome.annotation, entities: outcome.annotation.entities.map((e) => shift(e, from)) });
  }
  const rounded = Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v * 1000) / 1000]));
  const annotation: Annotation = {
    ...parts[0],
    entities: parts.flatMap((p) => p.entities),
    kgDegraded: parts.some((p) => p.kgDegraded),
    truncated: parts.some((p) => p.truncated),
    windowed: parts.some((p) => p.windowed),
    timingsMs: rounded,
  };
  return { ...last!, outcomes: [{ ok: true, annotation }], timingsMs: rounded };
}
