/**
 * Keeps the matcher in step with the graph, and injects knowledge into batches of sentences.
 *
 * A snapshot pairs a matcher built from the graph's concept names with a triple cache for the same
 * graph version. `KnowledgeService` polls the version stamp and, when it changes, builds a new
 * snapshot aside and swaps it in with one assignment: a batch that took the old snapshot finishes
 * with it, the next batch gets the new one; no restart, no mixed versions within a batch.
 */
import type { TokenizerPort, Triple } from '../domain/index.ts';
import { KnowledgeUnavailableError } from '../errors/index.ts';
import type { KgStamp, KnowledgeGraph } from './graph.ts';
import { TripleLookup } from './lookup.ts';
import type { KnowledgeMetrics } from './lookup.ts';
import { ConceptMatcher } from './matcher.ts';
import type { ConceptMatch } from './matcher.ts';
import { SentenceTreeBuilder } from './sentence-tree.ts';
import type { SentenceTree, SentenceTreeOptions, TreeMatch } from './sentence-tree.ts';

export interface KnowledgeSnapshot {
  /** The graph's version stamp when the snapshot was built; null for a graph without a stamp. */
  readonly version: string | null;
  readonly stamp: KgStamp | null;
  readonly matcher: ConceptMatcher;
  readonly lookup: TripleLookup;
}

export interface SnapshotOptions {
  /** Triples per name fetched and cached (K-BERT: 2). */
  maxEntities: number;
  cacheSize?: number;
  metrics?: KnowledgeMetrics;
}

/** Builds a snapshot of the graph as it is now (reads every subject name once). */
export async function createSnapshot(graph: KnowledgeGraph, options: SnapshotOptions): Promise<KnowledgeSnapshot> {
  const stamp = await graph.stamp();
  const matcher = ConceptMatcher.build(await graph.subjects());
  const lookup = new TripleLookup(graph, options);
  return Object.freeze({ version: stamp?.version ?? null, stamp, matcher, lookup });
}

/** Whatever holds the graph's current snapshot (the live service, or a fixed snapshot for training). */
export interface SnapshotSource {
  readonly current: KnowledgeSnapshot;
}

export interface KnowledgeServiceOptions extends SnapshotOptions {
  /** Called after a new snapshot was swapped in. */
  onSwap?: (snapshot: KnowledgeSnapshot, previous: KnowledgeSnapshot) => void;
  /** Called when a background version check fails (the current snapshot stays in service). */
  onError?: (error: unknown) => void;
}

export class KnowledgeService implements SnapshotSource {
  private snapshot: KnowledgeSnapshot;
  private readonly graph: KnowledgeGraph;
  private readonly options: KnowledgeServiceOptions;
  private inFlight: Promise<boolean> | null = null;
  private timer: NodeJS.Timeout | null = null;

  private constructor(graph: KnowledgeGraph, snapshot: KnowledgeSnapshot, options: KnowledgeServiceOptions) {
    this.graph = graph;
    this.snapshot = snapshot;
    this.options = options;
  }

  /** Builds the first snapshot; throws KnowledgeUnavailableError when the graph cannot be read. */
  static async open(graph: KnowledgeGraph, options: KnowledgeServiceOptions): Promise<KnowledgeService> {
    return new KnowledgeService(graph, await createSnapshot(graph, options), options);
  }

  get current(): KnowledgeSnapshot {
    return this.snapshot;
  }

  /**
   * Checks the graph's version and swaps in a new snapshot if it changed. Returns true when it
   * swapped. A graph without a stamp (a load under way) keeps the current snapshot. Concurrent calls
   * share one check.
   */
  refresh(): Promise<boolean> {
    if (!this.inFlight) {
      this.inFlight = this.check().finally(() => {
        this.inFlight = null;
      });
    }
    return this.inFlight;
  }

  private async check(): Promise<boolean> {
    const stamp = await this.graph.stamp();
    if (stamp === null || stamp.version === this.snapshot.version) return false;
    const next = await createSnapshot(this.graph, this.options);
    // A load may have started while the names were read: only a snapshot whose version is still
    // the graph's (before and after reading) is consistent.
    if (next.version !== stamp.version) return false;
    const after = await this.graph.stamp();
    if (after?.version !== stamp.version) return false;
    const previous = this.snapshot;
    this.snapshot = next;
    this.options.onSwap?.(next, previous);
    return true;
  }

  /** Checks the version every `intervalMs` in the background until `close`. */
  startPolling(intervalMs: number): void {
    this.stopPolling();
    this.timer = setInterval(() => {
      this.refresh().catch((error: unknown) => this.options.onError?.(error));
    }, intervalMs);
    this.timer.unref();
  }

