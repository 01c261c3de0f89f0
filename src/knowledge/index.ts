/**
 * Knowledge layer: the knowledge-graph port and its adapters (Neo4j, in memory), the `.spo` loader
 * with version stamps, the concept matcher, cached triple lookup, and the K-BERT sentence tree.
 */
export { compareCodeUnits, compareTriples, DEFAULT_GRAPH_NAME } from './graph.ts';
export type { GraphStats, KgStamp, KnowledgeGraph } from './graph.ts';
export { InMemoryKnowledgeGraph } from './memory-graph.ts';
export { NEO4J_LOCAL_DEFAULTS, Neo4jKnowledgeGraph } from './neo4j-graph.ts';
export type { Neo4jGraphOptions } from './neo4j-graph.ts';
export { KgVersionBuilder, kgVersionOf, mergeSpoFiles, parseSpoLine, readSpoFile, tripleKey } from './spo.ts';
export type { MalformedLine, MergedSpo, SpoChunk, SpoFileSummary } from './spo.ts';
export { DEFAULT_KG_PATH, loadEmbeddedGraph, loadSpoFile } from './loader.ts';
export type { LoadOptions, LoadProgress, LoadReport } from './loader.ts';
export { ConceptMatcher } from './matcher.ts';
export type { ConceptMatch, MatchOptions } from './matcher.ts';
export { LruCache, NO_METRICS, TripleLookup } from './lookup.ts';
export type { CachedLookup, KnowledgeMetrics, TripleLookupOptions } from './lookup.ts';
export { alignLabels, resolveTreeOptions, SentenceTreeBuilder } from './sentence-tree.ts';
export type { InjectMode, SentenceTree, SentenceTreeOptions, TreeInput, TreeLink, TreeMatch } from './sentence-tree.ts';
export {
  createSnapshot,
  KnowledgeInjector,
  KnowledgeService,
  staticKnowledge,
  triplesForMatch,
} from './service.ts';
export type {
  InjectedBatch,
  KnowledgeInjectorOptions,
  KnowledgeServiceOptions,
  KnowledgeSnapshot,
  SentenceInput,
  SnapshotOptions,
  SnapshotSource,
} from './service.ts';
