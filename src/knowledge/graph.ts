/**
 * The knowledge-graph port. Two adapters implement it with the same observable behaviour (checked by
 * one contract test suite): Neo4j (the service) and in memory (embedded mode, tests).
 *
 * Triples are `subject -[relation]-> object`; subjects and objects are concepts identified by their
 * exact name (no normalisation is applied to stored names: the matcher normalises on its side).
 * A store can hold several graphs side by side, each identified by a graph name, so that tests and
 * staging graphs never see each other.
 */
import type { Triple } from '../domain/index.ts';

/** Version stamp of a loaded graph: the content hash and when/what was loaded. */
export interface KgStamp {
  /** sha256 (hex) of the normalised triples the graph holds; see `kgVersionOf`. */
  version: string;
  triples: number;
  concepts: number;
  /** ISO-8601 time the load finished. */
  loadedAt: string;
  /** Where the triples came from (file name), for humans. */
  source: string;
}

export interface GraphStats {
  /** Distinct concept names (subjects and objects). */
  concepts: number;
  /** Distinct (subject, relation, object) triples. */
  triples: number;
}

export interface KnowledgeGraph {
  /** The graph's name inside its store. */
  readonly graphName: string;
  /** Creates what the store needs (constraints, indexes); idempotent. */
  init(): Promise<void>;
  /** Adds triples; a triple already present is left as it is (idempotent). */
  mergeTriples(triples: readonly Triple[]): Promise<void>;
  /** Removes every triple, concept and stamp of this graph. */
  clear(): Promise<void>;
  stats(): Promise<GraphStats>;
  /** Distinct names that are the subject of at least one triple, sorted by UTF-16 code units. */
  subjects(): Promise<string[]>;
  /**
   * Triples of each requested subject in one round trip: at most `maxPerName` per name, ordered by
   * (relation, object) in UTF-16 code-unit order. Every requested name is a key of the result
   * (an empty array when the graph has no triple for it).
   */
  triplesOf(names: readonly string[], maxPerName: number): Promise<Map<string, Triple[]>>;
  /** Every triple, sorted by (subject, relation, object) in UTF-16 code-unit order. */
  allTriples(): Promise<Triple[]>;
  /** The version stamp stored with the graph, or null if none was stored (or a load is under way). */
  stamp(): Promise<KgStamp | null>;
  /** Stores the stamp, or removes it when null (a load marks the graph as changing this way). */
  setStamp(stamp: KgStamp | null): Promise<void>;
  close(): Promise<void>;
}

/** UTF-16 code-unit order, the order JavaScript's `<` uses on strings. */
export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function compareTriples(a: Triple, b: Triple): number {
  return (
    compareCodeUnits(a.subject, b.subject) || compareCodeUnits(a.relation, b.relation) || compareCodeUnits(a.object, b.object)
  );
}

export const DEFAULT_GRAPH_NAME = 'default';
