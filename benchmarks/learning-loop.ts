/**
 * Does a trainer round learn? The trainer sidecar (src/train/sidecar.ts: the real feedback store,
 * label check, replay, RecAdam round and gate) run in process on the shipped model, with Kafka
 * replaced by an in-memory source and committer (the integration test covers the Kafka side).
 * Data of this project's own making (benchmarks/learning-loop-data.ts), never the test split:
 *
 *   probe  the model's error on candidate symptoms in the sweep and held-out templates; the
 *          --terms most missed become the seeded systematic error
 *   sweep  a few settings (lr, epochs, replay ratio, schedule) on the sweep templates; the
 *          trainer's defaults come from here
 *   final  with the defaults: 40 corrected documents -> one round; held-out error on the target
 *          terms before and after, gold F1 before and after, round seconds; then the same 40
 *          documents with the target terms labelled BodyPart (poison) -> must be refused
 *
 *   node --import tsx benchmarks/learning-loop.ts [--phase probe,sweep,final] [--terms 5] [--documents 40]
 *
 * Writes benchmarks/results/learning-loop.json (final) and learning-loop-sweep.json (probe, sweep).
 */
import { mkdtemp, readFile, rm, writeFile, cp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sidecarSettings } from '../src/cli/commands/train.ts';
import { manifestSha256, modelDirectoryCatalog } from '../src/cli/stage-wiring.ts';
import { buildTrainerConfig, type TrainerConfig } from '../src/config/trainer.ts';
import { selectBackend } from '../src/model/backend.ts';
import { BertTokenizer } from '../src/model/tokenizer.ts';
import { segmentSentences } from '../src/pipeline/segment.ts';
import { ContinualTrainer } from '../src/train/continual.ts';
import { readKbertTsv } from '../src/train/datasets.ts';
import { createInjector, evaluateModel, loadNerModel, prepareExamples } from '../src/train/evaluate.ts';
import { FeedbackStore } from '../src/train/feedback-store.ts';
import { LabelChecker } from '../src/train/label-check.ts';
import { spansFromBio } from '../src/train/metrics.ts';
import { TrainerSidecar, type IncomingFeedback, type RoundReport } from '../src/train/sidecar.ts';
import { CANDIDATE_TERMS, makeSentences, toNer, type Labelled } from './learning-loop-data.ts';

const { values } = parseArgs({
  options: {
    phase: { type: 'string', default: 'probe,sweep,final' },
    terms: { type: 'string', default: '5' },
    documents: { type: 'string', default: '40' },
    configs: { type: 'string' },
    model: { type: 'string', default: 'models/medical' },
  },
});
const phases = new Set(values.phase!.split(','));
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const RESULTS = path.join(ROOT, 'benchmarks/results');
const KG = path.join(ROOT, 'data/kg/Medical.spo');
const loads = () => os.loadavg().map((x) => Math.round(x * 100) / 100);

const backend = await selectBackend('auto', () => undefined);
const tokenizer = await BertTokenizer.load();
const shipped = path.resolve(ROOT, values.model!);

/** Fraction of target mentions not found exactly (span and type) by the model at `dir`. */
async function targetError(dir: string, sets: Record<string, Labelled[]>): Promise<Record<string, { mentions: number; missed: number; error: number; byTerm: Record<string, number> }>> {
  const loaded = await loadNerModel(dir, tokenizer);
  try {
    const { injector } = await createInjector(tokenizer, { ...loaded.knowledge, kgFile: KG });
    const out: Awaited<ReturnType<typeof targetError>> = {};
    for (const [name, set] of Object.entries(sets)) {
      const prepared = await prepareExamples(set.map(toNer), injector, loaded.labels);
      const { predicted } = await evaluateModel(loaded.model, loaded.labels, prepared, loaded.types, { padId: tokenizer.padId, crf: loaded.crf });
      let missed = 0;
      const byTermMiss = new Map<string, [number, number]>();
      set.forEach((s, i) => {
        const t = s.entities[s.target];
        const found = spansFromBio(predicted[i]).some((e) => e.start === t.start && e.end === t.end && e.type === t.type);
        const c = byTermMiss.get(t.text) ?? [0, 0];
        c[0]++;
        if (!found) {
          missed++;
          c[1]++;
        }
        byTermMiss.set(t.text, c);
      });
      out[name] = { mentions: set.length, missed, error: missed / set.length, byTerm: Object.fromEntries([...byTermMiss].map(([k, [m, x]]) => [k, Math.round((x / m) * 1000) / 1000])) };
    }
    return out;
  } finally {
    loaded.model.dispose();
  }
}

function asFeedback(set: Labelled[], prefix: string, createdAt: number): IncomingFeedback<string>[] {
  return set.map((s, i) => ({
    position: { partition: 0, offset: String(i) },
    raw: '',
    document: { documentId: `${prefix}-${String(i).padStart(3, '0')}`, text: s.text, entities: s.entities, createdAt },
  }));
}

