/**
 * The paper's experiments as reproducible commands (`rmbert experiment NAME`):
 *
 *   medical          table 3 + table 5: BERT, K-BERT, RM-BERT on the medical split, several seeds
 *   msra             table 4: the same on MSRA (a seeded training subset; K-BERT's dev subset and full test)
 *   ablation         fig. 6: RM-BERT and -MASK, -POS, -RECALL, -KG on medical and MSRA
 *   recall-distance  fig. 7: ||theta - theta*||_1 during training for several k (t0 fixed), medical
 *   entity-deletion  fig. 8: BodyPart training entities removed at 40..90 %, BERT / K-BERT / RM-BERT
 *
 * Every run is one fine-tune + one test evaluation, stored as runs/experiments/<corpus>/<run id>/result.json.
 * Run ids encode the method, seed and every setting that changes the result, so experiments share
 * runs (the ablation's RM-BERT is table 3's) and an interrupted grid continues where it stopped: a
 * run with a result is skipped, a run with a checkpoint resumes. Each experiment then writes
 * benchmarks/results/<name>.json (summary + details), <name>.md (tables naming the backbone) and SVG plots.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../../errors/index.ts';
import { loadArtifact } from '../../model/artifact.ts';
import type { BertTokenizer } from '../../model/tokenizer.ts';
import type { NamedCorpus, NerSentence } from '../datasets.ts';
import { defaultDataDir, deleteEntities, loadCorpus, MEDICAL_TYPE_NAMES_ZH, subsetSentences } from '../datasets.ts';
import { createInjector, evaluateModel, loadNerModel, prepareExamples } from '../evaluate.ts';
import type { KnowledgeSetup } from '../evaluate.ts';
import { applyAblation, fineTune } from '../finetune.ts';
import type { Ablation } from '../finetune.ts';
import type { NerEvaluation, Prf } from '../metrics.ts';
import { renderBarChart, renderCharts } from '../plot.ts';
import type { Chart } from '../plot.ts';

export const EXPERIMENT_NAMES = ['medical', 'msra', 'ablation', 'recall-distance', 'entity-deletion'] as const;
export type ExperimentName = (typeof EXPERIMENT_NAMES)[number];

export interface ExperimentSettings {
  backboneDir: string;
  dataDir: string;
  /** runs/experiments */
  runsDir: string;
  /** benchmarks/results */
  resultsDir: string;
  medicalKg: string;
  msraKg: string;
  seeds: number[];
  epochs: number;
  learningRate: number;
  gamma: number;
  /** Sentences per batch: the paper's 10 (medical) and 16 (MSRA). */
  batchSizeMedical: number;
  batchSizeMsra: number;
  batchTokens: number;
  /** Medical training / dev subsets for quick runs (default: the whole split). */
  medicalTrainLimit?: number;
  medicalDevLimit?: number;
  /** MSRA training / dev subsets (the full test set is always used). */
  msraTrainLimit: number;
  msraDevLimit: number;
  /** Per-run time limit in minutes (checkpoint + artifact of the best epoch so far); none by default. */
  maxMinutesPerRun?: number;
  /** Keep each run's model artifact (default: only result.json and the curve stay). */
  keepModels: boolean;
  /**
   * RecAdam's schedule lambda(t) = sigmoid(k (t - t0)) per corpus. Defaults are the paper's (medical k 0.01,
   * t0 1000; MSRA k 0.005, t0 250), set for its 14,000-step runs; shorter runs scale them (see PLAN.md).
   */
  anneal: Record<NamedCorpus, { k: number; t0: number }>;
  /** Only these methods (to split a grid over processes); default: all the experiment needs. */
  methods?: Method[];
  /** The ablation on these corpora only (default both). */
  corpora?: NamedCorpus[];
  /** Entity deletion at these fractions only (default DELETION_FRACTIONS). */
  fractions?: number[];
  /**
   * Earlier results files (benchmarks/results/NAME.json) whose recorded runs stand in for runs that
   * runs/ no longer holds (a fresh checkout), when their settings and backbone are these.
   */
  reuse?: string[];
  /** Only list the runs. */
  dryRun: boolean;
}

export const METHODS = {
  bert: { label: 'BERT', knowledge: false, optimizer: 'adam', ablation: 'none' },
  kbert: { label: 'K-BERT', knowledge: true, optimizer: 'adam', ablation: 'none' },
  rmbert: { label: 'RM-BERT', knowledge: true, optimizer: 'recadam', ablation: 'none' },
  'no-mask': { label: '-MASK', knowledge: true, optimizer: 'recadam', ablation: 'no-mask' },
  'no-pos': { label: '-POS', knowledge: true, optimizer: 'recadam', ablation: 'no-pos' },
  'no-kg': { label: '-KG', knowledge: true, optimizer: 'recadam', ablation: 'no-kg' },
} as const satisfies Record<string, { label: string; knowledge: boolean; optimizer: 'adam' | 'recadam'; ablation: Ablation }>;
export type Method = keyof typeof METHODS;

/** Paper figures (micro F1 %, its tables compare with K-BERT's span-only scorer). */
export const PAPER = {
  medical: { bert: 93.06, kbert: 94.08, rmbert: 94.28 },
  msra: { bert: 94.08, kbert: 94.45, rmbert: 94.75 },
  medicalPerType: {
    BERT: { BodyPart: 88.48, Symptom: 97.11, Disease: 71.53, Examine: 96.86, Cure: 90.91 },
    'RM-BERT': { BodyPart: 89.7, Symptom: 98.09, Disease: 78.83, Examine: 98.05, Cure: 90.0 },
  },
} as const;

