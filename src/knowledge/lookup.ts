/**
 * Triple lookup for a batch of matched names: cache first, then one graph round trip for the
 * misses. The cache is a bounded LRU over names and keeps negative entries (names with no triple),
 * so a name the graph does not know costs one query, not one per batch.
 */
import type { Triple } from '../domain/index.ts';
import { RmBertError } from '../errors/index.ts';
import type { KnowledgeGraph } from './graph.ts';

/** Hooks for metrics; the metrics layer implements them (nothing here knows prom-client). */
export interface KnowledgeMetrics {
  /** `n` names answered from the cache. */
  onCacheHit(n: number): void;
  /** `n` names not in the cache. */
  onCacheMiss(n: number): void;
  /** One graph round trip took `ms` milliseconds (successful or not). */
  onQuery(ms: number): void;
}

export const NO_METRICS: KnowledgeMetrics = Object.freeze({
  onCacheHit: () => undefined,
  onCacheMiss: () => undefined,
  onQuery: () => undefined,
});

/** A bounded least-recently-used map (Map keeps insertion order; a hit re-inserts). */
export class LruCache<K, V> {
  readonly capacity: number;
  private readonly map = new Map<K, V>();

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`LRU capacity must be a positive integer, got ${capacity}`);
    this.capacity = capacity;
  }

  get size(): number {
    return this.map.size;
  }

  get(key: K): V | undefined {
    const value = this.map.get(key);
    if (value === undefined) return undefined;
    this.map.delete(key);
    this.map.set(key, value);
    return value;
  }

  /** Looks without refreshing recency. */
  peek(key: K): V | undefined {
    return this.map.get(key);
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  set(key: K, value: V): void {
    if (this.map.has(key)) this.map.delete(key);
    else if (this.map.size >= this.capacity) {
      const oldest = this.map.keys().next().value as K;
      this.map.delete(oldest);
    }
    this.map.set(key, value);
  }

  clear(): void {
    this.map.clear();
  }
}

export interface TripleLookupOptions {
  /** At most this many triples per name (K-BERT: 2). */
  maxEntities: number;
  /** Names kept in the cache (default 100,000). */
  cacheSize?: number;
  metrics?: KnowledgeMetrics;
}

export interface CachedLookup {
  /** Triples of the names found in the cache (an empty array for a cached negative). */
  triples: Map<string, readonly Triple[]>;
  /** Names not in the cache. */
  missing: string[];
}

const NONE: readonly Triple[] = Object.freeze([]);

export class TripleLookup {
  readonly maxEntities: number;
  private readonly graph: KnowledgeGraph;
  private readonly cache: LruCache<string, readonly Triple[]>;
  private readonly metrics: KnowledgeMetrics;
  private queries = 0;

  constructor(graph: KnowledgeGraph, options: TripleLookupOptions) {
    if (!Number.isInteger(options.maxEntities) || options.maxEntities < 0) {
      throw new RangeError(`maxEntities must be a non-negative integer, got ${options.maxEntities}`);
    }
    this.graph = graph;
    this.maxEntities = options.maxEntities;
    this.cache = new LruCache(options.cacheSize ?? 100_000);
    this.metrics = options.metrics ?? NO_METRICS;
  }

  /** Graph round trips made so far. */
  get roundTrips(): number {
    return this.queries;
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  /**
   * Cache-only lookup (degraded mode): never touches the graph. Reports hits and misses to the
   * metrics unless `countMetrics` is false (for a retry of names already counted).
   */
  lookupCached(names: Iterable<string>, countMetrics = true): CachedLookup {
    const triples = new Map<string, readonly Triple[]>();
    const missing: string[] = [];
    const seen = new Set<string>();
    for (const name of names) {
      if (seen.has(name)) continue;
      seen.add(name);
      const cached = this.cache.get(name);
      if (cached === undefined) missing.push(name);
      else triples.set(name, cached);
    }
    if (countMetrics && triples.size > 0) this.metrics.onCacheHit(triples.size);
    if (countMetrics && missing.length > 0) this.metrics.onCacheMiss(missing.length);
    return { triples, missing };
  }

  /**
   * Triples for every name (at most `maxEntities` each, (relation, object) order), with at most one
   * graph round trip for the names not cached. Throws KnowledgeUnavailableError (retriable) when the
   * graph cannot answer; the cache is left as it was, so `lookupCached` still serves what it holds.
   */
  async lookup(names: Iterable<string>): Promise<Map<string, readonly Triple[]>> {
    const { triples, missing } = this.lookupCached(names);
    if (missing.length === 0) return triples;
    if (this.maxEntities === 0) {
      for (const name of missing) triples.set(name, NONE);
      return triples;
    }
    const started = performance.now();
    this.queries++;
    let fetched: Map<string, Triple[]>;
    try {
      fetched = await this.graph.triplesOf(missing, this.maxEntities);
    } catch (error) {
      if (error instanceof RmBertError) throw error;
      throw new RmBertError(`triple lookup failed: ${(error as Error).message}`, { cause: error });
    } finally {
      this.metrics.onQuery(performance.now() - started);
    }
    for (const name of missing) {
      const list = fetched.get(name);
      const value: readonly Triple[] = list && list.length > 0 ? Object.freeze(list.slice(0, this.maxEntities)) : NONE;
      this.cache.set(name, value);
      triples.set(name, value);
    }
    return triples;
  }

  clearCache(): void {
    this.cache.clear();
  }
}