interface RoundRun {
  report: RoundReport;
  seconds: number;
  modelDir: string;
  championDir: string;
  stateDir: string;
  trainer: TrainerConfig;
}

/** One --once round of the real sidecar on `records`, from the shipped model copied into a fresh model directory. */
async function round(records: IncomingFeedback<string>[], overrides: Partial<Record<keyof TrainerConfig, number | string>>, work: string, stateDir?: string): Promise<RoundRun> {
  const trainer = buildTrainerConfig({ env: {}, overrides: { stateDir: stateDir ?? path.join(work, 'state'), ...overrides } });
  const modelDir = path.join(work, 'models');
  const championDir = path.join(modelDir, 'rmbert-medical-kg-crf');
  await cp(shipped, championDir, { recursive: true });
  const gold = readKbertTsv(trainer.goldFile);
  const replay = readKbertTsv(trainer.replayFile);
  const checker = trainer.labelCheck === 'on' ? LabelChecker.fromFiles(KG, trainer.lexiconFile) : null;
  const store = FeedbackStore.open(trainer.stateDir, { holdoutPercent: trainer.holdoutPercent });
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  const sidecar = new TrainerSidecar<string>({
    source: { start: async (deliver) => deliver(records), pause() {}, resume() {}, caughtUp: async () => true, stop: async () => undefined },
    committer: { commit: async () => undefined },
    store,
    ...(checker ? { labelCheck: (d) => checker.check(d) } : {}),
    replay: replay.sentences,
    champion: modelDirectoryCatalog(modelDir),
    trainer: new ContinualTrainer({ tokenizer, kgFile: KG, gold: { name: 'medical-gold.tsv', sentences: gold.sentences } }),
    championTypes: (dir) => ContinualTrainer.artifactTypes(dir),
    manifestSha256,
    segment: (text) => segmentSentences('', text),
    logger: quiet,
    settings: { ...sidecarSettings(trainer, 100_000, modelDir), minExamples: 1 },
  });
  const started = performance.now();
  const report = await sidecar.runOnce(1000);
  return { report, seconds: (performance.now() - started) / 1000, modelDir, championDir, stateDir: trainer.stateDir, trainer };
}

const nTerms = Number(values.terms);
const nDocs = Number(values.documents);
const sweepFile = path.join(RESULTS, 'learning-loop-sweep.json');
let sweep: Record<string, unknown> = {};
try {
  sweep = JSON.parse(await readFile(sweepFile, 'utf8')) as Record<string, unknown>;
} catch {
  // first run
}
const machine = { cores: os.cpus().length, cpu: os.cpus()[0]?.model ?? 'unknown', description: '2 cores, shared', backend: backend.engineName };

if (phases.has('probe')) {
  const sets = { sweep: makeSentences('sweep', CANDIDATE_TERMS, CANDIDATE_TERMS.length * 3), heldout: makeSentences('heldout', CANDIDATE_TERMS, CANDIDATE_TERMS.length * 4) };
  const before = await targetError(shipped, sets);
  const byTerm = CANDIDATE_TERMS.map((t) => ({ term: t, sweep: before.sweep.byTerm[t], heldout: before.heldout.byTerm[t] })).sort((a, b) => b.sweep + b.heldout - (a.sweep + a.heldout));
  sweep.probe = { loadavg: loads(), byTerm, chosen: byTerm.slice(0, nTerms).map((t) => t.term) };
  console.log(JSON.stringify(sweep.probe));
  await writeFile(sweepFile, JSON.stringify(sweep, null, 2) + '\n');
}

const chosen = (sweep.probe as { chosen: string[] } | undefined)?.chosen;
if (!chosen && (phases.has('sweep') || phases.has('final'))) throw new Error('run --phase probe first');

async function evaluateRound(run: RoundRun, sets: Record<string, Labelled[]>) {
  const promotedDir = run.report.outcome === 'promoted' ? run.report.location : null;
  return { champion: await targetError(run.championDir, sets), challenger: promotedDir ? await targetError(promotedDir, sets) : null };
}