export const PAPER_ANNEAL: Readonly<Record<NamedCorpus, { k: number; t0: number }>> = { medical: { k: 0.01, t0: 1000 }, msra: { k: 0.005, t0: 250 } };

export interface RunSpec {
  /** Unique across experiments for the same settings. */
  id: string;
  corpus: NamedCorpus;
  method: Method;
  seed: number;
  k: number;
  t0: number;
  deleteType?: string;
  deleteFraction?: number;
}

export interface RunResult {
  spec: RunSpec;
  settings: Record<string, unknown>;
  status: string;
  steps: number;
  bestEpoch: number;
  history: unknown[];
  trainSentencesPerSecond: number;
  trainSeconds: number;
  parameters: number;
  dev: { strict: Prf; kbert: Prf } | null;
  test: NerEvaluation;
  /** Per logged step: step, loss, lambda, L1 distance to theta*. */
  curve: Array<{ step: number; loss: number; lambda: number; l1: number }>;
  deleted?: { removed: number; kept: number };
  finishedAt: string;
  /** Set when the run was taken from an earlier results file instead of runs/ (no history then, and a curve only from fig. 7's file). */
  reusedFrom?: string;
  /** The machine the results file names, for a reused run. */
  reusedMachine?: string;
}

function run(s: RunSelection, corpus: NamedCorpus, method: Method, seed: number, extra: Partial<RunSpec> = {}): RunSpec {
  const anneal = s.anneal[corpus];
  const spec: RunSpec = { id: '', corpus, method, seed, k: extra.k ?? anneal.k, t0: extra.t0 ?? anneal.t0, ...extra };
  const parts = [method, `s${seed}`];
  // The schedule only matters to RecAdam runs; Adam runs keep one id whatever it is, so they are shared.
  const paper = PAPER_ANNEAL[corpus];
  if (METHODS[method].optimizer === 'recadam' && (spec.k !== paper.k || spec.t0 !== paper.t0)) parts.push(`k${spec.k}-t${spec.t0}`);
  if (spec.deleteType && spec.deleteFraction) parts.push(`del-${spec.deleteType}-${spec.deleteFraction}`);
  spec.id = parts.join('-');
  return spec;
}

export const RECALL_DISTANCE_K = [0.001, 0.005, 0.01, 0.05, 0.1];
/** The paper's fig. 8: 40 % of BodyPart training entities removed, then 10 % more at a time up to 90 %. */
export const DELETION_FRACTIONS = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

type RunSelection = Pick<ExperimentSettings, 'seeds' | 'anneal' | 'methods' | 'corpora' | 'fractions'>;

/** The runs of an experiment (only those of `s.methods` when given). */
export function experimentRuns(name: ExperimentName, s: RunSelection): RunSpec[] {
  const all = allExperimentRuns(name, s).filter((r) => !s.corpora || s.corpora.includes(r.corpus));
  return s.methods ? all.filter((r) => s.methods!.includes(r.method)) : all;
}

function allExperimentRuns(name: ExperimentName, s: RunSelection): RunSpec[] {
  const per = (corpus: NamedCorpus, methods: Method[], seeds = s.seeds) => methods.flatMap((m) => seeds.map((seed) => run(s, corpus, m, seed)));
  switch (name) {
    case 'medical':
      return per('medical', ['bert', 'kbert', 'rmbert']);
    case 'msra':
      return per('msra', ['bert', 'kbert', 'rmbert']);
    case 'ablation':
      return [...per('medical', ['rmbert', 'no-mask', 'no-pos', 'kbert', 'no-kg']), ...per('msra', ['rmbert', 'no-mask', 'no-pos', 'kbert', 'no-kg'])];
    case 'recall-distance':
      return RECALL_DISTANCE_K.map((k) => run(s, 'medical', 'rmbert', s.seeds[0], { k }));
    case 'entity-deletion':
      return (s.fractions ?? DELETION_FRACTIONS).flatMap((f) =>
        (['bert', 'kbert', 'rmbert'] as Method[]).map((m) => run(s, 'medical', m, s.seeds[0], { deleteType: 'BodyPart', deleteFraction: f })),
      );
  }
}

/** Settings that change a run's result; part of where its result is stored. */
function settingsKey(s: ExperimentSettings, corpus: NamedCorpus): Record<string, unknown> {
  return {
    epochs: s.epochs,
    lr: s.learningRate,
    gamma: s.gamma,
    batchSize: corpus === 'medical' ? s.batchSizeMedical : s.batchSizeMsra,
    batchTokens: s.batchTokens,
    ...(corpus === 'msra' ? { trainLimit: s.msraTrainLimit, devLimit: s.msraDevLimit } : {}),
    ...(corpus === 'medical' && s.medicalTrainLimit ? { trainLimit: s.medicalTrainLimit } : {}),
    ...(corpus === 'medical' && s.medicalDevLimit ? { devLimit: s.medicalDevLimit } : {}),
    maxMinutes: s.maxMinutesPerRun ?? null,
  };
}

function settingsDir(s: ExperimentSettings, corpus: NamedCorpus): string {
  const k = settingsKey(s, corpus);
  const tag = Object.entries(k)
    .filter(([, v]) => v !== null)
    .map(([key, v]) => `${key}${v}`)
    .join('_');
  return path.join(s.runsDir, corpus, tag);
}

interface BackboneInfo {
  dir: string;
  version: string;
  layers: number;
  hidden: number;
  heads: number;
  params: number;
  pretrainingTokens: number | null;
}

