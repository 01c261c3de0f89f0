/**
 * `rmbert experiment NAME`: runs one of the paper's experiments (tables 3-5, figs 6-8) end to end and
 * writes benchmarks/results/<NAME>.{json,md,svg}.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../errors/index.ts';
import { selectBackend } from '../../model/backend.ts';
import type { BackendChoice } from '../../model/backend.ts';
import { readTokenizerOptions } from '../../model/artifact.ts';
import { BertTokenizer, DEFAULT_VOCAB_PATH } from '../../model/tokenizer.ts';
import { defaultExperimentSettings, EXPERIMENT_NAMES, experimentRuns, METHODS, runExperiment } from '../../train/experiments/index.ts';
import type { ExperimentName, Method } from '../../train/experiments/index.ts';
import type { NamedCorpus } from '../../train/datasets.ts';

export const summary = "reproduce one of the paper's experiments (medical, msra, ablation, recall-distance, entity-deletion)";

const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');

const HELP = `usage: rmbert experiment NAME [options]

NAME:
  medical          paper table 3 + 5: BERT, K-BERT, RM-BERT on the medical split (x seeds)
  msra             paper table 4: the same on an MSRA training subset, K-BERT's MSRA test set
  ablation         paper fig. 6: RM-BERT, -MASK, -POS, -RECALL, -KG on medical and MSRA (x seeds)
  recall-distance  paper fig. 7: ||theta - theta*||_1 while fine-tuning, k in 0.001..0.1 at a fixed t0
  entity-deletion  paper fig. 8: 40-90 % of BodyPart training entities removed; BERT, K-BERT, RM-BERT

Each run fine-tunes from the backbone and scores the test set; results go to
runs/experiments/<corpus>/<settings>/<run>/result.json (a finished run is reused by every experiment
that needs it, an interrupted one resumes from its checkpoint), then the experiment writes
benchmarks/results/NAME.json, NAME.md and NAME*.svg. See src/train/experiments/PLAN.md for the cost.

options:
  --backbone DIR        backbone artifact (default models/backbone)
  --seeds LIST          comma-separated seeds (default 1,2,3; figs 7 and 8 use the first)
  --epochs N            epochs per run (default 5)
  --lr X                peak learning rate (default 1e-4)
  --gamma X             RecAdam penalty coefficient (default 5000)
  --k X, --t0 N         RecAdam schedule lambda(t) = sigmoid(k (t - t0)), medical (default the
                        paper's k 0.01, t0 1000, set for 14,000-step runs; scale t0 down and k up
                        for shorter runs)
  --msra-k X, --msra-t0 N   the same for MSRA (default 0.005, 250)
  --corpus LIST         ablation only: medical, msra or both (default both)
  --fractions LIST      entity-deletion only: fractions of BodyPart entities to remove (default
                        0.4,0.5,0.6,0.7,0.8,0.9, as the paper); 0 adds the point with nothing
                        removed, which is the medical experiment's run of the first seed
  --methods LIST        only these methods (bert, kbert, rmbert, no-mask, no-pos, no-kg), e.g. to
                        split one experiment over two processes; run it once more without the list
                        to write the full results
  --batch-size N        sentences per batch, medical (default 10, as the paper)
  --msra-batch-size N   sentences per batch, MSRA (default 16, as the paper)
  --batch-tokens N      padded tokens per batch (default 512)
  --medical-train N     medical training subset (default: all 6,919; for quick runs)
  --medical-dev N       medical dev subset (default: all 939)
  --msra-train N        MSRA training subset (default 5000)
  --msra-dev N          MSRA dev subset (default 1000)
  --max-minutes X       time limit per run (default none)
  --runs-dir DIR        where runs are stored (default runs/experiments)
  --results-dir DIR     where NAME.json/.md/.svg go (default benchmarks/results)
  --reuse FILE[,FILE]   take finished runs that runs/ lacks (a fresh checkout) from earlier results
                        files, e.g. benchmarks/results/entity-deletion.json; refused unless their
                        settings and backbone are this command's; the results name the runs taken
  --keep-models         keep every run's model artifact (default: only results and curves)
  --backend NAME        auto | node-gpu | node | wasm | cpu (default auto)
  --dry-run             list the runs (and which are done) without training
  -h, --help            this text
`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      backbone: { type: 'string' },
      seeds: { type: 'string' },
      epochs: { type: 'string' },
      lr: { type: 'string' },
      gamma: { type: 'string' },
      k: { type: 'string' },
      t0: { type: 'string' },
      'msra-k': { type: 'string' },
      'msra-t0': { type: 'string' },
      methods: { type: 'string' },
      corpus: { type: 'string' },
      fractions: { type: 'string' },
      'batch-size': { type: 'string' },
      'msra-batch-size': { type: 'string' },
      'batch-tokens': { type: 'string' },
      'msra-train': { type: 'string' },
      'medical-train': { type: 'string' },
      'medical-dev': { type: 'string' },
      'msra-dev': { type: 'string' },
      'max-minutes': { type: 'string' },
      'keep-models': { type: 'boolean' },
      'runs-dir': { type: 'string' },
      'results-dir': { type: 'string' },
      reuse: { type: 'string' },
      backend: { type: 'string' },
      'dry-run': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const problems: string[] = [];
  const name = positionals[0] as ExperimentName | undefined;
  if (!name || !EXPERIMENT_NAMES.includes(name)) problems.push(`give one experiment: ${EXPERIMENT_NAMES.join(', ')}`);
  if (positionals.length > 1) problems.push(`one experiment at a time (got ${positionals.join(' ')})`);
  const s = defaultExperimentSettings(REPO_ROOT);
  const num = (key: string, fallback: number, integer = false): number => {
    const raw = values[key as keyof typeof values];
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
      problems.push(`--${key} must be a positive ${integer ? 'integer' : 'number'} (got "${String(raw)}")`);
      return fallback;
    }
    return n;
  };
  if (values.backbone) s.backboneDir = path.resolve(values.backbone);
  if (values['runs-dir']) s.runsDir = path.resolve(values['runs-dir']);
  if (values['results-dir']) s.resultsDir = path.resolve(values['results-dir']);
  if (values.reuse) {
    const files = values.reuse.split(',').map((f) => path.resolve(f.trim()));
    const missing = files.filter((f) => !existsSync(f));
    if (missing.length) problems.push(`--reuse: no such file ${missing.join(', ')}`);
    else s.reuse = files;
  }
  if (values.seeds) {
    const seeds = values.seeds.split(',').map((x) => Number(x.trim()));
    if (seeds.length === 0 || seeds.some((x) => !Number.isInteger(x) || x < 0)) problems.push(`--seeds must be comma-separated integers (got "${values.seeds}")`);
    else s.seeds = seeds;
  }
  s.epochs = num('epochs', s.epochs, true);
  s.learningRate = num('lr', s.learningRate);
  s.gamma = num('gamma', s.gamma);
  s.anneal = {
    medical: { k: num('k', s.anneal.medical.k), t0: num('t0', s.anneal.medical.t0, true) },
    msra: { k: num('msra-k', s.anneal.msra.k), t0: num('msra-t0', s.anneal.msra.t0, true) },
  };
  if (values.corpus) {
    const corpora = values.corpus.split(',').map((c) => c.trim());
    const unknown = corpora.filter((c) => c !== 'medical' && c !== 'msra');
    if (unknown.length) problems.push(`--corpus: unknown ${unknown.join(', ')} (known: medical, msra)`);
    else if (name !== 'ablation') problems.push('--corpus applies to the ablation only (medical and msra are experiments of their own)');
    else s.corpora = corpora as NamedCorpus[];
  }
  if (values.fractions) {
    const fractions = values.fractions.split(',').map((f) => Number(f.trim()));
    if (name !== 'entity-deletion') problems.push('--fractions applies to entity-deletion only');
    else if (fractions.some((f) => !(f >= 0 && f < 1))) problems.push(`--fractions must be comma-separated fractions from 0 up to (not including) 1, e.g. 0,0.4,0.9 (got "${values.fractions}")`);
    else s.fractions = fractions;
  }
  if (values.methods) {
    const methods = values.methods.split(',').map((m) => m.trim());
    const unknown = methods.filter((m) => !(m in METHODS));
    if (unknown.length) problems.push(`--methods: unknown ${unknown.join(', ')} (known: ${Object.keys(METHODS).join(', ')})`);
    else s.methods = methods as Method[];
  }
  s.batchSizeMedical = num('batch-size', s.batchSizeMedical, true);
  s.batchSizeMsra = num('msra-batch-size', s.batchSizeMsra, true);
  s.batchTokens = num('batch-tokens', s.batchTokens, true);
  s.msraTrainLimit = num('msra-train', s.msraTrainLimit, true);
  if (values['medical-train'] !== undefined) s.medicalTrainLimit = num('medical-train', 0, true);
  if (values['medical-dev'] !== undefined) s.medicalDevLimit = num('medical-dev', 0, true);
  s.msraDevLimit = num('msra-dev', s.msraDevLimit, true);
  if (values['max-minutes'] !== undefined) s.maxMinutesPerRun = num('max-minutes', 0);
  s.keepModels = values['keep-models'] ?? false;
  s.dryRun = values['dry-run'] ?? false;
  if (problems.length) throw new ConfigError(problems);

  const log = (line: string) => console.error(line);
  if (!s.dryRun) await selectBackend((values.backend ?? 'auto') as BackendChoice);
  // The backbone's own tokenization (config.tokenizer: full-width folding, on unless it says otherwise).
  const tokenizer = await BertTokenizer.load(DEFAULT_VOCAB_PATH, existsSync(path.join(s.backboneDir, 'config.json')) ? await readTokenizerOptions(s.backboneDir) : {});
  log(`experiment ${name}: ${experimentRuns(name!, s).length} runs`);
  const output = await runExperiment(name!, s, tokenizer, log);
  if (output) {
    console.log(output.markdown);
    console.log(`\nwritten: ${path.join(s.resultsDir, `${name}.json`)}, ${name}.md, ${Object.keys(output.svgs).join(', ')}`);
  }
  return 0;
}
