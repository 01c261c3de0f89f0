/**
 * Fine-tuning speed on the medical training set: sentences per second through the real training
 * loop (knowledge injected, RecAdam, batches of --batch-tokens) and prediction speed on the dev set,
 * for a tiny model and for the backbone's shape, on one backend (default wasm, one thread). Weights are
 * random (speed does not depend on them). Estimates the time per epoch of the full train set.
 *
 *   node --import tsx benchmarks/finetune-speed.ts [--backend wasm] [--sentences 320] [--dev 160]
 *
 * Writes benchmarks/results/finetune-speed.{json,md}.
 */
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { selectBackend } from '../src/model/backend.ts';
import type { BackendChoice } from '../src/model/backend.ts';
import { BertModel } from '../src/model/bert.ts';
import { BertTokenizer } from '../src/model/tokenizer.ts';
import type { BertConfig } from '../src/model/types.ts';
import { bioLabels, loadCorpus, subsetSentences } from '../src/train/datasets.ts';
import { createInjector, evaluateModel, prepareExamples } from '../src/train/evaluate.ts';
import { fineTune } from '../src/train/finetune.ts';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    sentences: { type: 'string', default: '320' },
    dev: { type: 'string', default: '160' },
    'batch-tokens': { type: 'string', default: '512' },
    'batch-size': { type: 'string', default: '16' },
  },
});

const selection = await selectBackend(values.backend as BackendChoice);
const tokenizer = await BertTokenizer.load();
const corpus = loadCorpus('medical');
const trainN = Number(values.sentences);
const devN = Number(values.dev);
const train = subsetSentences(corpus.train.sentences, trainN, 5);
const dev = subsetSentences(corpus.dev.sentences, devN, 5);
const labels = bioLabels(corpus.types);
const knowledge = {
  enabled: true,
  kgFile: path.resolve(import.meta.dirname, '../data/kg/Medical.spo'),
  inject: 'relation+object' as const,
  maxEntities: 2,
  maxLength: 256,
  softPositions: true,
  visibilityMatrix: true,
};
const shape = (layers: number, hidden: number, heads: number): BertConfig => ({
  vocabSize: tokenizer.vocabSize,
  hiddenSize: hidden,
  numLayers: layers,
  numHeads: heads,
  intermediateSize: 4 * hidden,
  maxPositions: 512,
  typeVocabSize: 2,
  layerNormEps: 1e-12,
});
const models: Record<string, BertConfig> = {
  'tiny 2L/64H/2 heads': shape(2, 64, 2),
  'backbone 3L/192H/3 heads': shape(3, 192, 3),
};

const { injector } = await createInjector(tokenizer, knowledge);
const devSet = await prepareExamples(dev, injector, labels);
const fullTrain = await prepareExamples(corpus.train.sentences, injector, labels);
const fullDev = await prepareExamples(corpus.dev.sentences, injector, labels);
const trainSet = await prepareExamples(train, injector, labels);