async function backboneInfo(dir: string, tokenizer: BertTokenizer): Promise<BackboneInfo> {
  const art = await loadArtifact(dir, { vocabSha256: tokenizer.vocabSha256, foldFullWidth: tokenizer.foldFullWidth });
  let params = 0;
  for (const [name, w] of art.weights) if (!name.startsWith('cls.')) params += w.data.length;
  const training = art.config.training ?? {};
  const tokens = training.tokensSeen ?? training.pretrainingTokens;
  return {
    dir,
    version: `${art.version.name}+${art.version.hash}`,
    layers: art.config.model.numLayers,
    hidden: art.config.model.hiddenSize,
    heads: art.config.model.numHeads,
    params,
    pretrainingTokens: typeof tokens === 'number' ? tokens : null,
  };
}

interface CorpusData {
  types: readonly string[];
  train: NerSentence[];
  dev: NerSentence[];
  test: NerSentence[];
}

const corpusCache = new Map<string, CorpusData>();

function corpusData(corpus: NamedCorpus, s: ExperimentSettings): CorpusData {
  const key = `${corpus}:${s.dataDir}:${s.msraTrainLimit}:${s.msraDevLimit}:${s.medicalTrainLimit}:${s.medicalDevLimit}`;
  let data = corpusCache.get(key);
  if (!data) {
    const c = loadCorpus(corpus, s.dataDir);
    // The subsets are seeded by a fixed seed, not the run's: every method and seed sees the same data.
    data =
      corpus === 'msra'
        ? { types: c.types, train: subsetSentences(c.train.sentences, s.msraTrainLimit, 1), dev: subsetSentences(c.dev.sentences, s.msraDevLimit, 1), test: c.test.sentences }
        : {
            types: c.types,
            train: s.medicalTrainLimit ? subsetSentences(c.train.sentences, s.medicalTrainLimit, 1) : c.train.sentences,
            dev: s.medicalDevLimit ? subsetSentences(c.dev.sentences, s.medicalDevLimit, 1) : c.dev.sentences,
            test: c.test.sentences,
          };
    corpusCache.set(key, data);
  }
  return data;
}

function knowledgeFor(spec: RunSpec, s: ExperimentSettings): { knowledge: KnowledgeSetup; optimizer: 'adam' | 'recadam' } {
  const m = METHODS[spec.method];
  const base: KnowledgeSetup = {
    enabled: m.knowledge,
    kgFile: spec.corpus === 'medical' ? s.medicalKg : s.msraKg,
    inject: 'relation+object',
    maxEntities: 2,
    maxLength: 256,
    softPositions: true,
    visibilityMatrix: true,
  };
  return applyAblation(m.ablation, base, m.optimizer);
}

