/**
 * Forward throughput of the tfjs model (TfjsEngine) for the shipped model size, per tfjs backend available
 * here (wasm, cpu), at batch sizes 1, 8 and 32, on the medical test sentences with knowledge injected, and
 * the achieved GFLOP/s against the backend's own peak (a 2048-cube matmul).
 *
 *   node --import tsx benchmarks/model-forward.ts [--quick]
 *
 * Each backend runs in its own child process (tfjs picks one backend per process); wasm and cpu runs are
 * interleaved (wasm, cpu, wasm) because this machine's speed drifts over minutes. Writes
 * benchmarks/results/model-forward.{json,md}.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type { InjectedSentence } from '../src/domain/index.ts';
import { selectBackend, type BackendChoice } from '../src/model/backend.ts';
import { planBatches } from '../src/model/onnx/batching.ts';
import { TfjsEngine } from '../src/model/tfjs-engine.ts';
import type { BertConfig } from '../src/model/types.ts';
import { loadAverage, loadBenchModel, machineDescription, prepareInputs } from './engines-common.ts';
import { importParityCheckpoint, loadParityFixture, measureParity } from '../test/helpers/parity-fixture.ts';

const SCRIPT = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SCRIPT), '..');
const BATCH_SIZES = [1, 8, 32];

interface ChildResult {
  backend: string;
  model: string;
  config: BertConfig;
  numLabels: number;
  knowledge: string;
  sentences: number;
  meanTokens: number;
  peakGflops: number;
  perBatch: { batchSize: number; sentences: number; seconds: number; sentencesPerSecond: number; gflops: number; paddedTokens: number }[];
  /** Against the float64 numpy reference of test/fixtures/parity, on this backend (max over hidden and logits). */
  parityMaxRelError: number;
  loadAverage: number[];
}

/** FLOPs of one forward pass over a padded batch (multiply-add = 2), as the model computes it. */
function forwardFlops(c: BertConfig, numLabels: number, B: number, T: number): number {
  const H = c.hiddenSize;
  const perLayer = 2 * B * T * (4 * H * H + 2 * H * c.intermediateSize) + 2 * 2 * B * T * T * H;
  return c.numLayers * perLayer + 2 * B * T * H * numLabels;
}

async function matmulPeak(repeats: number, n = 2048): Promise<number> {
  const a = tf.randomUniform([n, n], -1, 1, 'float32', 1) as tf.Tensor2D;
  const b = tf.randomUniform([n, n], -1, 1, 'float32', 2) as tf.Tensor2D;
  let best = 0;
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    const c = tf.matMul(a, b);
    await c.data();
    const s = (performance.now() - t0) / 1000;
    c.dispose();
    best = Math.max(best, (2 * n * n * n) / s / 1e9);
  }
  tf.dispose([a, b]);
  return best;
}

async function child(backend: BackendChoice, quick: boolean): Promise<ChildResult> {
  const selection = await selectBackend(backend, () => {});
  // Numeric parity first, on the same backend and kernels the throughput figures below use.
  const parity = await measureParity(loadParityFixture(), await importParityCheckpoint());
  const loaded = await loadBenchModel();
  // The stage injects knowledge; measure on injected sentences even when the model at hand (a backbone)
  // was trained without it.
  const k = loaded.artifact.config.knowledge;
  const model = {
    ...loaded,
    artifact: { ...loaded.artifact, config: { ...loaded.artifact.config, knowledge: { ...k, enabled: true, inject: k.inject, maxEntities: k.maxEntities || 2, maxLength: 256 } } },
  };
  const inputs = await prepareInputs(model, { long256: 0, long512: 0 });
  const slow = selection.backend === 'cpu';
  const limit = quick ? 32 : slow ? 64 : inputs.medicalTrees.length;
  const sentences: InjectedSentence[] = inputs.medicalTrees.slice(0, limit);
  const config = model.artifact.config.model;
  const numLabels = model.artifact.config.labels.length;
  const perBatch: ChildResult['perBatch'] = [];
  for (const batchSize of BATCH_SIZES) {
    const engine = await TfjsEngine.load(model.artifact, { backend, maxBatchSize: batchSize, maxBatchTokens: batchSize * 1024 });
    // One more warm-up at this batch shape.
    await engine.classify(sentences.slice(0, batchSize));
    // The stage hands the engine a micro-batch of many sentences; the engine sorts them into length buckets
    // and cuts batches of at most `batchSize` sentences, padded only to their own longest one.
    const limits = { maxBatchSize: batchSize, maxBatchTokens: batchSize * 1024 };
    let flops = 0;
    let padded = 0;
    for (const plan of planBatches(sentences.map((s) => s.tokenIds.length), limits)) {
      flops += forwardFlops(config, numLabels, plan.indices.length, plan.seqLen);
      padded += plan.indices.length * plan.seqLen;
    }
    const t0 = performance.now();
    await engine.classify(sentences);
    const seconds = (performance.now() - t0) / 1000;
    await engine.dispose();
    perBatch.push({
      batchSize,
      sentences: sentences.length,
      seconds: +seconds.toFixed(3),
      sentencesPerSecond: +(sentences.length / seconds).toFixed(2),
      gflops: +(flops / seconds / 1e9).toFixed(2),
      paddedTokens: padded,
    });
  }
  const peakGflops = await matmulPeak(slow ? 1 : 3, quick ? 512 : 2048);
  return {
    backend: selection.engineName,
    model: model.source,
    config,
    numLabels,
    knowledge: inputs.knowledge,
    sentences: sentences.length,
    meanTokens: +(sentences.reduce((a, s) => a + s.tokenIds.length, 0) / sentences.length).toFixed(1),
    peakGflops: +peakGflops.toFixed(2),
    perBatch,
    parityMaxRelError: +parity.maxRelError.toExponential(2),
    loadAverage: loadAverage(),
  };
}

