/**
 * `rmbert finetune`: NER fine-tuning (RM-BERT, or the K-BERT / BERT baselines and the paper's
 * ablations) from a backbone artifact; writes a model artifact, a training curve and checkpoints.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../errors/index.ts';
import { selectBackend } from '../../model/backend.ts';
import type { BackendChoice } from '../../model/backend.ts';
import { readTokenizerOptions } from '../../model/artifact.ts';
import { BertTokenizer, DEFAULT_VOCAB_PATH } from '../../model/tokenizer.ts';
import type { InjectMode } from '../../knowledge/index.ts';
import { defaultDataDir, deleteEntities, loadCorpus, subsetSentences } from '../../train/datasets.ts';
import type { NamedCorpus } from '../../train/datasets.ts';
import { ABLATIONS, applyAblation, fineTune } from '../../train/finetune.ts';
import type { Ablation, FineTuneOptions, ModelSource } from '../../train/finetune.ts';
import { formatEvaluation } from '../../train/metrics.ts';
import { MEDICAL_TYPE_NAMES_ZH } from '../../train/datasets.ts';
import type { AnnealKind } from '../../train/recadam.ts';
import { DEFAULT_GAMMA } from '../../train/recadam.ts';

export const summary = 'fine-tune the NER model (RM-BERT: knowledge injection + RecAdam) from a backbone';

const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');

/** Paper settings per corpus (section 2.2): k and t0 of the sigmoid annealing. */
export const CORPUS_DEFAULTS: Record<NamedCorpus, { k: number; t0: number; kg: string }> = {
  medical: { k: 0.01, t0: 1000, kg: path.join(REPO_ROOT, 'data/kg/Medical.spo') },
  msra: { k: 0.005, t0: 250, kg: path.join(defaultDataDir(), 'kbert-kgs/HowNet.spo') },
};

const HELP = `usage: rmbert finetune --data medical|msra [options]

Fine-tunes a BIO token classifier on the corpus's train split, picks the epoch with the best strict
micro F1 on the dev split, and writes it as a model artifact. Knowledge from the graph is injected
into every sentence (sentence tree: soft positions + visibility matrix); the pretrained weights are
trained with RecAdam (recall learning), the new classification head with plain Adam.

data:
  --data NAME              medical (K-BERT's CCKS 2017 split) or msra (dh_msra train minus K-BERT dev/test)
  --data-dir DIR           shared data folder (default ../shared/data)
  --train-limit N          use N training sentences (seeded subset; default all)
  --dev-limit N            use N dev sentences (seeded subset; default all)
  --delete-type TYPE       remove a fraction of this type's training entities (tags -> O; paper fig. 8)
  --delete-fraction X      that fraction (default 0)
model:
  --backbone DIR           pretrained backbone artifact (default models/backbone)
  --random-init            no backbone: a randomly initialised model (to test the loop), shaped by
  --layers N --hidden N --heads N --intermediate N   (default 2 / 64 / 2 / 4 x hidden)
  --backend NAME           auto | node-gpu | node | wasm | cpu (default auto)
knowledge:
  --kg FILE                .spo graph (default: data/kg/Medical.spo for medical,
                           ../shared/data/kbert-kgs/HowNet.spo for msra)
  --no-kg                  no knowledge injection (the BERT baseline; same as --ablation no-kg)
  --inject MODE            relation+object (default) or object
  --max-entities N         branches per matched name (default 2)
  --max-length N           tokens per model input, branches included (default 256)
method:
  --optimizer NAME         recadam (default) or adam (the K-BERT baseline; same as --ablation no-recall)
  --anneal NAME            sigmoid (default), linear or constant
  -k, --k X                sigmoid steepness (default 0.01 medical, 0.005 msra)
  --t0 N                   annealing midpoint in steps (default 1000 medical, 250 msra)
  --gamma X                quadratic-penalty coefficient (default ${DEFAULT_GAMMA})
  --ablation NAME          ${ABLATIONS.join(' | ')} (paper fig. 6)
training:
  --epochs N               (default 5)
  --lr X                   peak learning rate (default 1e-4; lr x gamma must be <= 1)
  --warmup X               fraction of steps with linear warm-up (default 0.1), then linear decay
  --weight-decay X         decoupled weight decay, not on biases and LayerNorm (default 0.01)
  --clip X                 global gradient-norm clip, 0 = off (default 1)
  --dropout X              (default 0.1)
  --batch-tokens N         padded tokens per batch (default 512)
  --batch-size N           most sentences per batch (default 16)
  --seed N                 seed for the head, data order and dropout (default 1)
  --max-minutes X          stop after X minutes of training in this invocation: checkpoint, and an
                           artifact of the best weights so far
output:
  --out DIR                model artifact (default models/<data>; models/<data>-<ablation>, -nokg or
                           -adam for the ablations and baselines)
  --name NAME              artifact name (default rmbert-<data>[-<ablation>])
  --run-dir DIR            checkpoints, curve.jsonl, curve.svg (default runs/<name>)
  --resume                 continue the run in --run-dir from its checkpoint (same settings)
  --overwrite              replace an existing artifact at --out
  --dtype NAME             artifact weights f32 (default) or f16 (half the size)
  --json FILE              write the result (dev metrics per epoch, speed) as JSON
  --no-progress            no progress bar
  -h, --help               this text

Ctrl-C writes a checkpoint after the current step and exits; run again with --resume to continue.
`;

