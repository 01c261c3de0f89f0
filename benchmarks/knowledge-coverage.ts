/**
 * Knowledge-graph coverage on the medical NER splits: `node --import tsx benchmarks/knowledge-coverage.ts`
 *
 * Graphs: MedicalKG (data/kg/Medical.spo), CMeKG's typed view and full graph (.cache/kg/CMeKG-typed.spo and
 * CMeKG.spo, made by scripts/kg/cmekg_to_spo.py, which this script runs first when they are missing), and
 * Medical.spo loaded together with each CMeKG file (the two files loaded into one graph, as two
 * `rmbert kg load` calls would do).
 *
 * Each graph is loaded with the project's loader (loadSpoFile into an InMemoryKnowledgeGraph: malformed lines,
 * distinct triples, subjects, load seconds, heap), its subject names go into the stage's Aho-Corasick matcher
 * (leftmost-longest, on the bert-base-chinese token boundaries, as KnowledgeInjector does), and on the dev
 * and test splits of K-BERT's CCKS 2017 medical set (loadCorpus('medical')) it measures:
 * - mention coverage: share of gold entity mentions whose exact surface is a subject name (and of distinct
 *   entity strings), overall and per type;
 * - matching: share of sentences with at least one match, matches per sentence, injected triples per
 *   sentence (at most 2 per name), and how many matches are exactly a gold entity span (precision of
 *   matches as entity proposals), overlap a gold entity, or are nowhere near one; gold mentions found
 *   exactly by a match (recall of the matcher as a proposer);
 * - type agreement: for matches that are exactly a gold entity and got a 类别 triple injected, the share
 *   whose injected type is the gold type (疾病 Disease, 症状 Symptom, 部位 BodyPart, 检查 Examine, 治疗 Cure).
 *
 * Writes benchmarks/results/knowledge-coverage.json and knowledge-coverage.md.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Token, Triple } from '../src/domain/index.ts';
import { ConceptMatcher, InMemoryKnowledgeGraph, loadSpoFile, triplesForMatch } from '../src/knowledge/index.ts';
import type { LoadReport, MalformedLine } from '../src/knowledge/index.ts';
import { BertTokenizer } from '../src/model/tokenizer.ts';
import { loadCorpus, MEDICAL_TYPES } from '../src/train/datasets.ts';
import type { NerSentence } from '../src/train/datasets.ts';
import { spansFromBio } from '../src/train/metrics.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MEDICAL_SPO = path.join(ROOT, 'data/kg/Medical.spo');
const KG_DIR = path.join(ROOT, '.cache/kg');
const CMEKG_FULL = path.join(KG_DIR, 'CMeKG.spo');
const CMEKG_TYPED = path.join(KG_DIR, 'CMeKG-typed.spo');
const CMEKG_STATS = path.join(KG_DIR, 'cmekg-stats.json');
const CONVERTER = path.join(ROOT, 'scripts/kg/cmekg_to_spo.py');
const PYTHON = path.join(ROOT, '.venv/bin/python');
const MAX_ENTITIES = 2;
const TYPE_RELATION = '类别';
const TYPE_OF_OBJECT: Record<string, string> = { 疾病: 'Disease', 症状: 'Symptom', 部位: 'BodyPart', 检查: 'Examine', 治疗: 'Cure' };

interface GraphSpec {
  id: string;
  label: string;
  files: string[];
}

const GRAPHS: GraphSpec[] = [
  { id: 'medical', label: 'Medical.spo', files: [MEDICAL_SPO] },
  { id: 'cmekgTyped', label: 'CMeKG typed', files: [CMEKG_TYPED] },
  { id: 'cmekgFull', label: 'CMeKG full', files: [CMEKG_FULL] },
  { id: 'medicalPlusCmekgTyped', label: 'Medical + CMeKG typed', files: [MEDICAL_SPO, CMEKG_TYPED] },
  { id: 'medicalPlusCmekgFull', label: 'Medical + CMeKG full', files: [MEDICAL_SPO, CMEKG_FULL] },
];

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

function collect(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `2 cores (${os.cpus().length} visible), ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; one thread`;
}

function ensureCmekgFiles(): string | null {
  if (existsSync(CMEKG_FULL) && existsSync(CMEKG_TYPED)) return null;
  if (!existsSync(PYTHON)) {
    throw new Error(`${CMEKG_FULL} is missing and ${PYTHON} does not exist: run bash scripts/setup-python.sh first`);
  }
  console.error('knowledge-coverage: CMeKG .spo files missing; running scripts/kg/cmekg_to_spo.py ...');
  const run = spawnSync(PYTHON, [CONVERTER], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (run.status !== 0) throw new Error(`scripts/kg/cmekg_to_spo.py failed (exit ${run.status})`);
  return `${path.relative(ROOT, PYTHON)} ${path.relative(ROOT, CONVERTER)}`;
}

interface Gold {
  start: number;
  end: number;
  type: string;
  surface: string;
}

interface Prepared {
  text: string;
  tokens: Token[];
  gold: Gold[];
}

/** Gold entities of a sentence as code-unit spans of its text (chars may be longer than one code unit). */
function prepare(sentences: readonly NerSentence[], tokenizer: BertTokenizer): Prepared[] {
  return sentences.map((s) => {
    const offsets = [0];
    for (const c of s.chars) offsets.push(offsets[offsets.length - 1] + c.length);
    const gold = spansFromBio(s.labels).map((g) => ({
      start: offsets[g.start],
      end: offsets[g.end],
      type: g.type,
      surface: s.text.slice(offsets[g.start], offsets[g.end]),
    }));
    return { text: s.text, tokens: tokenizer.tokenize(s.text), gold };
  });
}