function runChild(backend: string, quick: boolean): ChildResult {
  const out = execFileSync(process.execPath, ['--import', 'tsx', SCRIPT, '--child', backend, ...(quick ? ['--quick'] : [])], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 * 1024 * 1024,
  });
  const line = out.trim().split('\n').pop()!;
  return JSON.parse(line) as ChildResult;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const childAt = args.indexOf('--child');
  if (childAt >= 0) {
    const result = await child(args[childAt + 1] as BackendChoice, quick);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const order = ['wasm', 'cpu', 'wasm'];
  const runs: ChildResult[] = [];
  for (const backend of order) {
    process.stderr.write(`model-forward: ${backend} ...\n`);
    runs.push(runChild(backend, quick));
  }
  const byBackend = new Map<string, ChildResult[]>();
  for (const r of runs) byBackend.set(r.backend, [...(byBackend.get(r.backend) ?? []), r]);
  const sentencesPerSecond: Record<string, Record<string, number>> = {};
  const gflops: Record<string, Record<string, number>> = {};
  const peakGflops: Record<string, number> = {};
  const fractionOfPeak: Record<string, Record<string, number>> = {};
  for (const [backend, rs] of byBackend) {
    sentencesPerSecond[backend] = {};
    gflops[backend] = {};
    fractionOfPeak[backend] = {};
    // Best of the interleaved runs: drift and other jobs only ever slow a run down.
    peakGflops[backend] = Math.max(...rs.map((r) => r.peakGflops));
    for (const bs of BATCH_SIZES) {
      const best = rs.map((r) => r.perBatch.find((p) => p.batchSize === bs)!).sort((a, b) => b.sentencesPerSecond - a.sentencesPerSecond)[0];
      sentencesPerSecond[backend][bs] = best.sentencesPerSecond;
      gflops[backend][bs] = best.gflops;
      fractionOfPeak[backend][bs] = +(best.gflops / peakGflops[backend]).toFixed(3);
    }
  }
  const first = runs[0];
  const machine = machineDescription();
  const result = {
    command: `node --import tsx benchmarks/model-forward.ts${quick ? ' --quick' : ''}`,
    machine,
    date: new Date().toISOString(),
    summary: {
      model: first.model,
      config: first.config,
      inputs: `medical test set (kbert-medical-ner/test.tsv), ${first.knowledge}; wasm: all ${byBackend.get('tfjs-wasm')?.[0].sentences ?? 0} windows, cpu: first ${byBackend.get('tfjs-cpu')?.[0].sentences ?? 0}; mean ${first.meanTokens} tokens`,
      sentencesPerSecond,
      gflops,
      peakGflops,
      fractionOfPeak,
      parityMaxRelError: Math.max(...runs.map((r) => r.parityMaxRelError)),
      parityMaxRelErrorByBackend: Object.fromEntries([...byBackend].map(([backend, rs]) => [backend, Math.max(...rs.map((r) => r.parityMaxRelError))])),
      parityReference: 'test/fixtures/parity (scripts/parity/make_fixtures.py: float64 numpy BERT, 3 K-BERT sentences with soft positions and visibility matrices, alone and padded in one batch; weights through the safetensors importer)',
    },
    details: { runs, note: 'one classify call over the whole set; the engine buckets by length into batches of at most `batchSize` sentences; GFLOP/s counts padded tokens; wasm runs single-threaded under Node' },
  };
  const dir = path.join(ROOT, 'benchmarks/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'model-forward.json'), `${JSON.stringify(result, null, 2)}\n`);
  const rows = Object.keys(sentencesPerSecond).flatMap((backend) =>
    BATCH_SIZES.map(
      (bs) =>
        `| ${backend} | ${bs} | ${sentencesPerSecond[backend][bs]} | ${gflops[backend][bs]} | ${peakGflops[backend]} | ${(fractionOfPeak[backend][bs] * 100).toFixed(0)}% |`,
    ),
  );
  const c = first.config;
  const md = [
    '# model-forward: tfjs forward throughput',
    '',
    `Machine: ${machine}. Command: \`${result.command}\`. Date: ${result.date}.`,
    '',
    `Model: ${first.model}; ${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads} heads, intermediate ${c.intermediateSize}, ${first.numLabels} labels.`,
    `Inputs: ${result.summary.inputs}.`,
    '',
    `Numeric parity against the float64 numpy reference (test/fixtures/parity): max relative error ${result.summary.parityMaxRelError.toExponential(1)} (${Object.entries(result.summary.parityMaxRelErrorByBackend).map(([b, e]) => `${b} ${e.toExponential(1)}`).join(', ')}; limit 1e-4).`,
    '',
    '| backend (2 cores machine, 1 thread) | batch size | sentences/s | achieved GFLOP/s | peak GFLOP/s (2048-cube matmul) | of peak |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
    'One classify call over the whole set; the engine sorts sentences into length buckets and cuts batches of at most the batch size, padded to their own longest sentence. GFLOP/s counts the padded tokens. Best of interleaved runs (wasm, cpu, wasm). The machine is shared and its speed drifts; compare ratios rather than absolute figures.',
    '',
  ].join('\n');
  writeFileSync(path.join(dir, 'model-forward.md'), md);
  process.stderr.write(md);
}

await main();
