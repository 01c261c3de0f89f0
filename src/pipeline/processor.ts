/**
 * One micro-batch through the pipeline: validate, segment, match concept names, fetch their triples
 * (one lookup for the whole batch), build sentence trees, classify every sentence of every document
 * in one engine call (the engine buckets by length), decode spans and assemble entities on the
 * original text with their linked triples and what the text asserts about them (negated, uncertain,
 * historical, someone else's).
 *
 * A document that cannot be processed becomes a failed outcome (it goes to the dead-letter topic);
 * its neighbours carry on. When the engine throws on the batch, the batch is retried document by
 * document to find the poison one(s).
 */
import type { Document, Entity, EntityAssertion, InjectedSentence, LinkedConcept, Sentence, Token, Triple } from '../domain/index.ts';
import { formatModelVersion } from '../domain/index.ts';
import { KnowledgeUnavailableError, ModelError, PoisonRecordError } from '../errors/index.ts';
import { AssertionStepError, DocumentProcessingError, InferenceError } from './errors.ts';
import type { KnowledgeGate } from './knowledge-gate.ts';
import { safeErrorMessage } from './logging.ts';
import type { AssertionAssessor, Logger, ModelRuntime, NameMatch, StageMetrics, StageName } from './ports.ts';
import { segmentSentences } from './segment.ts';
import { validateDocument, type DocumentLimits } from './validate.ts';

export interface Annotation {
  documentId: string;
  modelVersion: string;
  kgVersion: string;
  engine: string;
  entities: Entity[];
  kgDegraded: boolean;
  truncated: boolean;
  windowed: boolean;
  timingsMs: Record<string, number>;
  documentCreatedAt: number;
}

export type Outcome =
  | { ok: true; annotation: Annotation }
  | { ok: false; error: PoisonRecordError; stage: 'validate' | 'segment' | 'inject' | 'infer' | 'assemble' };

export interface BatchResult {
  /** One per input document, same order. */
  outcomes: Outcome[];
  modelVersion: string;
  engine: string;
  timingsMs: Partial<Record<StageName, number>>;
}

export interface ProcessorOptions {
  /** Null when the stage runs without a knowledge graph. */
  knowledge: KnowledgeGate | null;
  limits: DocumentLimits;
  metrics: StageMetrics;
  logger: Logger;
  /** Null or absent: assertions are off and every entity's assertion stays unset (null in the record: not assessed). */
  assertions?: AssertionAssessor | null;
}

interface DocWork {
  index: number;
  doc: Document;
  failed: Outcome | null;
  sentences: Sentence[];
  /** Tokens per sentence, offsets into the sentence. */
  tokens: Token[][];
  /** Matches per sentence, offsets into the sentence. */
  matches: NameMatch[][];
  windows: InjectedSentence[];
  truncated: boolean;
  windowed: boolean;
  degraded: boolean;
  logits: Float32Array[];
}

function fail(stage: Exclude<Outcome, { ok: true }>['stage'], error: unknown, Wrap: new (m: string, o: { cause?: unknown }) => PoisonRecordError): Outcome {
  if (error instanceof PoisonRecordError) return { ok: false, stage, error };
  const cls = error instanceof Error ? error.name : 'Error';
  return { ok: false, stage, error: new Wrap(`${stage} failed: ${cls}: ${safeErrorMessage(error)}`, { cause: error }) };
}

export class BatchProcessor {
  constructor(private readonly options: ProcessorOptions) {}

