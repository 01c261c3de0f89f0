/**
 * The paper's tables from fine-tuning runs of the PyTorch path (python -m rmbert_train.finetune), scored
 * the way `rmbert eval` scores any served model: every run directory is imported into an artifact
 * (`rmbert import`, logit parity checked), then evaluated on dev and test with the TypeScript serving path.
 * Beside the variants' means over seeds, the figures a user weighs the default recipe with: the
 * training-set dictionary and the character CRF peer (benchmarks/results/crf.json and its test
 * predictions) with paired bootstrap intervals, recall on unseen surfaces, wrong one-character predictions.
 *
 *   node --import tsx benchmarks/tables.ts --corpus medical \
 *     --run kbert=.cache/ft/a,.cache/ft/b,.cache/ft/c [--run rmbert=...] [--run bert=...] --default kbert \
 *     [--kg kbert=data/kg/medical-knowledge.spo]
 *
 * --kg VARIANT=FILE: the graph the variant's runs are served with (`rmbert eval --kg`), for runs trained with
 * more than the corpus's default graph (rmbert features --extra-kg / --terms; `rmbert kg merge` writes the
 * union those runs saw on dev and test as one file).
 * Variants: bert (no knowledge), kbert (knowledge, AdamW), rmbert (knowledge, RecAdam); the label of a run
 * is the variant's, whatever its head. Imported artifacts are kept in .cache/models/<run directory name>.
 * Writes benchmarks/results/<corpus>.{json,md} (or <name>.{json,md} with --name NAME); all figures are
 * percentages (summary.units = "percent").
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pairedBootstrap, type SentenceCounts } from '../src/train/metrics.ts';
import { loadAverage, machineDescription } from './engines-common.ts';
import type { EvalJson } from './eval-json.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const RESULTS = path.join(ROOT, 'benchmarks/results');
const log = (line: string) => process.stderr.write(`tables: ${line}\n`);

const { values } = parseArgs({
  options: {
    corpus: { type: 'string', default: 'medical' },
    run: { type: 'string', multiple: true, default: [] },
    kg: { type: 'string', multiple: true, default: [] },
    default: { type: 'string' },
    name: { type: 'string' },
  },
});
const corpus = values.corpus as string;
if (corpus !== 'medical' && corpus !== 'msra') {
  log(`--corpus must be medical or msra (got "${corpus}")`);
  process.exit(2);
}
const LABELS: Record<string, string> = { bert: 'BERT', kbert: 'K-BERT', rmbert: 'RM-BERT' };
const variants = new Map<string, string[]>();
for (const spec of values.run as string[]) {
  const [variant, dirs] = spec.split('=', 2);
  if (!LABELS[variant] || !dirs) {
    log(`--run must be bert|kbert|rmbert=DIR[,DIR...] (got "${spec}")`);
    process.exit(2);
  }
  variants.set(variant, dirs.split(',').filter(Boolean));
}
// --name: results under another name than the corpus's (e.g. a one-seed recipe comparison beside the tables).
const resultName = values.name ?? corpus;
if (!/^[a-z0-9-]+$/.test(resultName)) {
  log(`--name must be lower-case letters, digits and dashes (got "${resultName}")`);
  process.exit(2);
}
const graphs = new Map<string, string>();
for (const spec of values.kg as string[]) {
  const [variant, file] = spec.split('=', 2);
  if (!variants.has(variant) || !file || !existsSync(file)) {
    log(`--kg must be VARIANT=FILE for a variant given with --run and an existing file (got "${spec}")`);
    process.exit(2);
  }
  graphs.set(variant, path.resolve(file));
}
const defaultVariant = values.default ?? [...variants.keys()][0];
if (!defaultVariant || !variants.has(defaultVariant)) {
  log('give at least one --run, and --default one of the variants given');
  process.exit(2);
}

interface Entity {
  start: number;
  end: number;
  type: string;
}
interface PredictionLine {
  sentence: number;
  entities: Entity[];
  gold: Entity[];
}
interface Training {
  settings: { seed: number; head: string; optimizer: string; epochs: number; lr: number };
  bestEpoch: number;
  knowledge: { enabled: boolean; kgFile?: string | null; extraKgFiles?: string[]; terms?: { surfaces: number } | null };
  backbone: string;
  seconds?: number;
}

const pct = (x: number) => Math.round(x * 10000) / 100;
const round2 = (x: number) => Math.round(x * 100) / 100;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));

const node = (args: string[]) => execFileSync(process.execPath, ['bin/rmbert.js', ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });

/** Per sentence strict counts from a predictions file (span and type must match, as the scorer counts). */
function countsOf(file: string): SentenceCounts[] {
  const key = (e: Entity) => `${e.start}:${e.end}:${e.type}`;
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => {
      const p = JSON.parse(l) as PredictionLine;
      const gold = new Set(p.gold.map(key));
      return { tp: p.entities.filter((e) => gold.has(key(e))).length, predicted: p.entities.length, gold: p.gold.length };
    });
}

