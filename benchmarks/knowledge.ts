/**
 * Knowledge-layer benchmark: `node --import tsx benchmarks/knowledge.ts`
 *
 * 1. Matching + sentence-tree building for the 755 medical test sentences with Medical.spo, on one
 *    core (the real bert-base-chinese tokenizer; tokens computed outside the timed loop, and a
 *    second figure with tokenization included).
 * 2. Neo4j (needs the local server, `bash scripts/infra.sh up`): load times of Medical.spo and
 *    HowNet.spo, then the medical test set streamed twice in batches of 32 sentences through the
 *    injector: round trips per batch and per 1,000 documents, cache hit rate per pass, query times.
 *
 * Writes benchmarks/results/knowledge.json and knowledge.md.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Token } from '../src/domain/index.ts';
import {
  ConceptMatcher,
  createSnapshot,
  InMemoryKnowledgeGraph,
  KnowledgeInjector,
  loadSpoFile,
  NEO4J_LOCAL_DEFAULTS,
  Neo4jKnowledgeGraph,
  SentenceTreeBuilder,
  staticKnowledge,
  triplesForMatch,
} from '../src/knowledge/index.ts';
import type { KnowledgeMetrics, TreeMatch } from '../src/knowledge/index.ts';
import { BertTokenizer } from '../src/model/tokenizer.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHARED = path.resolve(ROOT, '../shared/data');
const MEDICAL_SPO = path.join(ROOT, 'data/kg/Medical.spo');
const HOWNET_SPO = path.join(SHARED, 'kbert-kgs/HowNet.spo');
const TEST_TSV = path.join(SHARED, 'kbert-medical-ner/test.tsv');
const BATCH = 32;
const MAX_ENTITIES = 2;

function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `2 cores (${os.cpus().length} visible), ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; single-threaded figures use one core`;
}

function readSentences(): string[] {
  const lines = readFileSync(TEST_TSV, 'utf8').split('\n');
  if (lines[0] !== 'text_a\tlabel') throw new Error(`unexpected header in ${TEST_TSV}: ${lines[0]}`);
  return lines
    .slice(1)
    .filter((l) => l.length > 0)
    .map((l) => l.split('\t')[0].split(' ').join(''));
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

interface Rate {
  /** Sentences per second of CPU time used by this process (all its threads): the rate on one idle core. */
  cpu: number;
  /** Sentences per wall-clock second: lower when other processes share the 2 cores. */
  wall: number;
}

/** Runs `pass` (one pass over all sentences) repeatedly for about `ms` of wall time. */
function throughput(sentences: number, ms: number, pass: () => void): Rate {
  let passes = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    pass();
    passes++;
    now = performance.now();
  }
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  return { cpu: (passes * sentences * 1000) / cpuMs, wall: (passes * sentences * 1000) / (now - start) };
}

function summarize(rates: Rate[]): { cpuMedian: number; wallMedian: number; rounds: Rate[] } {
  const round = (r: Rate): Rate => ({ cpu: Math.round(r.cpu), wall: Math.round(r.wall) });
  return { cpuMedian: Math.round(median(rates.map((r) => r.cpu))), wallMedian: Math.round(median(rates.map((r) => r.wall))), rounds: rates.map(round) };
}