function number(values: Record<string, unknown>, key: string, fallback: number, problems: string[], opts: { integer?: boolean; min?: number } = {}): number {
  const raw = values[key];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) || n < (opts.min ?? 0)) {
    problems.push(`--${key} must be ${opts.integer ? 'an integer' : 'a number'} >= ${opts.min ?? 0} (got "${String(raw)}")`);
    return fallback;
  }
  return n;
}

function oneOf<T extends string>(values: Record<string, unknown>, key: string, allowed: readonly T[], fallback: T, problems: string[]): T {
  const raw = values[key];
  if (raw === undefined) return fallback;
  if (!allowed.includes(raw as T)) {
    problems.push(`--${key} must be one of ${allowed.join(', ')} (got "${String(raw)}")`);
    return fallback;
  }
  return raw as T;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      data: { type: 'string' },
      'data-dir': { type: 'string' },
      'train-limit': { type: 'string' },
      'dev-limit': { type: 'string' },
      'delete-type': { type: 'string' },
      'delete-fraction': { type: 'string' },
      backbone: { type: 'string' },
      'random-init': { type: 'boolean' },
      layers: { type: 'string' },
      hidden: { type: 'string' },
      heads: { type: 'string' },
      intermediate: { type: 'string' },
      backend: { type: 'string' },
      kg: { type: 'string' },
      'no-kg': { type: 'boolean' },
      inject: { type: 'string' },
      'max-entities': { type: 'string' },
      'max-length': { type: 'string' },
      optimizer: { type: 'string' },
      anneal: { type: 'string' },
      k: { type: 'string', short: 'k' },
      t0: { type: 'string' },
      gamma: { type: 'string' },
      ablation: { type: 'string' },
      epochs: { type: 'string' },
      lr: { type: 'string' },
      warmup: { type: 'string' },
      'weight-decay': { type: 'string' },
      clip: { type: 'string' },
      dropout: { type: 'string' },
      'batch-tokens': { type: 'string' },
      'batch-size': { type: 'string' },
      seed: { type: 'string' },
      'max-minutes': { type: 'string' },
      out: { type: 'string' },
      name: { type: 'string' },
      'run-dir': { type: 'string' },
      resume: { type: 'boolean' },
      overwrite: { type: 'boolean' },
      dtype: { type: 'string' },
      json: { type: 'string' },
      'no-progress': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const problems: string[] = [];
  if (values.data !== 'medical' && values.data !== 'msra') problems.push('--data must be medical or msra');
  const corpusName = (values.data === 'msra' ? 'msra' : 'medical') as NamedCorpus;
  const defaults = CORPUS_DEFAULTS[corpusName];
  const ablation = oneOf<Ablation>(values, 'ablation', ABLATIONS, 'none', problems);
  const optimizerChoice = oneOf(values, 'optimizer', ['recadam', 'adam'] as const, 'recadam', problems);
  const anneal = oneOf<AnnealKind>(values, 'anneal', ['sigmoid', 'linear', 'constant'], 'sigmoid', problems);
  const inject = oneOf<InjectMode>(values, 'inject', ['relation+object', 'object'], 'relation+object', problems);
  const backend = oneOf<BackendChoice>(values, 'backend', ['auto', 'node-gpu', 'node', 'tensorflow', 'wasm', 'cpu'], 'auto', problems);

  const kgFile = path.resolve(values.kg ?? defaults.kg);
  const baseKnowledge = {
    enabled: !values['no-kg'],
    kgFile,
    inject,
    maxEntities: number(values, 'max-entities', 2, problems, { integer: true }),
    maxLength: number(values, 'max-length', 256, problems, { integer: true, min: 8 }),
    softPositions: true,
    visibilityMatrix: true,
  };
  const { knowledge, optimizer } = applyAblation(ablation, baseKnowledge, optimizerChoice);
  if (knowledge.enabled && !existsSync(kgFile)) problems.push(`knowledge graph file ${kgFile} not found (give --kg FILE or --no-kg)`);

  let model: ModelSource;
  if (values['random-init']) {
    const hidden = number(values, 'hidden', 64, problems, { integer: true, min: 1 });
    model = {
      random: {
        vocabSize: 0,
        hiddenSize: hidden,
        numLayers: number(values, 'layers', 2, problems, { integer: true, min: 1 }),
        numHeads: number(values, 'heads', 2, problems, { integer: true, min: 1 }),
        intermediateSize: number(values, 'intermediate', 4 * hidden, problems, { integer: true, min: 1 }),
        maxPositions: 512,
        typeVocabSize: 2,
        layerNormEps: 1e-12,
      },
    };
  } else {
    const dir = path.resolve(values.backbone ?? path.join(REPO_ROOT, 'models/backbone'));
    if (!existsSync(path.join(dir, 'manifest.json'))) {
      problems.push(`no backbone artifact at ${dir} (pretrain one with \`rmbert pretrain\`, give --backbone DIR, or use --random-init to test the loop)`);
    }
    model = { backboneDir: dir };
  }
  const suffix = ablation === 'none' ? (values['no-kg'] ? '-nokg' : optimizerChoice === 'adam' ? '-adam' : '') : `-${ablation}`;
  const name = values.name ?? `rmbert-${corpusName}${suffix}`;
  const outDir = path.resolve(values.out ?? path.join(REPO_ROOT, 'models', `${corpusName}${suffix}`));
  const runDir = path.resolve(values['run-dir'] ?? path.join(REPO_ROOT, 'runs', name));
  const dtype = oneOf(values, 'dtype', ['f32', 'f16'] as const, 'f32', problems);
  const deleteFraction = number(values, 'delete-fraction', 0, problems);
  if (deleteFraction > 1) problems.push('--delete-fraction must be in [0, 1]');
  if (problems.length) throw new ConfigError(problems);

  await selectBackend(backend);
  // The backbone's own tokenization (config.tokenizer), which the fine-tuned model inherits; folded for a random init.
  const tokenizer = await BertTokenizer.load(DEFAULT_VOCAB_PATH, 'backboneDir' in model ? await readTokenizerOptions(model.backboneDir) : {});
  if ('random' in model) model.random.vocabSize = tokenizer.vocabSize;
  const corpus = loadCorpus(corpusName, values['data-dir'] ? path.resolve(values['data-dir']) : undefined);
  for (const w of [...corpus.train.warnings, ...corpus.dev.warnings]) console.error(`warning: ${w}`);
  const seed = number(values, 'seed', 1, problems, { integer: true });
  let train = corpus.train.sentences;
  if (values['train-limit']) train = subsetSentences(train, number(values, 'train-limit', train.length, problems, { integer: true, min: 1 }), seed);
  let dev = corpus.dev.sentences;
  if (values['dev-limit']) dev = subsetSentences(dev, number(values, 'dev-limit', dev.length, problems, { integer: true, min: 1 }), seed);
  const extraTraining: Record<string, unknown> = { ablation };
  if (values['delete-type'] && deleteFraction > 0) {
    if (!corpus.types.includes(values['delete-type'])) problems.push(`--delete-type must be one of ${corpus.types.join(', ')}`);
    const result = deleteEntities(train, values['delete-type'], deleteFraction, seed);
    train = result.sentences;
    extraTraining.deletedEntities = { type: values['delete-type'], fraction: deleteFraction, removed: result.removed, kept: result.kept };
    console.error(`removed ${result.removed} of ${result.removed + result.kept} ${values['delete-type']} training entities`);
  }

  const options: FineTuneOptions = {
    name,
    datasetName: corpusName,
    train,
    dev,
    types: corpus.types,
    tokenizer,
    model,
    knowledge,
    optimizer,
    anneal,
    k: number(values, 'k', defaults.k, problems),
    t0: number(values, 't0', defaults.t0, problems),
    gamma: number(values, 'gamma', DEFAULT_GAMMA, problems),
    learningRate: number(values, 'lr', 1e-4, problems),
    warmup: number(values, 'warmup', 0.1, problems),
    weightDecay: number(values, 'weight-decay', 0.01, problems),
    clipNorm: number(values, 'clip', 1, problems),
    dropout: number(values, 'dropout', 0.1, problems),
    epochs: number(values, 'epochs', 5, problems, { integer: true, min: 1 }),
    batchTokens: number(values, 'batch-tokens', 512, problems, { integer: true, min: 1 }),
    maxBatchSentences: number(values, 'batch-size', 16, problems, { integer: true, min: 1 }),
    seed,
    maxMinutes: values['max-minutes'] !== undefined ? number(values, 'max-minutes', 0, problems) : undefined,
    outDir,
    overwrite: values.overwrite ?? false,
    dtype: dtype === 'f16' ? 'F16' : 'F32',
    runDir,
    resume: values.resume ?? false,
    progress: !values['no-progress'],
    extraTraining,
  };
  if (problems.length) throw new ConfigError(problems);

  const controller = new AbortController();
  const onSigint = () => {
    console.error('\ninterrupt: finishing the current step and writing a checkpoint (Ctrl-C again to quit at once)');
    controller.abort();
    process.once('SIGINT', () => process.exit(130));
  };
  process.once('SIGINT', onSigint);
  let result;
  try {
    result = await fineTune({ ...options, signal: controller.signal });
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
  if (result.bestDev) {
    console.log(`best epoch ${result.bestEpoch} on the dev set (${corpusName}):`);
    console.log(formatEvaluation(result.bestDev, corpusName === 'medical' ? MEDICAL_TYPE_NAMES_ZH : {}));
  }
  console.log(
    `${result.status}: ${result.steps} steps, ${result.trainSentencesPerSecond.toFixed(1)} sentences/s in training (${result.parameters} parameters); ` +
      `run files in ${result.runDir}${result.artifact ? `; model ${result.artifact.dir}` : ''}`,
  );
  if (values.json) {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(
      values.json,
      JSON.stringify(
        {
          status: result.status,
          steps: result.steps,
          bestEpoch: result.bestEpoch,
          history: result.history,
          dev: result.bestDev,
          trainSentencesPerSecond: result.trainSentencesPerSecond,
          trainSeconds: result.trainSeconds,
          parameters: result.parameters,
          prepared: result.prepared,
          artifact: result.artifact ? { dir: result.artifact.dir, version: `${result.artifact.version.name}+${result.artifact.version.hash}` } : null,
        },
        null,
        1,
      ) + '\n',
    );
  }
  return result.status === 'interrupted' ? 130 : 0;
}