interface RunResult {
  run: string;
  dir: string;
  model: string;
  seed: number;
  bestEpoch: number;
  training: Training;
  dev: EvalJson;
  test: EvalJson;
  testCounts: SentenceCounts[];
}

function scoreRun(variant: string, dir: string): RunResult {
  const run = path.basename(dir);
  const training = JSON.parse(readFileSync(path.join(dir, 'training.json'), 'utf8')) as Training;
  const artifact = path.join(ROOT, '.cache/models', run);
  if (!existsSync(path.join(artifact, 'manifest.json'))) {
    log(`${run}: importing into ${path.relative(ROOT, artifact)}`);
    const name = `rmbert-${corpus}-${variant}-${training.settings.head}-s${training.settings.seed}`;
    node(['import', path.join(dir, 'weights.safetensors'), '--out', artifact, '--name', name, '--parity', path.join(dir, 'parity.json'), '--training', path.join(dir, 'training.json')]);
  }
  const out = path.join(ROOT, '.cache/tables', run);
  mkdirSync(out, { recursive: true });
  const evaluate = (split: 'dev' | 'test'): EvalJson => {
    log(`${run}: eval ${split}`);
    const json = path.join(out, `${split}.json`);
    const kg = graphs.get(variant);
    node(['eval', '--model', artifact, '--data', corpus, '--split', split, '--json', json, '--predictions', path.join(out, `${split}.predictions.jsonl`), ...(kg ? ['--kg', kg] : [])]);
    return JSON.parse(readFileSync(json, 'utf8')) as EvalJson;
  };
  const dev = evaluate('dev');
  const test = evaluate('test');
  return { run, dir, model: test.model, seed: training.settings.seed, bestEpoch: training.bestEpoch, training, dev, test, testCounts: countsOf(path.join(out, 'test.predictions.jsonl')) };
}

const loadStart = loadAverage();
const crfFile = path.join(RESULTS, 'crf.json');
const crf = existsSync(crfFile) ? (JSON.parse(readFileSync(crfFile, 'utf8')) as { summary: Record<string, { strictF1: number; perType: Record<string, number> } | undefined> }).summary[corpus] : undefined;
const crfPredictions = path.join(RESULTS, `crf-${corpus}-test.predictions.jsonl`);
const crfCounts = existsSync(crfPredictions) ? countsOf(crfPredictions) : null;

const results = new Map<string, RunResult[]>();
for (const [variant, dirs] of variants) results.set(variant, dirs.map((d) => scoreRun(variant, path.resolve(ROOT, d))));

const types = Object.keys(results.get(defaultVariant)![0].test.evaluation.perType);
/** The graphs a run was trained with, e.g. "Medical.spo + CMeKG-typed.spo + training term list". */
function knowledgeLabel(k: Training['knowledge']): string | null {
  if (!k.enabled) return null;
  return [k.kgFile ?? 'yes', ...(k.extraKgFiles ?? []), ...(k.terms ? ['training term list'] : [])].join(' + ');
}