async function cpuPart(tokenizer: BertTokenizer, sentences: string[]): Promise<Record<string, unknown>> {
  const graph = new InMemoryKnowledgeGraph();
  await loadSpoFile(MEDICAL_SPO, graph);
  const buildStart = performance.now();
  const matcher = ConceptMatcher.build(await graph.subjects());
  const matcherBuildMs = performance.now() - buildStart;
  // Triples for every subject, as a warm cache would hold them: the timed loop measures CPU work only.
  const all = await graph.triplesOf(await graph.subjects(), MAX_ENTITIES);
  const builder = new SentenceTreeBuilder(tokenizer, { inject: 'relation+object', maxEntities: MAX_ENTITIES, maxLength: 256 });
  const tokens: Token[][] = sentences.map((s) => tokenizer.tokenize(s));

  let sink = 0;
  let matches = 0;
  let injected = 0;
  let treeTokens = 0;
  const matchAndBuild = (i: number, toks: Token[]): void => {
    const found = matcher.match(sentences[i], { tokens: toks });
    const treeMatches: TreeMatch[] = found.map((m) => ({ start: m.start, end: m.end, triples: triplesForMatch(m, all, MAX_ENTITIES) }));
    const trees = builder.build({ text: sentences[i], tokens: toks, matches: treeMatches });
    sink += trees[0].tokenIds.length;
  };
  // Statistics of one pass.
  for (let i = 0; i < sentences.length; i++) {
    const found = matcher.match(sentences[i], { tokens: tokens[i] });
    matches += found.length;
    const trees = builder.build({
      text: sentences[i],
      tokens: tokens[i],
      matches: found.map((m) => ({ start: m.start, end: m.end, triples: triplesForMatch(m, all, MAX_ENTITIES) })),
    });
    for (const tree of trees) {
      treeTokens += tree.tokenIds.length;
      for (const link of tree.links) injected += link.injected;
    }
  }

  const passBuild = (): void => {
    for (let i = 0; i < sentences.length; i++) matchAndBuild(i, tokens[i]);
  };
  const passWithTokenize = (): void => {
    for (let i = 0; i < sentences.length; i++) matchAndBuild(i, tokenizer.tokenize(sentences[i]));
  };
  const passMatchOnly = (): void => {
    for (let i = 0; i < sentences.length; i++) sink += matcher.match(sentences[i], { tokens: tokens[i] }).length;
  };
  const passTokenizeOnly = (): void => {
    for (let i = 0; i < sentences.length; i++) sink += tokenizer.tokenize(sentences[i]).length;
  };
  // Warm-up, then interleaved rounds (the machine's speed drifts): report medians.
  throughput(sentences.length, 1500, passBuild);
  throughput(sentences.length, 500, passWithTokenize);
  const build: Rate[] = [];
  const withTok: Rate[] = [];
  const matchOnly: Rate[] = [];
  const tokOnly: Rate[] = [];
  for (let round = 0; round < 5; round++) {
    build.push(throughput(sentences.length, 1000, passBuild));
    withTok.push(throughput(sentences.length, 1000, passWithTokenize));
    matchOnly.push(throughput(sentences.length, 500, passMatchOnly));
    tokOnly.push(throughput(sentences.length, 500, passTokenizeOnly));
  }
  if (sink < 0) console.log(sink);
  return {
    sentences: sentences.length,
    meanChars: sentences.reduce((a, s) => a + s.length, 0) / sentences.length,
    matcherNames: matcher.size,
    matcherBuildMs,
    matchesPerPass: matches,
    branchesInjectedPerPass: injected,
    meanTreeTokens: treeTokens / sentences.length,
    sentencesPerSecondMatchAndTree: summarize(build),
    sentencesPerSecondWithTokenization: summarize(withTok),
    sentencesPerSecondMatchOnly: summarize(matchOnly),
    sentencesPerSecondTokenizeOnly: summarize(tokOnly),
  };
}

class RecordingMetrics implements KnowledgeMetrics {
  hits = 0;
  misses = 0;
  queryMs: number[] = [];
  onCacheHit(n: number): void {
    this.hits += n;
  }
  onCacheMiss(n: number): void {
    this.misses += n;
  }
  onQuery(ms: number): void {
    this.queryMs.push(ms);
  }
}