/** Trains and tests one run unless its result exists; returns the result. */
export async function executeRun(spec: RunSpec, s: ExperimentSettings, tokenizer: BertTokenizer, log: (line: string) => void): Promise<RunResult> {
  const dir = path.join(settingsDir(s, spec.corpus), spec.id);
  const resultFile = path.join(dir, 'result.json');
  if (existsSync(resultFile)) return JSON.parse(await readFile(resultFile, 'utf8')) as RunResult;
  await mkdir(dir, { recursive: true });
  const data = corpusData(spec.corpus, s);
  let train = data.train;
  let deleted: RunResult['deleted'];
  if (spec.deleteType && spec.deleteFraction) {
    const d = deleteEntities(train, spec.deleteType, spec.deleteFraction, 1);
    train = d.sentences;
    deleted = { removed: d.removed, kept: d.kept };
  }
  const { knowledge, optimizer } = knowledgeFor(spec, s);
  const runDir = path.join(dir, 'run');
  const outDir = path.join(dir, 'model');
  const resume = existsSync(path.join(runDir, 'checkpoint', 'state.json'));
  log(`${spec.corpus}/${spec.id}: ${resume ? 'resuming' : 'training'} (${train.length} train, ${data.dev.length} dev sentences)`);
  const result = await fineTune({
    name: `exp-${spec.corpus}-${spec.id}`.replace(/[^A-Za-z0-9._-]/g, '_'),
    datasetName: spec.corpus,
    train,
    dev: data.dev,
    types: data.types,
    tokenizer,
    model: { backboneDir: s.backboneDir },
    knowledge,
    optimizer,
    anneal: 'sigmoid',
    k: spec.k,
    t0: spec.t0,
    gamma: s.gamma,
    learningRate: s.learningRate,
    warmup: 0.1,
    weightDecay: 0.01,
    clipNorm: 1,
    dropout: 0.1,
    epochs: s.epochs,
    batchTokens: s.batchTokens,
    maxBatchSentences: spec.corpus === 'medical' ? s.batchSizeMedical : s.batchSizeMsra,
    seed: spec.seed,
    maxMinutes: s.maxMinutesPerRun,
    outDir,
    overwrite: true,
    runDir,
    resume,
    // Also when stderr is a log file: grids run for hours in the background (the bar then prints a line every 15 s).
    progress: true,
    log: (line) => log(`  ${line}`),
    extraTraining: { experimentRun: spec },
  });
  if (result.status === 'interrupted' || !result.artifact) {
    throw new ConfigError([`${spec.corpus}/${spec.id} stopped (${result.status}); run the experiment again to resume`]);
  }
  const loaded = await loadNerModel(outDir, tokenizer);
  let test: NerEvaluation;
  try {
    const setup = await createInjector(tokenizer, { ...loaded.knowledge, kgFile: knowledge.kgFile });
    const prepared = await prepareExamples(data.test, setup.injector, loaded.labels);
    test = (await evaluateModel(loaded.model, loaded.labels, prepared, loaded.types, { padId: tokenizer.padId, crf: loaded.crf })).evaluation;
  } finally {
    loaded.model.dispose();
  }
  const curve = (await readFile(path.join(runDir, 'curve.jsonl'), 'utf8'))
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { kind: string; step: number; loss: number; lambda: number; l1: number })
    .filter((e) => e.kind === 'step')
    .map(({ step, loss, lambda, l1 }) => ({ step, loss, lambda, l1 }));
  const out: RunResult = {
    spec,
    settings: { ...settingsKey(s, spec.corpus), backbone: s.backboneDir, knowledge: { ...knowledge, kgFile: path.basename(knowledge.kgFile ?? '') }, optimizer },
    status: result.status,
    steps: result.steps,
    bestEpoch: result.bestEpoch,
    history: result.history,
    trainSentencesPerSecond: result.trainSentencesPerSecond,
    trainSeconds: result.trainSeconds,
    parameters: result.parameters,
    dev: result.bestDev ? { strict: result.bestDev.strict, kbert: result.bestDev.kbert } : null,
    test,
    curve,
    ...(deleted ? { deleted } : {}),
    finishedAt: new Date().toISOString(),
  };
  await writeFile(resultFile, JSON.stringify(out, null, 1) + '\n');
  // Checkpoints are only for resuming; the result and the curve stay.
  await rm(path.join(runDir, 'checkpoint'), { recursive: true, force: true });
  if (!s.keepModels) await rm(outDir, { recursive: true, force: true });
  log(`  test: strict F1 ${(100 * test.strict.f1).toFixed(2)}, K-BERT F1 ${(100 * test.kbert.f1).toFixed(2)}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Summaries

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const std = (xs: number[]) => {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
};
const pct = (x: number) => (Number.isFinite(x) ? (100 * x).toFixed(2) : '—');

interface MethodSummary {
  label: string;
  runs: number;
  strictF1: number;
  strictF1Std: number;
  strictPrecision: number;
  strictRecall: number;
  kbertMetricF1: number;
  kbertMetricF1Std: number;
  kbertMetricPrecision: number;
  kbertMetricRecall: number;
  perTypeF1: Record<string, number>;
}

function summarizeMethod(results: RunResult[]): MethodSummary {
  const types = Object.keys(results[0]?.test.perType ?? {});
  return {
    label: METHODS[results[0].spec.method].label,
    runs: results.length,
    strictF1: mean(results.map((r) => r.test.strict.f1)),
    strictF1Std: std(results.map((r) => r.test.strict.f1)),
    strictPrecision: mean(results.map((r) => r.test.strict.precision)),
    strictRecall: mean(results.map((r) => r.test.strict.recall)),
    kbertMetricF1: mean(results.map((r) => r.test.kbert.f1)),
    kbertMetricF1Std: std(results.map((r) => r.test.kbert.f1)),
    kbertMetricPrecision: mean(results.map((r) => r.test.kbert.precision)),
    kbertMetricRecall: mean(results.map((r) => r.test.kbert.recall)),
    perTypeF1: Object.fromEntries(types.map((t) => [t, mean(results.map((r) => r.test.perType[t]?.f1 ?? NaN))])),
  };
}

function groupBy<T>(xs: T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of xs) {
    const k = key(x);
    if (!m.has(k)) m.set(k, []);
    m.get(k)!.push(x);
  }
  return m;
}

function backboneLine(b: BackboneInfo): string {
  const tokens = b.pretrainingTokens !== null ? `${(b.pretrainingTokens / 1e6).toFixed(2)} M pretraining tokens` : 'pretraining tokens unknown';
  return `Backbone: ${b.version} — ${b.layers} layers, hidden ${b.hidden}, ${b.heads} heads, ${(b.params / 1e6).toFixed(2)} M parameters, ${tokens} (the paper used BERT-base, 110 M parameters, pretrained on a very large corpus).`;
}

function backboneCaption(b: BackboneInfo): string {
  const tokens = b.pretrainingTokens !== null ? `, ${(b.pretrainingTokens / 1e6).toFixed(2)} M pretraining tokens` : '';
  return `backbone ${b.version}: ${b.layers} layers, hidden ${b.hidden}, ${(b.params / 1e6).toFixed(2)} M parameters${tokens}`;
}

function methodsTable(summary: Record<string, MethodSummary>, paper?: Record<string, number>): string[] {
  const lines = [
    '| model | runs | strict P | strict R | strict F1 (mean ± sd) | K-BERT-metric P | K-BERT-metric R | K-BERT-metric F1 (mean ± sd) | paper F1 |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const [key, m] of Object.entries(summary)) {
    lines.push(
      `| ${m.label} | ${m.runs} | ${pct(m.strictPrecision)} | ${pct(m.strictRecall)} | ${pct(m.strictF1)} ± ${pct(m.strictF1Std)} | ${pct(m.kbertMetricPrecision)} | ${pct(m.kbertMetricRecall)} | ${pct(m.kbertMetricF1)} ± ${pct(m.kbertMetricF1Std)} | ${paper?.[key]?.toFixed(2) ?? '—'} |`,
    );
  }
  return lines;
}

function devCurveChart(title: string, byMethod: Map<string, RunResult[]>): Chart {
  return {
    title,
    xLabel: 'epoch',
    yLabel: 'dev strict F1 (%), mean over seeds',
    series: [...byMethod].map(([method, runs]) => {
      const epochs = Math.max(...runs.map((r) => r.history.length));
      const points: [number, number][] = [];
      for (let e = 0; e < epochs; e++) {
        const vals = runs.map((r) => (r.history[e] as { dev?: { strictF1: number } } | undefined)?.dev?.strictF1).filter((v): v is number => v !== undefined);
        if (vals.length) points.push([e + 1, 100 * mean(vals)]);
      }
      return { name: METHODS[method as Method].label, points, markers: true };
    }),
  };
}

export interface ExperimentOutput {
  json: Record<string, unknown>;
  markdown: string;
  svgs: Record<string, string>;
}

function settingsLine(s: ExperimentSettings, corpus: NamedCorpus): string {
  const batch = corpus === 'medical' ? s.batchSizeMedical : s.batchSizeMsra;
  const { k, t0 } = s.anneal[corpus];
  return `batch ${batch} sentences (<= ${s.batchTokens} padded tokens), peak lr ${s.learningRate} (10 % warm-up, linear decay), RecAdam gamma ${s.gamma} (lr x gamma = ${+(s.learningRate * s.gamma).toFixed(3)}), lambda(t) = sigmoid(${k} (t - ${t0}))`;
}

/** The command that reproduces an experiment with these settings: every setting that differs from the default. */
export function experimentCommand(name: ExperimentName, s: ExperimentSettings): string {
  const d = defaultExperimentSettings('.');
  const flags: string[] = [`--seeds ${s.seeds.join(',')}`, `--epochs ${s.epochs}`];
  const add = (flag: string, value: unknown, fallback: unknown) => {
    if (value !== undefined && value !== fallback) flags.push(`${flag} ${String(value)}`);
  };
  add('--lr', s.learningRate, d.learningRate);
  add('--gamma', s.gamma, d.gamma);
  add('--batch-size', s.batchSizeMedical, d.batchSizeMedical);
  add('--msra-batch-size', s.batchSizeMsra, d.batchSizeMsra);
  add('--batch-tokens', s.batchTokens, d.batchTokens);
  add('--medical-train', s.medicalTrainLimit, d.medicalTrainLimit);
  add('--medical-dev', s.medicalDevLimit, d.medicalDevLimit);
  add('--msra-train', s.msraTrainLimit, d.msraTrainLimit);
  add('--msra-dev', s.msraDevLimit, d.msraDevLimit);
  add('--max-minutes', s.maxMinutesPerRun, d.maxMinutesPerRun);
  if (s.methods) flags.push(`--methods ${s.methods.join(',')}`);
  const corpora: NamedCorpus[] = name === 'msra' ? ['msra'] : name === 'ablation' ? (s.corpora ?? ['medical', 'msra']) : ['medical'];
  if (name === 'ablation' && s.corpora) flags.push(`--corpus ${s.corpora.join(',')}`);
  if (name === 'entity-deletion' && s.fractions) flags.push(`--fractions ${s.fractions.join(',')}`);
  for (const corpus of corpora) {
    const flag = corpus === 'msra' ? '--msra-' : '--';
    // fig. 7 varies k itself.
    if (name !== 'recall-distance') add(`${flag}k`, s.anneal[corpus].k, d.anneal[corpus].k);
    add(`${flag}t0`, s.anneal[corpus].t0, d.anneal[corpus].t0);
  }
  return `node --import tsx src/cli/main.ts experiment ${name} ${flags.join(' ')}`;
}

function baseJson(name: ExperimentName, s: ExperimentSettings, backbone: BackboneInfo, summary: Record<string, unknown>, details: Record<string, unknown>) {
  return {
    command: experimentCommand(name, s),
    machine: `${os.cpus().length} cores (${os.cpus()[0]?.model.trim() ?? 'unknown CPU'}), tfjs backend chosen at run time (one thread on wasm)`,
    date: new Date().toISOString(),
    summary: { ...summary, seeds: s.seeds, backbone: { layers: backbone.layers, hidden: backbone.hidden, heads: backbone.heads, params: backbone.params, pretrainingTokens: backbone.pretrainingTokens, version: backbone.version } },
    details: { settings: { ...s, dryRun: undefined }, ...details },
  };
}

function summarizeMethods(results: RunResult[], corpus: NamedCorpus) {
  const byMethod = groupBy(
    results.filter((r) => r.spec.corpus === corpus),
    (r) => r.spec.method,
  );
  const summary: Record<string, MethodSummary> = {};
  for (const [m, runs] of byMethod) summary[m] = summarizeMethod(runs);
  return { byMethod, summary };
}

/** Builds the JSON, markdown and SVGs of an experiment from its run results. */
export function summarize(name: ExperimentName, results: RunResult[], s: ExperimentSettings, backbone: BackboneInfo): ExperimentOutput {
  const bl = backboneLine(backbone);
  const caption = backboneCaption(backbone);
  const runsDetail = results.map((r) => ({ id: r.spec.id, corpus: r.spec.corpus, method: r.spec.method, seed: r.spec.seed, k: r.spec.k, t0: r.spec.t0, steps: r.steps, bestEpoch: r.bestEpoch, test: { strict: r.test.strict, kbert: r.test.kbert, perType: r.test.perType, confusion: r.test.confusion }, dev: r.dev, trainSentencesPerSecond: r.trainSentencesPerSecond, trainMinutes: r.trainSeconds / 60, ...(r.deleted ? { deleted: r.deleted } : {}) }));
  if (name === 'medical' || name === 'msra') {
    const corpus = name;
    const { byMethod, summary } = summarizeMethods(results, corpus);
    const paper = PAPER[corpus] as Record<string, number>;
    const md = [
      `# ${corpus === 'medical' ? 'Medical (CCKS 2017, K-BERT split): paper table 3 / table 5' : 'MSRA: paper table 4'}`,
      '',
      bl,
      '',
      `Test set, micro scores in %. Strict = span and type must match; K-BERT metric = K-BERT's scorer (span boundaries only), the one the paper's tables use. Means over seeds ${s.seeds.join(', ')}; ${s.epochs} epochs, model chosen by dev strict F1.`,
      '',
      `Settings: ${settingsLine(s, corpus)}. Command: \`${experimentCommand(name, s)}\`.`,
      corpus === 'msra' ? `MSRA training subset: ${s.msraTrainLimit} sentences of dh_msra's training part (minus K-BERT dev/test), dev subset ${s.msraDevLimit}, full K-BERT test set; graph HowNet.spo (the paper's CnDbpedia is not obtainable).` : '',
      '',
      ...methodsTable(summary, paper),
      '',
    ];
    if (corpus === 'medical') {
      const types = Object.keys(summary.rmbert?.perTypeF1 ?? summary.bert?.perTypeF1 ?? {});
      md.push('## Per entity type (strict F1 %, paper table 5)', '', `| model | ${types.map((t) => `${t} ${MEDICAL_TYPE_NAMES_ZH[t] ?? ''}`).join(' | ')} |`, `|---|${types.map(() => '---').join('|')}|`);
      for (const m of Object.values(summary)) md.push(`| ${m.label} | ${types.map((t) => pct(m.perTypeF1[t])).join(' | ')} |`);
      for (const [label, row] of Object.entries(PAPER.medicalPerType)) md.push(`| paper ${label} | ${types.map((t) => (row as Record<string, number>)[t]?.toFixed(2) ?? '—').join(' | ')} |`);
      md.push('');
    }
    const methodSummary = Object.fromEntries(Object.entries(summary).map(([k, v]) => [k, v]));
    return {
      json: baseJson(name, s, backbone, { ...methodSummary, paper }, { runs: runsDetail }),
      markdown: md.filter((l, i, a) => !(l === '' && a[i - 1] === '')).join('\n'),
      svgs: {
        [`${name}.svg`]: renderBarChart(
          {
            title: `${corpus}: test micro F1 (%)`,
            yLabel: 'F1 (%)',
            groups: Object.values(summary).map((m) => m.label),
            series: [
              { name: 'strict', values: Object.values(summary).map((m) => 100 * m.strictF1) },
              { name: 'K-BERT metric', values: Object.values(summary).map((m) => 100 * m.kbertMetricF1) },
              { name: 'paper', values: Object.keys(summary).map((k) => paper[k] ?? NaN) },
            ],
          },
          { caption },
        ),
        [`${name}-dev-curves.svg`]: renderCharts([devCurveChart(`${corpus}: dev F1 per epoch`, byMethod)], { caption }),
      },
    };
  }
  if (name === 'ablation') {
    const per: Record<string, Record<string, MethodSummary>> = {};
    const md = ['# Ablations (paper fig. 6)', '', bl, '', 'Test micro F1 in %, mean over seeds; -RECALL is K-BERT (knowledge, plain Adam); -KG keeps RecAdam but injects nothing.', ''];
    const corpora = s.corpora ?? (['medical', 'msra'] as const);
    for (const corpus of corpora) {
      const { summary } = summarizeMethods(results, corpus);
      if (summary.kbert) summary.kbert = { ...summary.kbert, label: '-RECALL (K-BERT)' };
      per[corpus] = summary;
      md.push(`## ${corpus}`, '', ...methodsTable(summary), '');
    }
    const order: Method[] = ['rmbert', 'no-mask', 'no-pos', 'kbert', 'no-kg'];
    const label = (m: Method) => (m === 'kbert' ? '-RECALL' : METHODS[m].label);
    const summary: Record<string, unknown> = {};
    for (const corpus of corpora) {
      summary[corpus] = Object.fromEntries(order.filter((m) => per[corpus][m]).map((m) => [m === 'kbert' ? 'no-recall' : m, { strictF1: per[corpus][m].strictF1, kbertMetricF1: per[corpus][m].kbertMetricF1, runs: per[corpus][m].runs }]));
    }
    return {
      json: baseJson(name, s, backbone, summary, { runs: runsDetail }),
      markdown: md.join('\n'),
      svgs: {
        'ablation.svg': renderBarChart(
          {
            title: 'ablations: test strict F1 (%)',
            yLabel: 'strict F1 (%)',
            groups: order.map(label),
            series: corpora.map((c) => ({ name: c, values: order.map((m) => 100 * (per[c][m]?.strictF1 ?? NaN)) })),
          },
          { caption },
        ),
      },
    };
  }
  if (name === 'recall-distance') {
    const md = ['# Distance to the pretrained weights during RM-BERT fine-tuning (paper fig. 7)', '', bl, '', `medical, t0 = ${s.anneal.medical.t0}, seed ${s.seeds[0]}.`, '', '| k | L1 distance at t0 | at 2 t0 | final | test strict F1 | test K-BERT-metric F1 |', '|---|---|---|---|---|---|'];
    const at = (r: RunResult, step: number) => r.curve.reduce<{ step: number; l1: number } | null>((best, e) => (e.step <= step && (!best || e.step > best.step) ? e : best), null)?.l1 ?? NaN;
    const byK = [...results].sort((a, b) => a.spec.k - b.spec.k);
    for (const r of byK) md.push(`| ${r.spec.k} | ${at(r, r.spec.t0).toFixed(1)} | ${at(r, 2 * r.spec.t0).toFixed(1)} | ${(r.curve.at(-1)?.l1 ?? NaN).toFixed(1)} | ${pct(r.test.strict.f1)} | ${pct(r.test.kbert.f1)} |`);
    return {
      json: baseJson(name, s, backbone, Object.fromEntries(byK.map((r) => [`k=${r.spec.k}`, { strictF1: r.test.strict.f1, kbertMetricF1: r.test.kbert.f1, l1AtT0: at(r, r.spec.t0), l1Final: r.curve.at(-1)?.l1 ?? null }])), { runs: runsDetail, curves: Object.fromEntries(byK.map((r) => [r.spec.k, r.curve])) }),
      markdown: md.join('\n'),
      svgs: {
        'recall-distance.svg': renderCharts(
          [
            { title: `||theta - theta*||_1 (medical, t0 = ${s.anneal.medical.t0})`, xLabel: 'step', yLabel: 'L1 distance', series: byK.map((r) => ({ name: `k = ${r.spec.k}`, points: r.curve.map((e) => [e.step, e.l1]) })) },
            { title: 'lambda(t)', xLabel: 'step', yLabel: 'lambda', series: byK.map((r) => ({ name: `k = ${r.spec.k}`, points: r.curve.map((e) => [e.step, e.lambda]) })) },
          ],
          { columns: 2, width: 520, caption },
        ),
      },
    };
  }
  // entity-deletion
  const byMethod = groupBy(results, (r) => r.spec.method);
  const md = ['# BodyPart entities removed from the training set (paper fig. 8)', '', bl, '', `medical, seed ${s.seeds[0]}; test strict F1 overall / on BodyPart (%). A removed entity's characters are labelled O in its training sentence (the sentence stays), so the model is taught that those mentions are not entities; the paper says only that the entities were deleted at random.`, '', `| removed | ${[...byMethod.keys()].map((m) => METHODS[m as Method].label).join(' | ')} |`, `|---|${[...byMethod.keys()].map(() => '---').join('|')}|`];
  for (const f of s.fractions ?? DELETION_FRACTIONS) {
    const cells = [...byMethod.values()].map((runs) => {
      const r = runs.find((x) => x.spec.deleteFraction === f);
      return r ? `${pct(r.test.strict.f1)} / ${pct(r.test.perType.BodyPart?.f1 ?? NaN)}` : '—';
    });
    md.push(`| ${Math.round(f * 100)}% | ${cells.join(' | ')} |`);
  }
  const series = (metric: (r: RunResult) => number) =>
    [...byMethod].map(([m, runs]) => ({ name: METHODS[m as Method].label, points: runs.map((r) => [100 * (r.spec.deleteFraction ?? 0), 100 * metric(r)] as [number, number]).sort((a, b) => a[0] - b[0]), markers: true }));
  return {
    json: baseJson(
      name,
      s,
      backbone,
      Object.fromEntries([...byMethod].map(([m, runs]) => [m, Object.fromEntries(runs.map((r) => [`${Math.round(100 * (r.spec.deleteFraction ?? 0))}%`, { strictF1: r.test.strict.f1, kbertMetricF1: r.test.kbert.f1, bodyPartF1: r.test.perType.BodyPart?.f1 ?? null }]))])),
      { runs: runsDetail },
    ),
    markdown: md.join('\n'),
    svgs: {
      'entity-deletion.svg': renderCharts(
        [
          { title: 'test strict F1 (%)', xLabel: 'BodyPart training entities removed (%)', yLabel: 'F1 (%)', series: series((r) => r.test.strict.f1) },
          { title: 'BodyPart strict F1 (%)', xLabel: 'BodyPart training entities removed (%)', yLabel: 'F1 (%)', series: series((r) => r.test.perType.BodyPart?.f1 ?? NaN) },
        ],
        { columns: 2, width: 480, caption },
      ),
    },
  };
}