function variantSummary(variant: string) {
  const runs = results.get(variant)!;
  const strict = runs.map((r) => pct(r.test.evaluation.strict.f1));
  const kbert = runs.map((r) => pct(r.test.evaluation.kbert.f1));
  return {
    label: LABELS[variant],
    runs: runs.length,
    seeds: runs.map((r) => r.seed),
    strictF1: round2(mean(strict)),
    strictF1Std: round2(std(strict)),
    strictF1PerSeed: strict,
    strictPrecision: round2(mean(runs.map((r) => pct(r.test.evaluation.strict.precision)))),
    strictRecall: round2(mean(runs.map((r) => pct(r.test.evaluation.strict.recall)))),
    kbertMetricF1: round2(mean(kbert)),
    kbertMetricF1Std: round2(std(kbert)),
    devStrictF1PerSeed: runs.map((r) => pct(r.dev.evaluation.strict.f1)),
    bestEpochPerSeed: runs.map((r) => r.bestEpoch),
    perTypeF1: Object.fromEntries(types.map((t) => [t, round2(mean(runs.map((r) => pct(r.test.evaluation.perType[t]?.f1 ?? 0))))])),
    head: runs[0].training.settings.head,
    optimizer: runs[0].training.settings.optimizer,
    knowledge: knowledgeLabel(runs[0].training.knowledge),
    servedWith: graphs.has(variant) ? path.relative(ROOT, graphs.get(variant)!) : null,
    backbone: runs[0].training.backbone,
  };
}

const chosen = results.get(defaultVariant)!;
const shipped = chosen.reduce((best, r) => (r.dev.evaluation.strict.f1 > best.dev.evaluation.strict.f1 ? r : best));
const vsCrf = crfCounts ? chosen.map((r) => pairedBootstrap(r.testCounts, crfCounts)) : null;
const perSeed = chosen.map((r, i) => ({
  run: r.run,
  seed: r.seed,
  model: r.model,
  devStrictF1: pct(r.dev.evaluation.strict.f1),
  testStrictF1: pct(r.test.evaluation.strict.f1),
  bootstrapVsDictionary: r.test.bootstrap ? [pct(r.test.bootstrap.low), pct(r.test.bootstrap.high)] : null,
  bootstrapVsCrf: vsCrf ? [pct(vsCrf[i].low), pct(vsCrf[i].high)] : null,
  unseenRecall: r.test.surfaces ? pct(r.test.surfaces.model.unseen.recall) : null,
  singleCharWrongShare: r.test.singleChar ? pct(r.test.singleChar.shareOfPredictions) : null,
}));
const minOf = (xs: (number[] | null)[]) => (xs.every((x) => x) ? Math.min(...xs.map((x) => x![0])) : null);
const dictionary = chosen[0].test.baseline;
const summary = {
  units: 'percent',
  default: defaultVariant,
  ...Object.fromEntries([...variants.keys()].map((v) => [v, variantSummary(v)])),
  seeds: chosen.map((r) => r.seed),
  crfStrictF1: crf ? pct(crf.strictF1) : null,
  dictionaryStrictF1: dictionary ? pct(dictionary.evaluation.strict.f1) : null,
  // The lowest lower bound over the default recipe's seeds: every seed must clear it.
  bootstrapLow: minOf(perSeed.map((s) => s.bootstrapVsDictionary)),
  bootstrapLowVsCrf: minOf(perSeed.map((s) => s.bootstrapVsCrf)),
  unseenRecall: round2(mean(perSeed.map((s) => s.unseenRecall ?? NaN))),
  singleCharWrongShare: round2(mean(perSeed.map((s) => s.singleCharWrongShare ?? NaN))),
  perTypeOverDictionary: dictionary
    ? Object.fromEntries(types.map((t) => [t, round2(mean(chosen.map((r) => pct((r.test.evaluation.perType[t]?.f1 ?? 0) - (r.test.baseline?.evaluation.perType[t]?.f1 ?? 0)))))]))
    : null,
  perTypeBelowCrf: crf ? Object.fromEntries(types.map((t) => [t, round2(pct(crf.perType[t]) - variantSummary(defaultVariant).perTypeF1[t])])) : null,
  bestDevRun: shipped.run,
};
const command =
  `node --import tsx benchmarks/tables.ts --corpus ${corpus} ${(values.run as string[]).map((r) => `--run ${r}`).join(' ')} --default ${defaultVariant}` +
  `${(values.kg as string[]).map((g) => ` --kg ${g}`).join('')}${values.name ? ` --name ${values.name}` : ''}`;