const ratio = (a: number, b: number): number | null => (b > 0 ? a / b : null);

interface SplitFigures {
  sentences: number;
  goldMentions: number;
  goldMentionsWhoseSurfaceIsASubject: number;
  mentionCoverage: number | null;
  mentionCoverageByType: Record<string, { gold: number; covered: number; share: number | null }>;
  distinctEntityStrings: number;
  distinctStringsThatAreSubjects: number;
  distinctCoverage: number | null;
  /** Entity strings of this split that are no gold entity string of the training split: what training cannot teach. */
  distinctStringsUnseenInTrain: number;
  unseenStringsThatAreSubjects: number;
  unseenCoverage: number | null;
  sentencesWithAMatch: number;
  sentenceMatchRate: number | null;
  matches: number;
  matchesPerSentence: number | null;
  injectedTriplesPerSentence: number | null;
  matchesExactlyAGoldEntity: number;
  matchPrecision: number | null;
  matchesOverlappingAGoldEntity: number;
  matchOverlapRate: number | null;
  goldMentionsFoundExactlyByAMatch: number;
  matcherRecall: number | null;
  exactMatchesWithATypeTriple: number;
  exactMatchesWhoseTypeIsTheGoldType: number;
  typeAgreement: number | null;
  topMatchesNotAnEntity: Array<[string, number]>;
}

