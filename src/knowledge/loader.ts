/**
 * Bulk, idempotent load of a `.spo` file into a knowledge graph, with a version stamp.
 *
 * While a load runs, the graph's stamp is removed, so a service polling the version keeps its
 * current matcher instead of rebuilding from a half-loaded graph; the new stamp is written last.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SchemaError } from '../errors/index.ts';
import type { KgStamp, KnowledgeGraph } from './graph.ts';
import { InMemoryKnowledgeGraph } from './memory-graph.ts';
import { kgVersionOf, KgVersionBuilder, readSpoFile } from './spo.ts';
import type { MalformedLine } from './spo.ts';

export interface LoadProgress {
  bytesRead: number;
  totalBytes: number;
  lines: number;
  /** Valid triples sent to the graph so far (duplicates in the file included). */
  triplesSent: number;
  malformed: number;
}

export interface LoadOptions {
  /** Triples per UNWIND/MERGE batch (default 1000). */
  batchSize?: number;
  /** Remove the graph's existing triples first, so the graph holds exactly the file. */
  replace?: boolean;
  onProgress?: (progress: LoadProgress) => void;
  /** Called for every malformed line, in file order. */
  onMalformed?: (line: MalformedLine) => void;
  /** How many malformed lines to keep in the report (all are counted and passed to onMalformed). */
  keepMalformed?: number;
}

export interface LoadReport {
  file: string;
  /** sha256 of the file's own normalised triples. */
  fileVersion: string;
  /** The stamp now stored with the graph (equals fileVersion when the graph was empty or replaced). */
  stamp: KgStamp;
  lines: number;
  /** Valid lines. */
  validTriples: number;
  /** Distinct valid triples in the file. */
  distinctTriples: number;
  /** Valid lines repeating an earlier triple of the file. */
  duplicates: number;
  malformedCount: number;
  /** The first `keepMalformed` malformed lines. */
  malformed: MalformedLine[];
  batches: number;
  elapsedMs: number;
}

export async function loadSpoFile(file: string, graph: KnowledgeGraph, options: LoadOptions = {}): Promise<LoadReport> {
  const batchSize = options.batchSize ?? 1000;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new SchemaError(`batch size must be a positive integer, got ${batchSize}`);
  const keepMalformed = options.keepMalformed ?? 1000;
  const started = performance.now();

  let totalBytes: number;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new SchemaError(`${file} is not a file`);
    totalBytes = info.size;
  } catch (error) {
    if (error instanceof SchemaError) throw error;
    throw new SchemaError(`cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }

  // The graph is touched only once the file has shown a valid triple: a file without one (a binary
  // file, the wrong file) must leave the graph and its version as they were.
  let before: { triples: number } | null = null;
  const begin = async (): Promise<{ triples: number }> => {
    await graph.init();
    const stats = await graph.stats();
    if (options.replace && stats.triples > 0) await graph.clear();
    await graph.setStamp(null);
    return stats;
  };

  const version = new KgVersionBuilder();
  const malformed: MalformedLine[] = [];
  let malformedCount = 0;
  let validTriples = 0;
  let batches = 0;
  let lines = 0;
  for await (const chunk of readSpoFile(file, batchSize)) {
    for (const m of chunk.malformed) {
      malformedCount++;
      if (malformed.length < keepMalformed) malformed.push(m);
      options.onMalformed?.(m);
    }
    // Only the first occurrence of a triple goes to the graph; repeats would be no-ops anyway.
    const fresh = chunk.triples.filter((t) => version.add(t));
    validTriples += chunk.triples.length;
    lines = chunk.lines;
    if (fresh.length > 0) {
      before ??= await begin();
      await graph.mergeTriples(fresh);
      batches++;
    }
    options.onProgress?.({
      bytesRead: chunk.bytesRead,
      totalBytes,
      lines,
      triplesSent: validTriples,
      malformed: malformedCount,
    });
  }

  if (before === null) {
    const first = malformed[0] ? ` (line ${malformed[0].line}: ${malformed[0].reason})` : '';
    throw new SchemaError(
      `${file} holds no valid triple in ${lines} lines, ${malformedCount} malformed${first}; is it a .spo file (UTF-8, subject<TAB>relation<TAB>object per line)? Nothing was loaded.`,
    );
  }
  const fileVersion = version.digest();
  const after = await graph.stats();
  const graphWasEmpty = options.replace || before.triples === 0;
  // On top of other triples, the graph's content is the union; hash what the graph now holds.
  const graphVersion = graphWasEmpty ? fileVersion : kgVersionOf(await graph.allTriples());
  const stamp: KgStamp = {
    version: graphVersion,
    triples: after.triples,
    concepts: after.concepts,
    loadedAt: new Date().toISOString(),
    source: path.basename(file),
  };
  await graph.setStamp(stamp);

  return {
    file,
    fileVersion,
    stamp,
    lines,
    validTriples,
    distinctTriples: version.distinct,
    duplicates: version.duplicates,
    malformedCount,
    malformed,
    batches,
    elapsedMs: performance.now() - started,
  };
}

/** The graph shipped with the product (MedicalKG, see data/kg/PROVENANCE.md): the stage's default. */
export const DEFAULT_KG_PATH = fileURLToPath(new URL('../../data/kg/Medical.spo', import.meta.url));

/**
 * Embedded mode: an in-memory graph loaded from a `.spo` file (the shipped Medical.spo by default).
 * Malformed lines are skipped and passed to `onMalformed`, as in `loadSpoFile`.
 */
export async function loadEmbeddedGraph(
  file: string = DEFAULT_KG_PATH,
  options: Pick<LoadOptions, 'onMalformed'> = {},
): Promise<{ graph: InMemoryKnowledgeGraph; report: LoadReport }> {
  const graph = new InMemoryKnowledgeGraph();
  const report = await loadSpoFile(file, graph, { batchSize: 10_000, onMalformed: options.onMalformed });
  return { graph, report };
}
