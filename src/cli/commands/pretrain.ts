/**
 * `rmbert pretrain`: masked-LM pretraining of the backbone on the general-domain corpus; writes
 * checkpoints while it runs and the final backbone as a model artifact (fp16, no classification head).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SingleBar } from 'cli-progress';
import { ConfigError } from '../../errors/index.ts';
import { loadArtifact, writeArtifact } from '../../model/artifact.ts';
import { selectBackend, type BackendChoice } from '../../model/backend.ts';
import { BertTokenizer } from '../../model/tokenizer.ts';
import type { ArtifactConfig, BertConfig, WeightMap } from '../../model/types.ts';
import { buildPretrainCorpus } from '../../train/corpus.ts';
import { DEFAULT_PRETRAIN_OPTIONS, lossCurveSvg, pretrain, suppressUnseenTokens } from '../../train/pretrain.ts';
import { readSafetensors, toWeightMap } from '../../model/safetensors.ts';

export const summary = 'pretrain the BERT backbone by masked-LM on the general-domain Chinese corpus';

const HELP = `usage: rmbert pretrain [options]

Masked-LM pretraining (15% of tokens; 80% [MASK], 10% random, 10% kept) on the general-domain corpus
(zh-corpus-uer, zh-corpus-kbert-cls, zh-corpus-sophonplus, MSRA training sentences; never medical text).
Writes checkpoints (fp32 weights, Adam moments, step) every --checkpoint-minutes into --out, a JSON-lines
log (step, loss, tokens seen, tokens/s, elapsed) into --out/train-log.jsonl, and at the end the backbone
as a model artifact (fp16, MLM head kept, no classifier) into --artifact.

data and output:
  --data DIR               shared data folder with the corpora (default ../shared/data)
  --out DIR                checkpoints and log (default .cache/pretrain)
  --artifact DIR           final backbone artifact (default models/backbone)
  --name NAME              artifact name (default rmbert-backbone-zh-<L>l<H>h)
  --cache-dir DIR          cache of the tokenised corpus (default .cache)
  --resume                 continue from the latest checkpoint in --out (weights, moments, step)
  --init PATH              start from these weights with a fresh optimiser: an artifact directory
                           or a .safetensors file (HF names); ignored with --resume
model (ignored shapes come from the checkpoint when resuming; they must match):
  --layers N               encoder layers (default 3)
  --hidden N               hidden size (default 192)
  --heads N                attention heads (default 3)
  --intermediate N         feed-forward size (default 4 x hidden)
  --max-positions N        position embeddings (default 512)
training:
  --seq-len N              tokens per sequence (default 128)
  --batch-size N           sequences per step (default ${DEFAULT_PRETRAIN_OPTIONS.batchSize})
  --lr X                   peak learning rate (default ${DEFAULT_PRETRAIN_OPTIONS.learningRate})
  --warmup N               warmup steps (default ${DEFAULT_PRETRAIN_OPTIONS.warmupSteps})
  --weight-decay X         AdamW decoupled weight decay (default ${DEFAULT_PRETRAIN_OPTIONS.weightDecay})
  --clip X                 global gradient-norm clip (default ${DEFAULT_PRETRAIN_OPTIONS.clipNorm})
  --dropout X              dropout (default ${DEFAULT_PRETRAIN_OPTIONS.dropout})
  --max-steps N            stop after N steps (default: no step limit)
  --max-minutes X          stop after X minutes of training, this run and resumed ones together
                           (default ${DEFAULT_PRETRAIN_OPTIONS.maxMinutes}); the learning rate decays to 0 by
                           whichever limit comes first
  --checkpoint-minutes X   checkpoint interval (default ${DEFAULT_PRETRAIN_OPTIONS.checkpointMinutes})
  --seed N                 seed for init, data order and masking (default ${DEFAULT_PRETRAIN_OPTIONS.seed})
  --backend NAME           auto | node-gpu | node | wasm | cpu (default auto)
  --no-progress            no progress bar (the log file is still written)
  -h, --help               this text
`;

function num(values: Record<string, unknown>, key: string, fallback: number, problems: string[], integer = false): number {
  const raw = values[key];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < 0) {
    problems.push(`--${key} must be a ${integer ? 'non-negative integer' : 'non-negative number'} (got "${String(raw)}")`);
    return fallback;
  }
  return n;
}

async function readInitWeights(p: string): Promise<WeightMap> {
  if (p.endsWith('.safetensors')) return toWeightMap(readSafetensors(readFileSync(p)));
  return (await loadArtifact(p)).weights;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      data: { type: 'string' },
      out: { type: 'string' },
      artifact: { type: 'string' },
      name: { type: 'string' },
      'cache-dir': { type: 'string' },
      resume: { type: 'boolean' },
      init: { type: 'string' },
      layers: { type: 'string' },
      hidden: { type: 'string' },
      heads: { type: 'string' },
      intermediate: { type: 'string' },
      'max-positions': { type: 'string' },
      'seq-len': { type: 'string' },
      'batch-size': { type: 'string' },
      lr: { type: 'string' },
      warmup: { type: 'string' },
      'weight-decay': { type: 'string' },
      clip: { type: 'string' },
      dropout: { type: 'string' },
      'max-steps': { type: 'string' },
      'max-minutes': { type: 'string' },
      'checkpoint-minutes': { type: 'string' },
      seed: { type: 'string' },
      backend: { type: 'string' },
      'no-progress': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const problems: string[] = [];
  const d = DEFAULT_PRETRAIN_OPTIONS;
  const hidden = num(values, 'hidden', 192, problems, true);
  const tokenizer = await BertTokenizer.load();
  const config: BertConfig = {
    vocabSize: tokenizer.vocabSize,
    hiddenSize: hidden,
    numLayers: num(values, 'layers', 3, problems, true),
    numHeads: num(values, 'heads', 3, problems, true),
    intermediateSize: num(values, 'intermediate', 4 * hidden, problems, true),
    maxPositions: num(values, 'max-positions', 512, problems, true),
    typeVocabSize: 2,
    layerNormEps: 1e-12,
  };
  if (config.hiddenSize % Math.max(config.numHeads, 1) !== 0) problems.push(`--hidden ${config.hiddenSize} must be divisible by --heads ${config.numHeads}`);
  const seqLen = num(values, 'seq-len', 128, problems, true);
  if (seqLen > config.maxPositions) problems.push(`--seq-len ${seqLen} exceeds --max-positions ${config.maxPositions}`);
  const dataDir = path.resolve(values.data ?? '../shared/data');
  if (!existsSync(dataDir)) problems.push(`--data ${dataDir} does not exist (point it at the folder holding zh-corpus-uer etc.)`);
  const backend = (values.backend ?? 'auto') as BackendChoice;
  if (!['auto', 'node-gpu', 'node', 'tensorflow', 'wasm', 'cpu'].includes(backend)) problems.push(`--backend must be auto, node-gpu, node, wasm or cpu (got "${backend}")`);
  const options = {
    ...d,
    config,
    outDir: path.resolve(values.out ?? '.cache/pretrain'),
    batchSize: num(values, 'batch-size', d.batchSize, problems, true),
    learningRate: num(values, 'lr', d.learningRate, problems),
    warmupSteps: num(values, 'warmup', d.warmupSteps, problems, true),
    weightDecay: num(values, 'weight-decay', d.weightDecay, problems),
    clipNorm: num(values, 'clip', d.clipNorm, problems),
    dropout: num(values, 'dropout', d.dropout, problems),
    maxSteps: num(values, 'max-steps', d.maxSteps, problems, true),
    maxMinutes: num(values, 'max-minutes', d.maxMinutes, problems),
    checkpointMinutes: num(values, 'checkpoint-minutes', d.checkpointMinutes, problems),
    seed: num(values, 'seed', d.seed, problems, true),
    resume: values.resume ?? false,
  };
  if (options.batchSize < 1) problems.push('--batch-size must be at least 1');
  if (values.init && !values.resume && !existsSync(values.init)) problems.push(`--init ${values.init} does not exist`);
  if (problems.length) throw new ConfigError(problems);

  const artifactDir = path.resolve(values.artifact ?? 'models/backbone');
  const name = values.name ?? `rmbert-backbone-zh-${config.numLayers}l${config.hiddenSize}h`;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const selection = await selectBackend(backend, log);
  log(`backend: ${selection.engineName}`);
  const corpusStart = performance.now();
  const corpus = buildPretrainCorpus({ dataDir, tokenizer, seqLen, seed: options.seed, cacheDir: path.resolve(values['cache-dir'] ?? '.cache'), log });
  log(`corpus: ${corpus.chars} chars, ${corpus.tokens} tokens, ${corpus.numSequences} sequences (${((performance.now() - corpusStart) / 1000).toFixed(1)} s)`);
  const initWeights = values.init && !values.resume ? await readInitWeights(values.init) : undefined;

  const byTime = options.maxSteps >= d.maxSteps;
  const bar = values['no-progress']
    ? null
    : new SingleBar({
        format: `pretrain |{bar}| {percentage}% | step {step} | loss {loss} | {tps} tok/s | {tokens} tokens | ${byTime ? '{value}/{total} s' : '{value}/{total} steps'}`,
        stream: process.stderr,
        hideCursor: false,
        etaBuffer: 50,
      });
  bar?.start(byTime ? Math.round(options.maxMinutes * 60) : options.maxSteps, 0, { step: 0, loss: '-', tps: '-', tokens: 0 });
  const result = await pretrain(corpus, tokenizer, { ...options, initWeights }, {
    log,
    onStep: (s) =>
      bar?.update(byTime ? Math.round(s.elapsedSeconds) : s.step, {
        step: s.step,
        loss: s.loss.toFixed(3),
        tps: Math.round(s.tokensPerSecond),
        tokens: s.tokensSeen,
      }),
  });
  bar?.stop();
  log(`pretraining stopped (${result.stoppedBy}) after ${result.steps} steps, ${result.tokensSeen} tokens, ${(result.trainSeconds / 60).toFixed(1)} min; final MLM loss ${result.finalLoss.toFixed(4)}`);

  const weights = await result.model.toWeightMap();
  const unseenTokenBias = suppressUnseenTokens(weights, corpus.vocabUsed);
  const artifactConfig: ArtifactConfig = {
    name,
    model: config,
    labels: [],
    vocabSha256: tokenizer.vocabSha256,
    knowledge: { inject: 'relation+object', maxEntities: 2, maxLength: seqLen, enabled: false },
    training: {
      objective: 'masked-LM (15%; 80/10/10), loss on masked positions only',
      corpus: {
        sources: corpus.sources.map((s) => s.source),
        chars: corpus.chars,
        tokens: corpus.tokens,
        sequences: corpus.numSequences,
        seqLen,
      },
      steps: result.steps,
      tokensSeen: result.tokensSeen,
      epochs: +(result.tokensSeen / (corpus.numSequences * seqLen)).toFixed(3),
      finalMlmLoss: +result.finalLoss.toFixed(4),
      wallMinutes: +(result.trainSeconds / 60).toFixed(1),
      stoppedBy: result.stoppedBy,
      backend: selection.engineName,
      batchSize: options.batchSize,
      learningRate: options.learningRate,
      warmupSteps: options.warmupSteps,
      weightDecay: options.weightDecay,
      seed: options.seed,
      mlmHead: `trained over the ${corpus.vocabUsed.length} token ids of the corpus; the others get bias ${unseenTokenBias}`,
    },
    createdAt: new Date().toISOString(),
  };
  const artifact = await writeArtifact(artifactDir, artifactConfig, weights, {
    dtype: 'F16',
    overwrite: true,
    extraFiles: { 'loss-curve.svg': lossCurveSvg(result.lossCurve, `${name}: MLM loss`), 'loss-curve.json': JSON.stringify(result.lossCurve) },
  });
  result.model.dispose();
  log(`backbone written to ${artifact.dir} (${artifact.version.name}+${artifact.version.hash})`);
  return 0;
}