async function measureSplit(
  data: Prepared[],
  trainStrings: ReadonlySet<string>,
  subjects: ReadonlySet<string>,
  matcher: ConceptMatcher,
  graph: InMemoryKnowledgeGraph,
): Promise<SplitFigures> {
  const byType: Record<string, { gold: number; covered: number; share: number | null }> = {};
  for (const t of MEDICAL_TYPES) byType[t] = { gold: 0, covered: 0, share: null };
  let gold = 0;
  let covered = 0;
  const distinct = new Set<string>();
  for (const s of data) {
    for (const g of s.gold) {
      gold++;
      distinct.add(g.surface);
      byType[g.type].gold++;
      if (subjects.has(g.surface)) {
        covered++;
        byType[g.type].covered++;
      }
    }
  }
  for (const t of Object.values(byType)) t.share = ratio(t.covered, t.gold);
  const distinctCovered = [...distinct].filter((x) => subjects.has(x)).length;
  const unseen = [...distinct].filter((x) => !trainStrings.has(x));
  const unseenCovered = unseen.filter((x) => subjects.has(x)).length;

  const allMatches = data.map((s) => matcher.match(s.text, { tokens: s.tokens }));
  const names = new Set<string>();
  for (const list of allMatches) for (const m of list) for (const n of m.names) names.add(n);
  const found: Map<string, Triple[]> = await graph.triplesOf([...names], MAX_ENTITIES);

  let withMatch = 0;
  let matches = 0;
  let injected = 0;
  let exact = 0;
  let overlap = 0;
  let goldFound = 0;
  let typed = 0;
  let agree = 0;
  const falseHits = new Map<string, number>();
  data.forEach((s, i) => {
    const list = allMatches[i];
    if (list.length > 0) withMatch++;
    matches += list.length;
    const goldAt = new Map<string, Gold>();
    for (const g of s.gold) goldAt.set(`${g.start}:${g.end}`, g);
    for (const m of list) {
      const triples = triplesForMatch(m, found, MAX_ENTITIES);
      injected += triples.length;
      const g = goldAt.get(`${m.start}:${m.end}`);
      if (g) {
        exact++;
        goldFound++;
        const types = triples.filter((t) => t.relation === TYPE_RELATION).map((t) => TYPE_OF_OBJECT[t.object]);
        if (types.length > 0) {
          typed++;
          if (types.includes(g.type)) agree++;
        }
      } else if (s.gold.some((x) => m.start < x.end && x.start < m.end)) {
        overlap++;
      } else {
        const text = s.text.slice(m.start, m.end);
        falseHits.set(text, (falseHits.get(text) ?? 0) + 1);
      }
    }
  });
  return {
    sentences: data.length,
    goldMentions: gold,
    goldMentionsWhoseSurfaceIsASubject: covered,
    mentionCoverage: ratio(covered, gold),
    mentionCoverageByType: byType,
    distinctEntityStrings: distinct.size,
    distinctStringsThatAreSubjects: distinctCovered,
    distinctCoverage: ratio(distinctCovered, distinct.size),
    distinctStringsUnseenInTrain: unseen.length,
    unseenStringsThatAreSubjects: unseenCovered,
    unseenCoverage: ratio(unseenCovered, unseen.length),
    sentencesWithAMatch: withMatch,
    sentenceMatchRate: ratio(withMatch, data.length),
    matches,
    matchesPerSentence: ratio(matches, data.length),
    injectedTriplesPerSentence: ratio(injected, data.length),
    matchesExactlyAGoldEntity: exact,
    matchPrecision: ratio(exact, matches),
    matchesOverlappingAGoldEntity: exact + overlap,
    matchOverlapRate: ratio(exact + overlap, matches),
    goldMentionsFoundExactlyByAMatch: goldFound,
    matcherRecall: ratio(goldFound, gold),
    exactMatchesWithATypeTriple: typed,
    exactMatchesWhoseTypeIsTheGoldType: agree,
    typeAgreement: ratio(agree, typed),
    topMatchesNotAnEntity: [...falseHits.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 15),
  };
}

interface FileLoad {
  file: string;
  bytes: number;
  lines: number;
  validTriples: number;
  distinctTriples: number;
  duplicates: number;
  malformedLines: number;
  malformedFirst: MalformedLine[];
  fileVersion: string;
  seconds: number;
}