/** A run as a results file records it (summarize's runsDetail). */
interface RecordedRun extends Omit<RunSpec, 'deleteType' | 'deleteFraction'> {
  steps: number;
  bestEpoch: number;
  test: Pick<NerEvaluation, 'strict' | 'kbert' | 'perType' | 'confusion'>;
  dev: RunResult['dev'];
  trainSentencesPerSecond: number;
  trainMinutes: number;
  deleted?: RunResult['deleted'];
}

/**
 * Runs recorded in earlier results files, by corpus and id, from the files whose settings (everything
 * that changes a run's outcome) and backbone version are these; a file that differs is refused with
 * the setting that differs, so a reused number is always one this command would have produced.
 */
export async function loadReusableRuns(files: readonly string[], s: ExperimentSettings, backboneVersion: string): Promise<Map<string, RunResult>> {
  const out = new Map<string, RunResult>();
  for (const file of files) {
    let json: { date?: string; machine?: string; summary?: { backbone?: { version?: string } }; details?: { settings?: ExperimentSettings; runs?: RecordedRun[]; curves?: Record<string, RunResult['curve']>; reused?: Array<{ id: string; corpus: string; from: string; recorded: string; machine?: string }> } };
    try {
      json = JSON.parse(await readFile(file, 'utf8'));
    } catch (err) {
      throw new ConfigError([`--reuse ${file}: cannot read it as a results file (${(err as Error).message})`]);
    }
    const recorded = json.details?.settings;
    if (!recorded || !Array.isArray(json.details?.runs)) throw new ConfigError([`--reuse ${file}: not an experiment results file (no details.settings and details.runs)`]);
    if (json.summary?.backbone?.version !== backboneVersion) {
      throw new ConfigError([`--reuse ${file}: its runs used backbone ${json.summary?.backbone?.version ?? 'unknown'}, this command uses ${backboneVersion}`]);
    }
    // A run this file had itself taken from an earlier one keeps its first file, date and machine.
    const earlier = new Map((json.details.reused ?? []).map((e) => [`${e.corpus}/${e.id}`, e]));
    for (const run of json.details.runs) {
      const first = earlier.get(`${run.corpus}/${run.id}`);
      const want = settingsKey(s, run.corpus);
      const had = settingsKey({ ...defaultExperimentSettings('.'), ...recorded }, run.corpus);
      const differs = Object.keys(want).filter((key) => want[key] !== had[key]);
      if (differs.length) throw new ConfigError([`--reuse ${file}: run ${run.id} was trained with other settings (${differs.map((key) => `${key} ${String(had[key])} instead of ${String(want[key])}`).join(', ')})`]);
      const spec: RunSpec = { id: run.id, corpus: run.corpus, method: run.method, seed: run.seed, k: run.k, t0: run.t0 };
      out.set(`${run.corpus}/${run.id}`, {
        spec,
        settings: want,
        status: 'reused',
        steps: run.steps,
        bestEpoch: run.bestEpoch,
        history: [],
        trainSentencesPerSecond: run.trainSentencesPerSecond,
        trainSeconds: run.trainMinutes * 60,
        parameters: NaN,
        dev: run.dev,
        test: { sentences: NaN, tokens: NaN, ...run.test },
        // fig. 7's file keeps each run's curve by k.
        curve: (run.method === 'rmbert' && json.details.curves?.[String(run.k)]) || [],
        ...(run.deleted ? { deleted: run.deleted } : {}),
        finishedAt: first?.recorded ?? json.date ?? '',
        reusedFrom: first?.from ?? path.relative(process.cwd(), path.resolve(file)),
        reusedMachine: first?.machine ?? json.machine ?? 'unknown machine',
      });
    }
  }
  return out;
}