if (phases.has('sweep')) {
  const terms = chosen!;
  const feedback = asFeedback(makeSentences('feedback', terms, nDocs), 'fb', 1_765_000_000_000);
  const sets = { sweep: makeSentences('sweep', terms, terms.length * 3) };
  const grid: Partial<Record<keyof TrainerConfig, number | string>>[] = values.configs
    ? (JSON.parse(values.configs) as Partial<Record<keyof TrainerConfig, number | string>>[])
    : [
        // The grid behind the defaults (benchmarks/results/learning-loop-sweep.json).
        { learningRate: 1e-4, epochs: 5, replayRatio: 2 },
        { learningRate: 2e-4, epochs: 5, replayRatio: 2 },
        { learningRate: 1e-4, epochs: 5, replayRatio: 4 },
        { learningRate: 2e-4, epochs: 8, replayRatio: 4 },
      ];
  const runs = (sweep.runs as unknown[] | undefined) ?? [];
  for (const overrides of grid) {
    const work = await mkdtemp(path.join(os.tmpdir(), 'learning-sweep-'));
    try {
      // The gate is opened wide here so every challenger is written and measured; whether the default gate
      // (gold within 0.5 points, holdout at least as good) would pass it is recorded from its figures.
      const run = await round(feedback, { goldTolerance: 1, gateMargin: -1, typeTolerance: 1, surfaceMaxLoss: 1, maxDistance: 0, ...overrides }, work);
      const figures = run.report.outcome === 'promoted' || run.report.outcome === 'refused' ? run.report.figures : null;
      const evaluated = run.report.outcome === 'promoted' ? await evaluateRound(run, sets) : null;
      const entry = {
        overrides,
        loss: 'CRF likelihood (transitions fixed)',
        outcome: run.report.outcome,
        failed: 'failed' in run.report ? run.report.failed : [],
        reasons: 'reasons' in run.report ? run.report.reasons : [],
        figures,
        goldDelta: figures ? figures.gold.challenger - figures.gold.champion : null,
        holdoutDelta: figures ? figures.holdout.challenger - figures.holdout.champion : null,
        defaultGoldAndHoldoutPass: figures ? figures.gold.challenger - figures.gold.champion >= -0.005 && figures.holdout.challenger >= figures.holdout.champion : null,
        sweepErrorBefore: evaluated?.champion.sweep.error ?? null,
        sweepErrorAfter: evaluated?.challenger?.sweep.error ?? null,
        roundSeconds: Math.round(run.seconds * 10) / 10,
        loadavg: loads(),
      };
      runs.push(entry);
      console.log(JSON.stringify(entry));
      sweep.runs = runs;
      sweep.machine = machine;
      sweep.command = `node --import tsx benchmarks/learning-loop.ts --phase sweep${values.configs ? ` --configs '${values.configs}'` : ''}`;
      await writeFile(sweepFile, JSON.stringify(sweep, null, 2) + '\n');
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
}

if (phases.has('final')) {
  const terms = chosen!;
  const good = makeSentences('feedback', terms, nDocs);
  const heldout = makeSentences('heldout', terms, terms.length * 4);
  const work = await mkdtemp(path.join(os.tmpdir(), 'learning-final-'));
  try {
    const run = await round(asFeedback(good, 'fb', 1_765_000_000_000), {}, work);
    const evaluated = await evaluateRound(run, { heldout });
    const figures = run.report.outcome === 'promoted' || run.report.outcome === 'refused' ? run.report.figures : null;
    // The same documents, the target terms labelled BodyPart, in a fresh store and model directory.
    const poisonWork = await mkdtemp(path.join(os.tmpdir(), 'learning-poison-'));
    const poisonSet = good.map((s) => ({ ...s, entities: s.entities.map((e, i) => (i === s.target ? { ...e, type: 'BodyPart' } : e)) }));
    const poison = await round(asFeedback(poisonSet, 'fb', 1_765_000_000_001), {}, poisonWork);
    const store = FeedbackStore.open(poison.stateDir, { holdoutPercent: 20 });
    await rm(poisonWork, { recursive: true, force: true });
    const result = {
      benchmark: 'learning-loop',
      command: `node --import tsx benchmarks/learning-loop.ts --phase final --documents ${nDocs}`,
      date: new Date().toISOString(),
      machine: { ...machine, loadavgAtEnd: loads() },
      data: {
        source: 'benchmarks/learning-loop-data.ts: templates of this project (feedback, sweep and held-out templates disjoint); not the test split',
        targetTerms: terms,
        feedbackDocuments: nDocs,
        heldOutSentences: heldout.length,
      },
      settings: 'the trainer defaults (src/config/trainer.ts), model models/medical, gold data/gold/medical-gold.tsv',
      summary: {
        outcome: run.report.outcome,
        heldOutErrorBefore: evaluated.champion.heldout.error,
        heldOutErrorAfter: evaluated.challenger?.heldout.error ?? null,
        goldF1Before: figures?.gold.champion ?? null,
        goldF1After: figures?.gold.challenger ?? null,
        poisonRefused: poison.report.outcome === 'refused',
        roundSeconds: Math.round(run.seconds * 10) / 10,
      },
      round: { reasons: 'reasons' in run.report ? run.report.reasons : [], figures, heldOutByTermBefore: evaluated.champion.heldout.byTerm, heldOutByTermAfter: evaluated.challenger?.heldout.byTerm ?? null },
      poison: {
        outcome: poison.report.outcome,
        reasons: 'reasons' in poison.report ? poison.report.reasons : [],
        quarantined: store.counts().quarantined,
        seconds: Math.round(poison.seconds * 10) / 10,
      },
    };
    console.log(JSON.stringify(result.summary));
    await writeFile(path.join(RESULTS, 'learning-loop.json'), JSON.stringify(result, null, 2) + '\n');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