async function measureGraph(spec: GraphSpec, splits: Record<'dev' | 'test', Prepared[]>, trainStrings: ReadonlySet<string>): Promise<Record<string, unknown>> {
  const heapBefore = collect();
  const graph = new InMemoryKnowledgeGraph();
  const loads: FileLoad[] = [];
  const started = performance.now();
  let report: LoadReport | null = null;
  for (const file of spec.files) {
    report = await loadSpoFile(file, graph, { batchSize: 10_000, keepMalformed: 10 });
    loads.push({
      file: path.relative(ROOT, file),
      bytes: statSync(file).size,
      lines: report.lines,
      validTriples: report.validTriples,
      distinctTriples: report.distinctTriples,
      duplicates: report.duplicates,
      malformedLines: report.malformedCount,
      malformedFirst: report.malformed,
      fileVersion: report.fileVersion,
      seconds: report.elapsedMs / 1000,
    });
  }
  const loadSeconds = (performance.now() - started) / 1000;
  const stats = await graph.stats();
  const subjectList = await graph.subjects();
  const heapMiB = (collect() - heapBefore) / 2 ** 20;
  const buildStart = performance.now();
  const matcher = ConceptMatcher.build(subjectList);
  const matcherBuildSeconds = (performance.now() - buildStart) / 1000;
  const subjects = new Set(subjectList);
  const dev = await measureSplit(splits.dev, trainStrings, subjects, matcher, graph);
  const test = await measureSplit(splits.test, trainStrings, subjects, matcher, graph);
  const out = {
    label: spec.label,
    files: loads,
    graph: {
      triples: stats.triples,
      concepts: stats.concepts,
      subjects: subjectList.length,
      matcherKeys: matcher.size,
      version: report?.stamp.version ?? null,
      loadSeconds,
      heapMiB,
      rssMiB: process.memoryUsage().rss / 2 ** 20,
      matcherBuildSeconds,
    },
    dev,
    test,
  };
  await graph.clear();
  return out;
}

function pct(x: number | null | undefined, digits = 1): string {
  return x === null || x === undefined ? 'n/a' : `${(100 * x).toFixed(digits)}%`;
}