  stopPolling(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Stops polling; the graph is the caller's to close. */
  async close(): Promise<void> {
    this.stopPolling();
    await this.inFlight?.catch(() => undefined);
  }
}

/** A fixed snapshot as a source (tests, offline training on a graph that does not change). */
export function staticKnowledge(snapshot: KnowledgeSnapshot): SnapshotSource {
  return { current: snapshot };
}

/**
 * The triples to inject for one match: those of its name, or, when several graph names normalise
 * to the matched text, theirs merged in (relation, object) order without repeats.
 */
export function triplesForMatch(
  match: Pick<ConceptMatch, 'names'>,
  found: ReadonlyMap<string, readonly Triple[]>,
  maxEntities: number,
): readonly Triple[] {
  if (match.names.length === 1) return (found.get(match.names[0]) ?? []).slice(0, maxEntities);
  const seen = new Set<string>();
  const merged: Triple[] = [];
  for (const name of match.names) {
    for (const t of found.get(name) ?? []) {
      const key = `${t.relation}\t${t.object}`;
      if (seen.has(key)) continue;
      seen.add(key);
      merged.push(t);
    }
  }
  merged.sort((a, b) => (a.relation < b.relation ? -1 : a.relation > b.relation ? 1 : a.object < b.object ? -1 : a.object > b.object ? 1 : 0));
  return merged.slice(0, maxEntities);
}

export interface SentenceInput {
  text: string;
  /** Offset of the sentence in its document (default 0). */
  start?: number;
}

export interface InjectedBatch {
  /** Per input sentence, its model inputs (usually one; several windows for long sentences). */
  trees: SentenceTree[][];
  /** Version of the graph the batch was injected from (null without knowledge or stamp). */
  kgVersion: string | null;
  /** True when the graph could not be reached and only cached triples were used. */
  degraded: boolean;
  /** Distinct matched names whose triples were unknown (degraded mode); they got no branches. */
  namesWithoutTriples: number;
  /** Graph round trips made for this batch (0 or 1). */
  roundTrips: number;
}

export interface KnowledgeInjectorOptions extends SentenceTreeOptions {
  /** After the graph failed, use the cache alone for this long before trying the graph again (default 5000 ms). */
  degradedRetryMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

/**
 * Per batch: tokenize, match names, one lookup for all the batch's names, build the sentence trees.
 * When the graph is unreachable the batch still flows with cached triples (`degraded`).
 */
export class KnowledgeInjector {
  readonly builder: SentenceTreeBuilder;
  private readonly tokenizer: TokenizerPort;
  private readonly source: SnapshotSource | null;
  private readonly degradedRetryMs: number;
  private readonly now: () => number;
  private degradedUntil = -Infinity;

  /** `source` may be null only for the model input without knowledge (`knowledge: false`). */
  constructor(tokenizer: TokenizerPort, source: SnapshotSource | null, options: KnowledgeInjectorOptions = {}) {
    this.tokenizer = tokenizer;
    this.builder = new SentenceTreeBuilder(tokenizer, options);
    if (source === null && this.builder.options.knowledge) {
      throw new RangeError('a knowledge source is required unless knowledge injection is off');
    }
    this.source = source;
    this.degradedRetryMs = options.degradedRetryMs ?? 5000;
    this.now = options.now ?? (() => performance.now());
  }

  async inject(sentences: readonly SentenceInput[]): Promise<InjectedBatch> {
    const tokenized = sentences.map((s) => this.tokenizer.tokenize(s.text));
    const { knowledge, maxEntities } = this.builder.options;
    if (!knowledge || this.source === null || maxEntities === 0) {
      return {
        trees: sentences.map((s, i) => this.builder.build({ text: s.text, start: s.start, tokens: tokenized[i] })),
        kgVersion: knowledge ? (this.source?.current.version ?? null) : null,
        degraded: false,
        namesWithoutTriples: 0,
        roundTrips: 0,
      };
    }
    const snapshot = this.source.current;
    const matches = sentences.map((s, i) => snapshot.matcher.match(s.text, { tokens: tokenized[i] }));
    const names = new Set<string>();
    for (const list of matches) for (const m of list) for (const name of m.names) names.add(name);

    let found: ReadonlyMap<string, readonly Triple[]>;
    let degraded = false;
    let missing = 0;
    let roundTrips = 0;
    const tripsBefore = snapshot.lookup.roundTrips;
    if (this.now() < this.degradedUntil) {
      const cached = snapshot.lookup.lookupCached(names);
      found = cached.triples;
      missing = cached.missing.length;
      degraded = missing > 0;
    } else {
      try {
        found = await snapshot.lookup.lookup(names);
        this.degradedUntil = -Infinity;
      } catch (error) {
        if (!(error instanceof KnowledgeUnavailableError)) throw error;
        this.degradedUntil = this.now() + this.degradedRetryMs;
        // Hits and misses of these names were counted by the failed lookup already.
        const cached = snapshot.lookup.lookupCached(names, false);
        found = cached.triples;
        missing = cached.missing.length;
        degraded = missing > 0;
      }
      roundTrips = snapshot.lookup.roundTrips - tripsBefore;
    }

    const trees = sentences.map((s, i) => {
      const treeMatches: TreeMatch[] = matches[i].map((m) => ({
        start: m.start,
        end: m.end,
        triples: triplesForMatch(m, found, maxEntities),
      }));
      return this.builder.build({ text: s.text, start: s.start, tokens: tokenized[i], matches: treeMatches });
    });
    return { trees, kgVersion: snapshot.version, degraded, namesWithoutTriples: missing, roundTrips };
  }
}