/** Runs (or resumes) every run of the experiment and writes its results. */
export async function runExperiment(name: ExperimentName, s: ExperimentSettings, tokenizer: BertTokenizer, log: (line: string) => void): Promise<ExperimentOutput | null> {
  const runs = experimentRuns(name, s);
  if (s.dryRun) {
    for (const r of runs) {
      const done = existsSync(path.join(settingsDir(s, r.corpus), r.id, 'result.json'));
      log(`${r.corpus}/${r.id}${done ? ' (done)' : ''}`);
    }
    return null;
  }
  if (!existsSync(path.join(s.backboneDir, 'manifest.json'))) {
    throw new ConfigError([`no backbone artifact at ${s.backboneDir}: pretrain one first (rmbert pretrain) or give --backbone DIR`]);
  }
  const backbone = await backboneInfo(s.backboneDir, tokenizer);
  const reusable = await loadReusableRuns(s.reuse ?? [], s, backbone.version);
  const results: RunResult[] = [];
  for (const [i, spec] of runs.entries()) {
    log(`[${i + 1}/${runs.length}]`);
    const recorded = reusable.get(`${spec.corpus}/${spec.id}`);
    if (recorded && !existsSync(path.join(settingsDir(s, spec.corpus), spec.id, 'result.json'))) {
      log(`${spec.corpus}/${spec.id}: taken from ${recorded.reusedFrom} (${recorded.finishedAt})`);
      // The recorded run lacks only what the file does not keep; the spec is this command's (fraction included).
      results.push({ ...recorded, spec });
      continue;
    }
    results.push(await executeRun(spec, s, tokenizer, log));
  }
  if (s.methods) {
    // A part of the grid: the results files are written by the run over all methods (which reuses these).
    log(`experiment ${name}: ${results.length} runs of ${s.methods.join(', ')} done; run it without --methods to write the results`);
    return null;
  }
  const output = summarize(name, results, s, backbone);
  const reused = results.filter((r) => r.reusedFrom);
  if (reused.length) {
    output.json.details = { ...(output.json.details as Record<string, unknown>), reused: reused.map((r) => ({ id: r.spec.id, corpus: r.spec.corpus, from: r.reusedFrom, recorded: r.finishedAt, machine: r.reusedMachine })) };
    const sources = groupBy(reused, (r) => `${r.reusedFrom} (written ${r.finishedAt.slice(0, 10)}, ${r.reusedMachine})`);
    const taken = [...sources].map(([source, runs]) => `${runs.map((r) => r.spec.id).join(', ')} from ${source}`).join('; ');
    output.markdown += `\n\n${reused.length} of the ${results.length} runs were taken from earlier results files (\`--reuse\`), trained with these settings and backbone: ${taken}. The command above retrains them where runs/ lacks them.`;
  }
  await mkdir(s.resultsDir, { recursive: true });
  await writeFile(path.join(s.resultsDir, `${name}.json`), JSON.stringify(output.json, null, 1) + '\n');
  await writeFile(path.join(s.resultsDir, `${name}.md`), output.markdown + '\n');
  for (const [file, svg] of Object.entries(output.svgs)) await writeFile(path.join(s.resultsDir, file), svg);
  return output;
}

export function defaultExperimentSettings(repoRoot: string): ExperimentSettings {
  return {
    backboneDir: path.join(repoRoot, 'models/backbone'),
    dataDir: defaultDataDir(),
    runsDir: path.join(repoRoot, 'runs/experiments'),
    resultsDir: path.join(repoRoot, 'benchmarks/results'),
    medicalKg: path.join(repoRoot, 'data/kg/Medical.spo'),
    msraKg: path.join(defaultDataDir(), 'kbert-kgs/HowNet.spo'),
    seeds: [1, 2, 3],
    epochs: 5,
    learningRate: 1e-4,
    gamma: 5000,
    batchSizeMedical: 10,
    batchSizeMsra: 16,
    batchTokens: 512,
    msraTrainLimit: 5000,
    msraDevLimit: 1000,
    anneal: { medical: { ...PAPER_ANNEAL.medical }, msra: { ...PAPER_ANNEAL.msra } },
    keepModels: false,
    dryRun: false,
  };
}