function num(x: number | null | undefined, digits = 0): string {
  return x === null || x === undefined ? 'n/a' : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

async function main(): Promise<void> {
  const converterRun = ensureCmekgFiles();
  const converterStats = existsSync(CMEKG_STATS) ? (JSON.parse(readFileSync(CMEKG_STATS, 'utf8')) as Record<string, any>) : null;
  const tokenizer = await BertTokenizer.load();
  const corpus = loadCorpus('medical');
  const splits = { dev: prepare(corpus.dev.sentences, tokenizer), test: prepare(corpus.test.sentences, tokenizer) };
  const trainStrings = new Set<string>();
  for (const s of prepare(corpus.train.sentences, tokenizer)) for (const g of s.gold) trainStrings.add(g.surface);
  const results: Record<string, any> = {};
  for (const spec of GRAPHS) {
    console.error(`knowledge-coverage: ${spec.label} ...`);
    results[spec.id] = await measureGraph(spec, splits, trainStrings);
  }
  // The converter computes the KG version stamp too; the loader's must be the same.
  const stampCheck = converterStats
    ? {
        full: converterStats.full?.kgVersion === results.cmekgFull.files[0].fileVersion,
        typed: converterStats.typed?.kgVersion === results.cmekgTyped.files[0].fileVersion,
      }
    : null;

  const summary: Record<string, unknown> = {};
  for (const spec of GRAPHS) {
    const r = results[spec.id];
    summary[spec.id] = {
      subjects: r.graph.subjects,
      triples: r.graph.triples,
      testMentionCoverage: r.test.mentionCoverage,
      devMentionCoverage: r.dev.mentionCoverage,
      testDistinctCoverage: r.test.distinctCoverage,
      devDistinctCoverage: r.dev.distinctCoverage,
      testUnseenInTrainCoverage: r.test.unseenCoverage,
      testSentenceMatchRate: r.test.sentenceMatchRate,
      testMatchesPerSentence: r.test.matchesPerSentence,
      testMatchPrecision: r.test.matchPrecision,
      testMatcherRecall: r.test.matcherRecall,
      testTypeAgreement: r.test.typeAgreement,
    };
  }
  const command = 'node --import tsx benchmarks/knowledge-coverage.ts';
  const result = {
    command,
    machine: machine(),
    date: new Date().toISOString(),
    summary,
    details: {
      corpus: 'K-BERT CCKS 2017 medical split (../shared/data/kbert-medical-ner, loadCorpus("medical"))',
      tokenizer: 'bert-base-chinese BertTokenizer (src/model/tokenizer.ts); matcher on its token boundaries, leftmost-longest',
      maxEntities: MAX_ENTITIES,
      converterRun,
      converterStampMatchesLoader: stampCheck,
      graphs: results,
    },
  };
  const outDir = path.join(ROOT, 'benchmarks/results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'knowledge-coverage.json'), `${JSON.stringify(result, null, 2)}\n`);

  const rows = (f: (r: any) => string): string => GRAPHS.map((g) => f(results[g.id])).join(' | ');
  const header = `| figure | ${GRAPHS.map((g) => g.label).join(' | ')} |`;
  const rule = `|---|${GRAPHS.map(() => '---').join('|')}|`;
  const line = (name: string, f: (r: any) => string): string => `| ${name} | ${rows(f)} |`;
  const md = [
    '# Knowledge-graph coverage of the medical NER entities',
    '',
    `Command: \`${command}\`. Machine: ${result.machine}. Date: ${result.date}.`,
    `Data: K-BERT's CCKS 2017 split (dev ${splits.dev.length} sentences, test ${splits.test.length}), gold entities from the BIO tags.`,
    'Graphs loaded with the project\'s loader into the in-memory graph; matching with the stage\'s Aho-Corasick matcher over the',
    `graph's subject names (leftmost-longest, on bert-base-chinese token boundaries), at most ${MAX_ENTITIES} triples per matched name.`,
    'CMeKG files: `.cache/kg/` from `scripts/kg/cmekg_to_spo.py` (see data/kg/CMeKG-PROVENANCE.md). "Medical + X" is both files loaded into one graph.',
    '',
    '## Loading (in-memory graph)',
    '',
    header,
    rule,
    line('file bytes', (r) => r.files.map((f: FileLoad) => num(f.bytes)).join(' + ')),
    line('malformed lines', (r) => r.files.map((f: FileLoad) => num(f.malformedLines)).join(' + ')),
    line('distinct triples in the graph', (r) => num(r.graph.triples)),
    line('subjects (matcher names)', (r) => num(r.graph.subjects)),
    line('concepts', (r) => num(r.graph.concepts)),
    line('load seconds', (r) => num(r.graph.loadSeconds, 1)),
    line('heap after load (MiB)', (r) => num(r.graph.heapMiB)),
    line('matcher build seconds', (r) => num(r.graph.matcherBuildSeconds, 1)),
    '',
    '## Test split',
    '',
    header,
    rule,
    line('gold mentions whose surface is a subject', (r) => `${pct(r.test.mentionCoverage)} (${num(r.test.goldMentionsWhoseSurfaceIsASubject)}/${num(r.test.goldMentions)})`),
    line('distinct entity strings that are subjects', (r) => `${pct(r.test.distinctCoverage)} (${num(r.test.distinctStringsThatAreSubjects)}/${num(r.test.distinctEntityStrings)})`),
    line('&nbsp;&nbsp;of those never a gold entity in train', (r) => `${pct(r.test.unseenCoverage)} (${num(r.test.unseenStringsThatAreSubjects)}/${num(r.test.distinctStringsUnseenInTrain)})`),
    ...MEDICAL_TYPES.map((t) => line(`&nbsp;&nbsp;mentions covered, ${t}`, (r) => `${pct(r.test.mentionCoverageByType[t].share)} of ${num(r.test.mentionCoverageByType[t].gold)}`)),
    line('sentences with at least one match', (r) => pct(r.test.sentenceMatchRate)),
    line('matches per sentence', (r) => num(r.test.matchesPerSentence, 2)),
    line('injected triples per sentence', (r) => num(r.test.injectedTriplesPerSentence, 2)),
    line('matches that are exactly a gold entity (precision)', (r) => pct(r.test.matchPrecision)),
    line('matches overlapping a gold entity', (r) => pct(r.test.matchOverlapRate)),
    line('gold mentions found exactly by a match (recall)', (r) => pct(r.test.matcherRecall)),
    line('injected type = gold type (exact matches with a 类别 triple)', (r) => `${pct(r.test.typeAgreement)} of ${num(r.test.exactMatchesWithATypeTriple)}`),
    '',
    '## Dev split',
    '',
    header,
    rule,
    line('gold mentions whose surface is a subject', (r) => `${pct(r.dev.mentionCoverage)} (${num(r.dev.goldMentionsWhoseSurfaceIsASubject)}/${num(r.dev.goldMentions)})`),
    line('distinct entity strings that are subjects', (r) => `${pct(r.dev.distinctCoverage)} (${num(r.dev.distinctStringsThatAreSubjects)}/${num(r.dev.distinctEntityStrings)})`),
    line('&nbsp;&nbsp;of those never a gold entity in train', (r) => `${pct(r.dev.unseenCoverage)} (${num(r.dev.unseenStringsThatAreSubjects)}/${num(r.dev.distinctStringsUnseenInTrain)})`),
    line('sentences with at least one match', (r) => pct(r.dev.sentenceMatchRate)),
    line('matches per sentence', (r) => num(r.dev.matchesPerSentence, 2)),
    line('matches that are exactly a gold entity (precision)', (r) => pct(r.dev.matchPrecision)),
    line('gold mentions found exactly by a match (recall)', (r) => pct(r.dev.matcherRecall)),
    line('injected type = gold type (exact matches with a 类别 triple)', (r) => `${pct(r.dev.typeAgreement)} of ${num(r.dev.exactMatchesWithATypeTriple)}`),
    '',
    '## Reading the figures',
    '',
    `- Only subject names are matched. CMeKG's ${num(results.cmekgFull.graph.subjects)} subjects are mostly drugs, diseases and exams; symptoms, body parts and short exam names sit in object position, so the full graph covers ${pct(results.cmekgFull.test.mentionCoverage)} of the test mentions and injects non-type relations. The typed view promotes typed objects to names (${num(results.cmekgTyped.graph.subjects)} names).`,
    `- Medical.spo's injected type is the gold type for ${pct(results.medical.test.typeAgreement)} of its exactly matched test entities, and it holds ${pct(results.medical.test.unseenCoverage)} of the test entity strings that are never a gold entity in train: its names look like CCKS 2017 annotations (e.g. 右膝DR片, 左侧胸部), which suggests MedicalKG was built partly from that corpus. CMeKG shows no such sign (${pct(results.cmekgTyped.test.typeAgreement)} type agreement, ${pct(results.cmekgTyped.test.unseenCoverage)} of those unseen strings).`,
    `- More matches mean more injected branches: ${num(results.medicalPlusCmekgTyped.test.injectedTriplesPerSentence, 2)} injected triples per test sentence with Medical + CMeKG typed against ${num(results.medical.test.injectedTriplesPerSentence, 2)} with Medical.spo (K-BERT's visibility matrix keeps them off the other tokens; whether they help is for a fine-tuning run to show).`,
    '',
    '## Most frequent test matches that touch no gold entity',
    '',
    ...GRAPHS.map((g) => `- ${g.label}: ${results[g.id].test.topMatchesNotAnEntity.map(([t, n]: [string, number]) => `${t} ${n}`).join(', ') || 'none'}`),
    '',
    stampCheck
      ? `KG version stamps: the converter's equal the loader's for CMeKG.spo (${stampCheck.full}) and CMeKG-typed.spo (${stampCheck.typed}).`
      : 'KG version stamps: no .cache/kg/cmekg-stats.json to compare with.',
    '',
  ].join('\n');
  writeFileSync(path.join(outDir, 'knowledge-coverage.md'), md);
  console.error(`knowledge-coverage: wrote benchmarks/results/knowledge-coverage.json and .md`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