  async process(docs: readonly Document[], model: ModelRuntime): Promise<BatchResult> {
    const { metrics } = this.options;
    const timings: Partial<Record<StageName, number>> = {};
    const timed = <T>(stage: StageName, fn: () => T): T => {
      const t0 = performance.now();
      try {
        return fn();
      } finally {
        timings[stage] = (timings[stage] ?? 0) + (performance.now() - t0);
      }
    };
    const timedAsync = async <T>(stage: StageName, fn: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      try {
        return await fn();
      } finally {
        timings[stage] = (timings[stage] ?? 0) + (performance.now() - t0);
      }
    };

    const work: DocWork[] = docs.map((doc, index) => ({
      index,
      doc,
      failed: null,
      sentences: [],
      tokens: [],
      matches: [],
      windows: [],
      truncated: false,
      windowed: false,
      degraded: false,
      logits: [],
    }));
    const live = () => work.filter((w) => w.failed === null);

    timed('segment', () => {
      for (const w of work) {
        try {
          validateDocument(w.doc, this.options.limits);
        } catch (error) {
          w.failed = fail('validate', error, DocumentProcessingError);
          continue;
        }
        try {
          w.sentences = segmentSentences(w.doc.id, w.doc.text);
        } catch (error) {
          w.failed = fail('segment', error, DocumentProcessingError);
        }
      }
    });

    const gate = model.usesKnowledge ? this.options.knowledge : null;
    let triples: ReadonlyMap<string, readonly Triple[]> = new Map();
    let unresolved: ReadonlySet<string> = new Set();
    const names = new Set<string>();
    timed('match', () => {
      for (const w of live()) {
        try {
          w.tokens = w.sentences.map((s) => model.tokenize(s.text));
          if (!gate) continue;
          w.matches = w.sentences.map((s, i) => {
            try {
              return gate.source.match(s.text, w.tokens[i]);
            } catch (error) {
              // No concept names known yet (graph unreachable since start): no knowledge for this text.
              if (!(error instanceof KnowledgeUnavailableError)) throw error;
              w.degraded = true;
              return [];
            }
          });
          for (const list of w.matches) for (const m of list) for (const n of m.names) names.add(n);
        } catch (error) {
          w.failed = fail('inject', error, DocumentProcessingError);
        }
      }
    });
    if (gate) {
      const answer = await timedAsync('kg', () => gate.lookup([...names]));
      triples = answer.triples;
      unresolved = answer.unresolved;
    }

    timed('inject', () => {
      for (const w of live()) {
        try {
          w.sentences.forEach((sentence, i) => {
            const result = model.inject(sentence, w.tokens[i], w.matches[i] ?? [], triples);
            if (result.windows.length > 1) w.windowed = true;
            if (result.knowledgeDropped) w.truncated = true;
            for (const win of result.windows) w.windows.push(win);
          });
          if (unresolved.size > 0 && w.matches.some((list) => list.some((m) => m.names.some((n) => unresolved.has(n))))) w.degraded = true;
        } catch (error) {
          w.failed = fail('inject', error, DocumentProcessingError);
        }
      }
    });

    await timedAsync('infer', () => this.infer(live(), model));

    const kgVersion = gate ? gate.version() : '';
    const modelVersion = formatModelVersion(model.version);
    const outcomes: Outcome[] = new Array(work.length);
    timed('assemble', () => {
      for (const w of work) {
        if (w.failed) {
          outcomes[w.index] = w.failed;
          continue;
        }
        try {
          const entities = assembleEntities(w, model, triples);
          if (this.options.assertions) this.assess(w, entities, this.options.assertions);
          outcomes[w.index] = {
            ok: true,
            annotation: {
              documentId: w.doc.id,
              modelVersion,
              kgVersion,
              engine: model.engine,
              entities,
              kgDegraded: w.degraded,
              truncated: w.truncated,
              windowed: w.windowed,
              timingsMs: {},
              documentCreatedAt: w.doc.createdAt,
            },
          };
        } catch (error) {
          outcomes[w.index] = fail('assemble', error, DocumentProcessingError);
        }
      }
    });

    const rounded: Record<string, number> = {};
    for (const [stage, ms] of Object.entries(timings)) {
      rounded[stage] = Math.round(ms * 1000) / 1000;
      metrics.stageSeconds(stage as StageName, ms / 1000);
    }
    let degraded = 0;
    for (const o of outcomes) {
      if (o.ok) {
        o.annotation.timingsMs = rounded;
        if (o.annotation.kgDegraded) degraded++;
      }
    }
    if (degraded > 0) metrics.kgDegraded(degraded);
    return { outcomes, modelVersion, engine: model.engine, timingsMs: rounded };
  }

  /**
   * Sets each entity's assertion, sentence by sentence (the scopes never cross a sentence, and a long
   * document would otherwise pay entities x triggers over the whole text). A failure here leaves the
   * document's entities unassessed (null: not assessed, which is true) rather than dead-lettering
   * entities the model found correctly.
   */
  private assess(w: DocWork, entities: Entity[], assessor: AssertionAssessor): void {
    try {
      const assessed = assessBySentence(w.sentences, entities, assessor);
      for (let i = 0; i < entities.length; i++) if (assessed[i] !== undefined) entities[i].assertion = assessed[i];
    } catch (error) {
      this.options.logger.warn('assertion failed on a document; its entities are published unassessed', {
        documentId: w.doc.id,
        errorClass: error instanceof Error ? error.name : 'Error',
        error: safeErrorMessage(error),
      });
    }
  }

