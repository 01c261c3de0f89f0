/**
 * In-memory knowledge graph: the embedded default (no Neo4j needed) and the reference behaviour the
 * contract tests hold the Neo4j adapter to.
 */
import type { Triple } from '../domain/index.ts';
import { compareCodeUnits, compareTriples, DEFAULT_GRAPH_NAME } from './graph.ts';
import type { GraphStats, KgStamp, KnowledgeGraph } from './graph.ts';
import { tripleKey } from './spo.ts';

export class InMemoryKnowledgeGraph implements KnowledgeGraph {
  readonly graphName: string;
  /** subject -> its triples; each list kept sorted by (relation, object) after `mergeTriples`. */
  private readonly bySubject = new Map<string, Triple[]>();
  private readonly keys = new Set<string>();
  /** concept name -> number of triples it takes part in (as subject or object). */
  private readonly conceptRefs = new Map<string, number>();
  private currentStamp: KgStamp | null = null;

  constructor(graphName = DEFAULT_GRAPH_NAME) {
    this.graphName = graphName;
  }

  async init(): Promise<void> {}

  async mergeTriples(triples: readonly Triple[]): Promise<void> {
    const touched = new Set<Triple[]>();
    for (const t of triples) {
      const key = tripleKey(t);
      if (this.keys.has(key)) continue;
      this.keys.add(key);
      // Copy so later changes to the caller's objects cannot change the graph.
      const stored: Triple = { subject: t.subject, relation: t.relation, object: t.object };
      let list = this.bySubject.get(t.subject);
      if (!list) this.bySubject.set(t.subject, (list = []));
      list.push(stored);
      touched.add(list);
      this.conceptRefs.set(t.subject, (this.conceptRefs.get(t.subject) ?? 0) + 1);
      this.conceptRefs.set(t.object, (this.conceptRefs.get(t.object) ?? 0) + 1);
    }
    for (const list of touched) list.sort(compareTriples);
  }

  async clear(): Promise<void> {
    this.bySubject.clear();
    this.keys.clear();
    this.conceptRefs.clear();
    this.currentStamp = null;
  }

  async stats(): Promise<GraphStats> {
    return { concepts: this.conceptRefs.size, triples: this.keys.size };
  }

  async subjects(): Promise<string[]> {
    return [...this.bySubject.keys()].sort(compareCodeUnits);
  }

  async triplesOf(names: readonly string[], maxPerName: number): Promise<Map<string, Triple[]>> {
    const out = new Map<string, Triple[]>();
    const cap = Math.max(0, Math.floor(maxPerName));
    for (const name of names) {
      const list = this.bySubject.get(name);
      out.set(name, list ? list.slice(0, cap).map((t) => ({ ...t })) : []);
    }
    return out;
  }

  async allTriples(): Promise<Triple[]> {
    const out: Triple[] = [];
    for (const list of this.bySubject.values()) for (const t of list) out.push({ ...t });
    return out.sort(compareTriples);
  }

  async stamp(): Promise<KgStamp | null> {
    return this.currentStamp ? { ...this.currentStamp } : null;
  }

  async setStamp(stamp: KgStamp | null): Promise<void> {
    this.currentStamp = stamp ? { ...stamp } : null;
  }

  async close(): Promise<void> {}
}