const out = {
  command,
  machine: machineDescription(),
  date: new Date().toISOString(),
  loadAverage: { start: loadStart, end: loadAverage() },
  summary,
  details: {
    perSeed,
    runs: Object.fromEntries(
      [...results].map(([v, runs]) => [
        v,
        runs.map((r) => ({ run: r.run, dir: path.relative(ROOT, r.dir), model: r.model, training: r.training, dev: r.dev.evaluation, test: r.test.evaluation, evalSeconds: r.test.seconds })),
      ]),
    ),
    scorer: 'rmbert eval (src/train/metrics.ts NerEvaluator) on the imported artifacts; bootstrap: 1000 paired resamples of the test sentences, seed 1',
    crf: crf ? 'benchmarks/results/crf.json (sklearn-crfsuite, character n-grams), test predictions in crf-' + corpus + '-test.predictions.jsonl' : null,
  },
};
writeFileSync(path.join(RESULTS, `${resultName}.json`), `${JSON.stringify(out, null, 1)}\n`);

const s = summary as unknown as Record<string, ReturnType<typeof variantSummary>>;
const md = [
  `# ${corpus === 'medical' ? 'Medical NER (K-BERT\'s CCKS 2017 split)' : 'MSRA NER (K-BERT\'s split)'}: test strict F1, PyTorch training path`,
  '',
  `Command: \`${command}\`. Machine: ${out.machine}; load average ${loadStart.join(' ')} at start. Each run is imported and scored by \`rmbert eval\` (the serving path).`,
  '',
  `| model | runs | strict F1 (mean ± sd) | per seed | K-BERT metric F1 | dev strict F1 per seed | ${types.join(' | ')} |`,
  `|---|---|---|---|---|---|${types.map(() => '---|').join('')}`,
  ...[...variants.keys()].map((v) => {
    const x = s[v];
    return `| ${x.label} (${x.head}, ${x.optimizer}${x.knowledge ? `, ${x.knowledge}` : ', no knowledge'}) | ${x.runs} | ${x.strictF1} ± ${x.strictF1Std} | ${x.strictF1PerSeed.join(' / ')} | ${x.kbertMetricF1} | ${x.devStrictF1PerSeed.join(' / ')} | ${types.map((t) => x.perTypeF1[t]).join(' | ')} |`;
  }),
  `| character CRF peer (crf.md) | 1 | ${summary.crfStrictF1 ?? 'n/a'} | | | | ${crf ? types.map((t) => pct(crf.perType[t])).join(' | ') : ''} |`,
  `| training-set dictionary | | ${summary.dictionaryStrictF1 ?? 'n/a'} | | | | ${dictionary ? types.map((t) => pct(dictionary.evaluation.perType[t]?.f1 ?? 0)).join(' | ') : ''} |`,
  '',
  `Default recipe: ${LABELS[defaultVariant]}. Per seed, paired bootstrap 95 % intervals of test strict F1 (model minus peer, 1000 resamples):`,
  '',
  '| run | dev | test | minus dictionary | minus CRF | unseen recall | wrong one-char share |',
  '|---|---|---|---|---|---|---|',
  ...perSeed.map((p) => `| ${p.run} | ${p.devStrictF1} | ${p.testStrictF1} | ${p.bootstrapVsDictionary ? `[${p.bootstrapVsDictionary.join(', ')}]` : 'n/a'} | ${p.bootstrapVsCrf ? `[${p.bootstrapVsCrf.join(', ')}]` : 'n/a'} | ${p.unseenRecall} | ${p.singleCharWrongShare} |`),
  '',
  `Best of the default recipe's runs on dev (the one to ship if it beats the shipped model on dev): ${summary.bestDevRun}.`,
  '',
];
writeFileSync(path.join(RESULTS, `${resultName}.md`), md.join('\n'));
console.log(JSON.stringify(summary, null, 1));