const rows: Record<string, unknown>[] = [];
for (const [name, config] of Object.entries(models)) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-speed-'));
  try {
    // CPU time between the first and the last step: the machine is shared, so wall time overstates
    // what one dedicated core needs.
    let cpuAtFirst = 0;
    let wallAtFirst = 0;
    let cpuAtLast = 0;
    let wallAtLast = 0;
    let stepsSeen = 0;
    const cpuSeconds = () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    };
    const result = await fineTune({
      name: 'speed',
      datasetName: 'medical-subset',
      train,
      dev: dev.slice(0, 16),
      types: corpus.types,
      tokenizer,
      model: { random: config },
      knowledge,
      optimizer: 'recadam',
      anneal: 'sigmoid',
      k: 0.01,
      t0: 1000,
      gamma: 5000,
      learningRate: 1e-4,
      warmup: 0.1,
      weightDecay: 0.01,
      clipNorm: 1,
      dropout: 0.1,
      epochs: 1,
      batchTokens: Number(values['batch-tokens']),
      maxBatchSentences: Number(values['batch-size']),
      seed: 1,
      runDir: dir,
      log: () => undefined,
      onStep: () => {
        stepsSeen++;
        if (stepsSeen === 1) {
          cpuAtFirst = cpuSeconds();
          wallAtFirst = performance.now();
        }
        cpuAtLast = cpuSeconds();
        wallAtLast = performance.now();
      },
    });
    const model = BertModel.init(config, { numLabels: labels.length, seed: 1 });
    await evaluateModel(model, labels, { ...devSet, examples: devSet.examples.slice(0, 16), sentences: devSet.sentences }, corpus.types);
    const t0 = performance.now();
    const c0 = cpuSeconds();
    await evaluateModel(model, labels, devSet, corpus.types);
    const predictSeconds = (performance.now() - t0) / 1000;
    const predictCpuSeconds = cpuSeconds() - c0;
    model.dispose();
    const trainSps = result.trainSentencesPerSecond;
    const predictSps = dev.length / predictSeconds;
    // Sentences of steps 2..N (the first step's sentences were trained before cpuAtFirst).
    const meanBatch = train.length / result.steps;
    const trainSpsCpu = ((result.steps - 1) * meanBatch) / (cpuAtLast - cpuAtFirst);
    const predictSpsCpu = dev.length / predictCpuSeconds;
    const tokensPerSentence = trainSet.stats.tokens / trainSet.stats.windows;
    rows.push({
      model: name,
      parameters: result.parameters,
      trainSentencesPerSecond: trainSps,
      trainTokensPerSecond: trainSps * tokensPerSentence,
      steps: result.steps,
      predictSentencesPerSecond: predictSps,
      epochMinutesEstimate: (fullTrain.stats.sentences / trainSps + fullDev.stats.sentences / predictSps) / 60,
      trainSentencesPerCpuSecond: trainSpsCpu,
      predictSentencesPerCpuSecond: predictSpsCpu,
      cpuShareDuringTraining: (cpuAtLast - cpuAtFirst) / ((wallAtLast - wallAtFirst) / 1000),
      epochMinutesOneDedicatedCore: (fullTrain.stats.sentences / trainSpsCpu + fullDev.stats.sentences / predictSpsCpu) / 60,
    });
    console.error(JSON.stringify(rows[rows.length - 1]));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const machine = `${os.cpus().length} cores (${os.cpus()[0]?.model.trim() ?? 'unknown CPU'}), tfjs ${selection.engineName}, one thread`;
const summary: Record<string, number> = {};
for (const r of rows) {
  const key = String(r.model).split(' ')[0];
  summary[`${key}.trainSentencesPerSecond`] = r.trainSentencesPerSecond as number;
  summary[`${key}.predictSentencesPerSecond`] = r.predictSentencesPerSecond as number;
  summary[`${key}.epochMinutes`] = r.epochMinutesEstimate as number;
  summary[`${key}.trainSentencesPerCpuSecond`] = r.trainSentencesPerCpuSecond as number;
  summary[`${key}.epochMinutesOneDedicatedCore`] = r.epochMinutesOneDedicatedCore as number;
}
const out = {
  command: `node --import tsx benchmarks/finetune-speed.ts --backend ${values.backend} --sentences ${trainN} --dev ${devN} --batch-tokens ${values['batch-tokens']} --batch-size ${values['batch-size']}`,
  machine,
  date: new Date().toISOString(),
  summary,
  details: {
    rows,
    trainSubset: trainSet.stats,
    fullTrain: fullTrain.stats,
    fullDev: fullDev.stats,
    batchTokens: Number(values['batch-tokens']),
    maxBatchSentences: Number(values['batch-size']),
    note: 'Random weights; knowledge injected from Medical.spo; RecAdam; epoch estimate = full train set at the measured training speed + full dev set at the measured prediction speed.',
  },
};
const resultsDir = path.resolve(import.meta.dirname, 'results');
await mkdir(resultsDir, { recursive: true });
await writeFile(path.join(resultsDir, 'finetune-speed.json'), JSON.stringify(out, null, 1) + '\n');
const md = [
  `# Fine-tuning speed, medical train set (${machine})`,
  '',
  `\`${out.command}\` — ${out.date}`,
  '',
  '| model | parameters | train sentences/s (wall) | train sentences per CPU-s | CPU share | predict sentences per CPU-s | epoch, wall at this load | epoch, one dedicated core |',
  '|---|---|---|---|---|---|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.model} | ${(r.parameters as number).toLocaleString('en')} | ${(r.trainSentencesPerSecond as number).toFixed(1)} | ${(r.trainSentencesPerCpuSecond as number).toFixed(1)} | ${(100 * (r.cpuShareDuringTraining as number)).toFixed(0)}% | ${(r.predictSentencesPerCpuSecond as number).toFixed(1)} | ${(r.epochMinutesEstimate as number).toFixed(1)} min | ${(r.epochMinutesOneDedicatedCore as number).toFixed(1)} min |`,
  ),
  '',
  `Training inputs average ${(fullTrain.stats.tokens / fullTrain.stats.windows).toFixed(1)} tokens (knowledge included); batches of at most ${values['batch-tokens']} padded tokens and ${values['batch-size']} sentences.`,
  '',
].join('\n');
await writeFile(path.join(resultsDir, 'finetune-speed.md'), md);
console.log(md);