async function neo4jPart(tokenizer: BertTokenizer, sentences: string[]): Promise<Record<string, unknown>> {
  const suffix = `${Date.now().toString(36)}-${process.pid}`;
  const open = (name: string): Neo4jKnowledgeGraph => new Neo4jKnowledgeGraph({ ...NEO4J_LOCAL_DEFAULTS, graphName: `bench-${name}-${suffix}` });
  const medical = open('medical');
  const hownet = open('hownet');
  try {
    const loads: Record<string, unknown> = {};
    for (const [name, graph, file] of [
      ['Medical.spo', medical, MEDICAL_SPO],
      ['HowNet.spo', hownet, HOWNET_SPO],
    ] as const) {
      const first = await loadSpoFile(file, graph, { batchSize: 1000 });
      const again = await loadSpoFile(file, graph, { batchSize: 1000 });
      loads[name] = {
        triples: first.stamp.triples,
        concepts: first.stamp.concepts,
        version: first.stamp.version,
        firstLoadSeconds: first.elapsedMs / 1000,
        triplesPerSecond: first.validTriples / (first.elapsedMs / 1000),
        idempotentReloadSeconds: again.elapsedMs / 1000,
        reloadChangedCounts: again.stamp.triples !== first.stamp.triples || again.stamp.concepts !== first.stamp.concepts,
        reloadSameVersion: again.stamp.version === first.stamp.version,
      };
    }
    await hownet.clear();

    const metrics = new RecordingMetrics();
    const snapshot = await createSnapshot(medical, { maxEntities: MAX_ENTITIES, metrics });
    const injector = new KnowledgeInjector(tokenizer, staticKnowledge(snapshot), { maxEntities: MAX_ENTITIES });
    const passes: Record<string, unknown>[] = [];
    for (let pass = 1; pass <= 2; pass++) {
      const hits0 = metrics.hits;
      const misses0 = metrics.misses;
      const queries0 = metrics.queryMs.length;
      let batches = 0;
      let batchesWithNames = 0;
      let maxTripsPerBatch = 0;
      let degraded = 0;
      const started = performance.now();
      for (let i = 0; i < sentences.length; i += BATCH) {
        const result = await injector.inject(sentences.slice(i, i + BATCH).map((text) => ({ text })));
        batches++;
        if (result.trees.some((t) => t[0].links.length > 0)) batchesWithNames++;
        maxTripsPerBatch = Math.max(maxTripsPerBatch, result.roundTrips);
        if (result.degraded) degraded++;
      }
      const elapsed = performance.now() - started;
      const hits = metrics.hits - hits0;
      const misses = metrics.misses - misses0;
      const trips = metrics.queryMs.length - queries0;
      passes.push({
        pass,
        batches,
        batchesWithMatchedNames: batchesWithNames,
        roundTrips: trips,
        roundTripsPerBatch: trips / batches,
        maxRoundTripsInOneBatch: maxTripsPerBatch,
        roundTripsPer1000Documents: (trips * 1000) / sentences.length,
        cacheHits: hits,
        cacheMisses: misses,
        cacheHitRate: hits + misses > 0 ? hits / (hits + misses) : null,
        degradedBatches: degraded,
        sentencesPerSecondEndToEnd: (sentences.length * 1000) / elapsed,
      });
    }
    const q = metrics.queryMs;
    return {
      uri: NEO4J_LOCAL_DEFAULTS.uri,
      batchSize: BATCH,
      loads,
      passes,
      queryMs: q.length ? { count: q.length, median: median(q), p95: percentile(q, 95), max: Math.max(...q) } : null,
    };
  } finally {
    await medical.clear().catch(() => undefined);
    await hownet.clear().catch(() => undefined);
    await medical.close();
    await hownet.close();
  }
}

