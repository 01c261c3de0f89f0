/**
 * The small interfaces the per-batch flow depends on. Adapters (Neo4j or in-memory graph, the
 * tokenizer and an inference engine, prom-client, a log sink) are wired to them in src/cli/;
 * nothing in src/pipeline/ knows kafkajs, neo4j-driver, tfjs, onnxruntime, avsc or prom-client.
 */
import type { DecodedSpan, EntityAssertion, InjectedSentence, ModelVersion, Sentence, Span, Token, Triple } from '../domain/index.ts';

// ---- Knowledge ----

/** A knowledge-graph concept name found in a text. */
export interface NameMatch {
  /** [start, end) in UTF-16 code units of the text given to `match`. */
  start: number;
  end: number;
  /** Graph names that matched here (usually one). */
  names: readonly string[];
}

export interface CachedTriples {
  triples: ReadonlyMap<string, readonly Triple[]>;
  /** Names the cache does not hold. */
  missing: readonly string[];
}

/** Where the stage gets knowledge: a graph store behind a cache. */
export interface KnowledgeSource {
  /** Version stamp of the graph (content hash), written into every output record. */
  version(): string;
  /**
   * Concept names in a sentence (leftmost-longest, non-overlapping, on token boundaries). Throws
   * KnowledgeUnavailableError when the source has no names yet (graph unreachable since start).
   */
  match(text: string, tokens: readonly Token[]): NameMatch[];
  /** Triples of every name in one round trip (cache first). Throws KnowledgeUnavailableError when the store is down. */
  lookup(names: readonly string[]): Promise<ReadonlyMap<string, readonly Triple[]>>;
  /** Cache-only lookup, for when the store is down. */
  lookupCached(names: readonly string[]): CachedTriples;
  /** A cheap request that succeeds only when the store answers. */
  probe(): Promise<void>;
  /** False while the source has not been able to read the graph yet (unreachable since start); absent means it has. */
  isOpen?(): boolean;
}

// ---- Model ----

/** Sentence trees for one sentence: one window unless the sentence is over the model's length budget. */
export interface InjectionResult {
  windows: InjectedSentence[];
  /** Injected branches were dropped to fit the budget (original text is never dropped). */
  knowledgeDropped: boolean;
}

/** A loaded, verified and warmed model, ready to serve. */
export interface ModelRuntime {
  readonly version: ModelVersion;
  /** e.g. "onnxruntime-cpu", "tfjs-wasm". */
  readonly engine: string;
  /** False for a model trained without knowledge injection: the stage then skips matching and lookup. */
  readonly usesKnowledge: boolean;
  /** The model's tokenizer (offsets into `text`). */
  tokenize(text: string): Token[];
  /**
   * Builds the sentence trees with this model's knowledge options; `tokens` and `matches` are those of
   * `sentence.text` (offsets into it), the trees' charStart/charEnd are offsets into the document.
   */
  inject(sentence: Sentence, tokens: readonly Token[], matches: readonly NameMatch[], triples: ReadonlyMap<string, readonly Triple[]>): InjectionResult;
  /** Logits for every sentence; batches internally (length buckets). */
  classify(sentences: readonly InjectedSentence[]): Promise<Float32Array[]>;
  /** Valid BIO spans over the original tokens of one sentence. */
  decode(sentence: InjectedSentence, logits: Float32Array): DecodedSpan[];
  dispose(): Promise<void>;
}

/**
 * A model that delegates to `model` except where `overrides` says otherwise: to observe or alter
 * what reaches the engine (benchmarks capture the injected sentences, tests poison some).
 */
export function delegatingModel(model: ModelRuntime, overrides: Partial<Pick<ModelRuntime, 'inject' | 'classify'>>): ModelRuntime {
  return {
    version: model.version,
    engine: model.engine,
    usesKnowledge: model.usesKnowledge,
    tokenize: (text) => model.tokenize(text),
    inject: overrides.inject ?? ((sentence, tokens, matches, triples) => model.inject(sentence, tokens, matches, triples)),
    classify: overrides.classify ?? ((sentences) => model.classify(sentences)),
    decode: (sentence, logits) => model.decode(sentence, logits),
    dispose: () => model.dispose(),
  };
}

/** What to load: an artifact directory, optionally pinned to a manifest hash. */
export interface ModelRequest {
  location: string;
  /** Hex sha256 the artifact's manifest must have; a mismatch refuses the artifact. */
  sha256?: string;
  /** Version name announced with the request, for logs. */
  announcedVersion?: string;
  reason: 'startup' | 'model-update' | 'model-directory';
}

export interface ModelLoader {
  /** Loads, verifies (manifest sha256) and warms a model; throws ModelError for a bad or tampered artifact. */
  load(request: ModelRequest): Promise<ModelRuntime>;
}

// ---- Assertion ----

/** An entity to assess: offsets into the text given to `annotate`, and its type (BodyPart is a place, not a finding). */
export interface AssertionTarget extends Span {
  type: string;
}

/**
 * What the text asserts about each entity (negated, uncertain, historical, someone else's). The lexicon
 * behind it is read by the composition root at start, so the per-batch flow never touches files.
 * src/assertion's AssertionAnnotator implements it.
 */
export interface AssertionAssessor {
  /** One assertion per entity, same order; trigger offsets are into `text`. Pure: no I/O. */
  annotate(text: string, entities: readonly AssertionTarget[]): EntityAssertion[];
}

// ---- Metrics ----

export type StageName = 'decode' | 'segment' | 'match' | 'kg' | 'inject' | 'infer' | 'assemble' | 'publish';
export const STAGE_NAMES: readonly StageName[] = ['decode', 'segment', 'match', 'kg', 'inject', 'infer', 'assemble', 'publish'];

/**
 * How the stage reports. Labels carry only bounded, non-identifying values (stage names, error
 * classes, topic/partition, versions): never document text, ids or patient references.
 */
export interface StageMetrics {
  recordsIn(count: number): void;
  recordsOut(count: number): void;
  deadLettered(errorClass: string, count?: number): void;
  microBatch(records: number, bytes: number, seconds: number): void;
  stageSeconds(stage: StageName, seconds: number): void;
  endToEndSeconds(seconds: number): void;
  kgCache(hits: number, misses: number): void;
  kgDegraded(documents: number): void;
  kgAvailable(up: boolean): void;
  consumerLag(topic: string, partition: number, lag: number): void;
  modelServed(version: string, engine: string): void;
  modelSwap(outcome: 'installed' | 'refused' | 'unchanged'): void;
  transactionAborted(): void;
}

export const NO_STAGE_METRICS: StageMetrics = Object.freeze({
  recordsIn: () => undefined,
  recordsOut: () => undefined,
  deadLettered: () => undefined,
  microBatch: () => undefined,
  stageSeconds: () => undefined,
  endToEndSeconds: () => undefined,
  kgCache: () => undefined,
  kgDegraded: () => undefined,
  kgAvailable: () => undefined,
  consumerLag: () => undefined,
  modelServed: () => undefined,
  modelSwap: () => undefined,
  transactionAborted: () => undefined,
});

// ---- Logging ----

export type LogFields = Record<string, unknown>;

/** Structured logging: one event per call. Never pass document text or patient references. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every event. */
  child(fields: LogFields): Logger;
}