  /** One engine call for the whole batch; on failure, one per document to isolate the poison ones. */
  private async infer(work: DocWork[], model: ModelRuntime): Promise<void> {
    const all = work.flatMap((w) => w.windows);
    if (all.length === 0) return;
    try {
      const logits = await model.classify(all);
      let k = 0;
      for (const w of work) w.logits = logits.slice(k, (k += w.windows.length));
      return;
    } catch (error) {
      if (work.length === 1) {
        work[0].failed = fail('infer', error, InferenceError);
        this.options.logger.warn('model failed on a document; dead-lettering it', { documentId: work[0].doc.id, errorClass: (error as Error).name });
        return;
      }
      this.options.logger.warn('model failed on a micro-batch; retrying document by document', {
        documents: work.length,
        errorClass: error instanceof Error ? error.name : 'Error',
        error: safeErrorMessage(error),
      });
    }
    let failures = 0;
    let lastError: unknown;
    for (const w of work) {
      if (w.windows.length === 0) continue;
      try {
        w.logits = await model.classify(w.windows);
      } catch (error) {
        failures++;
        lastError = error;
        w.failed = fail('infer', error, InferenceError);
        this.options.logger.warn('model failed on a document; dead-lettering it', { documentId: w.doc.id, errorClass: (error as Error).name });
      }
    }
    const attempted = work.filter((w) => w.windows.length > 0).length;
    if (failures > 1 && failures === attempted) {
      // Every document failed on its own: the model is broken, not the input. Nothing is dead-lettered;
      // the micro-batch is retried, so no record is lost to a bad model.
      throw new ModelError(`the model failed on all ${failures} documents of the micro-batch`, { retriable: true, cause: lastError });
    }
  }
}

/**
 * Assertions for `entities` (document offsets, sorted by start, as resolveOverlaps leaves them), with
 * trigger offsets moved back into the document. An entity outside every sentence (none is: windows lie
 * within sentences) gets undefined. All or nothing: a count mismatch from the assessor throws.
 */
export function assessBySentence(sentences: readonly Sentence[], entities: readonly Entity[], assessor: AssertionAssessor): (EntityAssertion | undefined)[] {
  const out: (EntityAssertion | undefined)[] = new Array(entities.length).fill(undefined);
  let k = 0;
  for (const s of sentences) {
    while (k < entities.length && entities[k].start < s.start) k++;
    const from = k;
    while (k < entities.length && entities[k].end <= s.end) k++;
    if (k === from) continue;
    const local = entities.slice(from, k).map((e) => ({ start: e.start - s.start, end: e.end - s.start, type: e.type }));
    const assertions = assessor.annotate(s.text, local);
    if (assertions.length !== local.length) throw new AssertionStepError(`the assertion step returned ${assertions.length} assertions for ${local.length} entities`);
    assertions.forEach((a, i) => {
      out[from + i] = { ...a, triggers: a.triggers.map((t) => ({ ...t, start: t.start + s.start, end: t.end + s.start })) };
    });
  }
  return out;
}

function overlaps(aStart: number, aEnd: number, bStart: number, bEnd: number): boolean {
  return aStart < bEnd && bStart < aEnd;
}

function assembleEntities(w: DocWork, model: ModelRuntime, triples: ReadonlyMap<string, readonly Triple[]>): Entity[] {
  const candidates: Entity[] = [];
  // Matches in document offsets, for linking entities to the triples of the names inside them.
  const allMatches = w.matches.flatMap((list, i) =>
    list.map((m) => ({ start: m.start + w.sentences[i].start, end: m.end + w.sentences[i].start, names: m.names })),
  );
  w.windows.forEach((win, i) => {
    const logits = w.logits[i];
    if (!logits) throw new ModelError(`no logits for window ${i} of the document`);
    for (const span of model.decode(win, logits)) {
      const start = win.charStart[span.firstToken];
      const end = win.charEnd[span.lastToken];
      if (!(start >= 0 && end > start && end <= w.doc.text.length)) {
        throw new ModelError(`decoded span [${span.firstToken}, ${span.lastToken}] has no place in the original text`);
      }
      const linked: LinkedConcept[] = [];
      const seen = new Set<string>();
      for (const m of allMatches) {
        if (!overlaps(start, end, m.start, m.end)) continue;
        for (const name of m.names) {
          for (const t of triples.get(name) ?? []) {
            const key = `${t.relation}\u0000${t.object}`;
            if (seen.has(key)) continue;
            seen.add(key);
            linked.push({ relation: t.relation, object: t.object });
          }
        }
      }
      candidates.push({ start, end, text: w.doc.text.slice(start, end), type: span.type, score: span.score, linked });
    }
  });
  return resolveOverlaps(candidates);
}

/**
 * Windows of a long sentence overlap, so the same entity can be decoded twice, or cut differently at
 * a window edge. Keep non-overlapping spans, preferring the higher score (then the longer span).
 */
export function resolveOverlaps(entities: Entity[]): Entity[] {
  const ranked = [...entities].sort((a, b) => b.score - a.score || b.end - b.start - (a.end - a.start) || a.start - b.start);
  const kept: Entity[] = [];
  for (const e of ranked) if (!kept.some((k) => overlaps(k.start, k.end, e.start, e.end))) kept.push(e);
  return kept.sort((a, b) => a.start - b.start);
}