async function main(): Promise<void> {
  const tokenizer = await BertTokenizer.load();
  const sentences = readSentences();
  console.error(`knowledge benchmark: ${sentences.length} sentences; CPU part ...`);
  const cpu = await cpuPart(tokenizer, sentences);
  console.error('Neo4j part ...');
  let neo4j: Record<string, unknown> | null = null;
  let neo4jSkipped: string | null = null;
  try {
    neo4j = await neo4jPart(tokenizer, sentences);
  } catch (error) {
    neo4jSkipped = `Neo4j part not run: ${(error as Error).message}`;
    console.error(neo4jSkipped);
  }
  const passes = (neo4j?.passes as Record<string, number | null>[] | undefined) ?? [];
  type Summarized = ReturnType<typeof summarize>;
  const rate = (key: string): Summarized => cpu[key] as Summarized;
  const summary = {
    sentencesPerSecond: rate('sentencesPerSecondMatchAndTree').cpuMedian,
    sentencesPerSecondWallClock: rate('sentencesPerSecondMatchAndTree').wallMedian,
    sentencesPerSecondWithTokenization: rate('sentencesPerSecondWithTokenization').cpuMedian,
    loadAverageDuringRun: os.loadavg()[0],
    tokenizer: 'bert-base-chinese BertTokenizer (src/model/tokenizer.ts)',
    neo4jRoundTripsPerBatch: passes[0]?.roundTripsPerBatch ?? null,
    neo4jMaxRoundTripsInOneBatch: Math.max(...passes.map((p) => p.maxRoundTripsInOneBatch ?? 0), 0),
    neo4jRoundTripsPer1000DocumentsFirstPass: passes[0]?.roundTripsPer1000Documents ?? null,
    neo4jRoundTripsPer1000DocumentsSecondPass: passes[1]?.roundTripsPer1000Documents ?? null,
    cacheHitRateFirstPass: passes[0]?.cacheHitRate ?? null,
    cacheHitRateSecondPass: passes[1]?.cacheHitRate ?? null,
  };
  const command = 'node --import tsx benchmarks/knowledge.ts';
  const result = { command, machine: machine(), date: new Date().toISOString(), summary, details: { cpu, neo4j, neo4jSkipped } };
  const outDir = path.join(ROOT, 'benchmarks/results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'knowledge.json'), `${JSON.stringify(result, null, 2)}\n`);

  const fmt = (x: number | null | undefined, digits = 0): string => (x === null || x === undefined ? 'n/a' : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));
  const loads = (neo4j?.loads ?? {}) as Record<string, Record<string, number>>;
  const md = [
    '# Knowledge layer benchmark',
    '',
    `Command: \`${command}\`. Machine: ${result.machine}. Date: ${result.date}.`,
    `Data: the ${sentences.length} medical test sentences (kbert-medical-ner/test.tsv), MedicalKG (data/kg/Medical.spo), tokenizer ${summary.tokenizer}, maxEntities ${MAX_ENTITIES}, relation+object injected.`,
    '',
    `Rates are sentences per CPU-second of this process (one core's worth of work, median of 5 interleaved rounds), and per wall-clock second, which is lower when other work shares the 2 cores (1-minute load average at the end: ${summary.loadAverageDuringRun.toFixed(1)}).`,
    '',
    '| figure (2 cores, one used) | per CPU-second | per wall-clock second |',
    '|---|---|---|',
    `| matching + sentence tree, tokens given (sentences/s) | ${fmt(summary.sentencesPerSecond)} | ${fmt(summary.sentencesPerSecondWallClock)} |`,
    `| tokenization + matching + sentence tree (sentences/s) | ${fmt(summary.sentencesPerSecondWithTokenization)} | ${fmt(rate('sentencesPerSecondWithTokenization').wallMedian)} |`,
    `| matching alone (sentences/s) | ${fmt(rate('sentencesPerSecondMatchOnly').cpuMedian)} | ${fmt(rate('sentencesPerSecondMatchOnly').wallMedian)} |`,
    `| tokenization alone (sentences/s) | ${fmt(rate('sentencesPerSecondTokenizeOnly').cpuMedian)} | ${fmt(rate('sentencesPerSecondTokenizeOnly').wallMedian)} |`,
    '',
    '| figure | value |',
    '|---|---|',
    `| matcher build over ${cpu.matcherNames as number} names (ms) | ${fmt(cpu.matcherBuildMs as number, 1)} |`,
    `| names matched / branches injected per pass | ${cpu.matchesPerPass as number} / ${cpu.branchesInjectedPerPass as number} |`,
    '',
    neo4j ? '| Neo4j (local, same 2 cores) | value |' : `Neo4j part not run: ${neo4jSkipped}`,
    ...(neo4j
      ? [
          '|---|---|',
          `| Medical.spo load: triples / concepts / seconds | ${fmt(loads['Medical.spo']?.triples)} / ${fmt(loads['Medical.spo']?.concepts)} / ${fmt(loads['Medical.spo']?.firstLoadSeconds, 1)} |`,
          `| HowNet.spo load: triples / concepts / seconds | ${fmt(loads['HowNet.spo']?.triples)} / ${fmt(loads['HowNet.spo']?.concepts)} / ${fmt(loads['HowNet.spo']?.firstLoadSeconds, 1)} |`,
          `| idempotent reload (Medical / HowNet seconds; counts and version unchanged) | ${fmt(loads['Medical.spo']?.idempotentReloadSeconds, 1)} / ${fmt(loads['HowNet.spo']?.idempotentReloadSeconds, 1)} |`,
          `| round trips per batch of ${BATCH}, first pass (max in one batch) | ${fmt(summary.neo4jRoundTripsPerBatch, 2)} (${summary.neo4jMaxRoundTripsInOneBatch}) |`,
          `| round trips per 1,000 documents, first / second pass | ${fmt(summary.neo4jRoundTripsPer1000DocumentsFirstPass, 1)} / ${fmt(summary.neo4jRoundTripsPer1000DocumentsSecondPass, 1)} |`,
          `| cache hit rate, first / second pass | ${fmt((summary.cacheHitRateFirstPass ?? 0) * 100, 1)}% / ${fmt((summary.cacheHitRateSecondPass ?? 0) * 100, 1)}% |`,
          `| lookup query time, median / p95 (ms) | ${fmt((neo4j.queryMs as Record<string, number> | null)?.median, 2)} / ${fmt((neo4j.queryMs as Record<string, number> | null)?.p95, 2)} |`,
        ]
      : []),
    '',
  ].join('\n');
  writeFileSync(path.join(outDir, 'knowledge.md'), md);
  console.log(JSON.stringify(summary, null, 2));
}

await main();
