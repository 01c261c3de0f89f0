/**
 * Memory soak: runs an engine at full speed over the medical test set, again and again, for N minutes,
 * sampling RSS every few seconds, and says whether memory stays bounded (max RSS in the first window vs the
 * last, and the slope of a least-squares line through the samples after the first window).
 *
 *   node --import tsx benchmarks/engines-soak.ts [--minutes 10] [--sample-seconds 5] [--engine onnx|onnx-int8|auto] [--threads 2]
 *
 * Writes benchmarks/results/engines-soak.json and engines-soak.md.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createEngine } from '../src/model/engine-select.ts';
import { OnnxEngine } from '../src/model/onnx/index.ts';
import type { InferenceEngine } from '../src/model/types.ts';
import { analyseRss, loadAverage, loadBenchModel, machineDescription, prepareInputs, ROOT } from './engines-common.ts';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    'sample-seconds': { type: 'string', default: '5' },
    engine: { type: 'string', default: 'onnx' },
    threads: { type: 'string', default: '2' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log(`usage: node --import tsx benchmarks/engines-soak.ts [--minutes 10] [--sample-seconds 5] [--engine onnx|onnx-int8|auto] [--threads 2]
Runs the engine over the medical test set (batches of <= 32) for the given time, sampling RSS; writes
benchmarks/results/engines-soak.{json,md} with first vs last window max RSS and the RSS slope.`);
  process.exit(0);
}
const minutes = Number(args.minutes);
const sampleMs = Number(args['sample-seconds']) * 1000;
const threads = Number(args.threads);
if (!(minutes > 0) || !(sampleMs > 0) || !(threads >= 1)) {
  console.error('--minutes, --sample-seconds and --threads must be positive numbers');
  process.exit(2);
}
const log = (line: string) => console.error(line);

const loadStart = loadAverage();
const model = await loadBenchModel();
const inputs = await prepareInputs(model, { long256: 1, long512: 1 });
const sentences = inputs.medicalTrees;
const limits = { maxBatchSize: 32, maxBatchTokens: 8192 };
let engine: InferenceEngine;
if (args.engine === 'onnx') engine = await OnnxEngine.load(model.artifact, { threads, ...limits });
else if (args.engine === 'onnx-int8') engine = await OnnxEngine.load(model.artifact, { threads, quantize: 'int8', ...limits });
else engine = await createEngine(model.artifact, { engine: args.engine as 'auto' | 'tfjs', threads, ...limits, logger: log });
log(`soak: ${engine.name}, ${minutes} min, ${sentences.length} sentences per pass, RSS every ${sampleMs / 1000} s; model: ${model.source}`);

const samples: { tMs: number; rssMb: number; heapMb: number; externalMb: number }[] = [];
const t0 = performance.now();
const sample = () => {
  const m = process.memoryUsage();
  samples.push({ tMs: performance.now() - t0, rssMb: m.rss / 2 ** 20, heapMb: m.heapUsed / 2 ** 20, externalMb: m.external / 2 ** 20 /* arrayBuffers is part of external */ });
};
sample();
const timer = setInterval(sample, sampleMs);
let passes = 0;
let classified = 0;
const endAt = t0 + minutes * 60_000;
while (performance.now() < endAt) {
  // Slices of the set so the loop checks the clock often.
  for (let from = 0; from < sentences.length && performance.now() < endAt; from += 128) {
    const part = sentences.slice(from, from + 128);
    await engine.classify(part);
    classified += part.length;
  }
  passes++;
}
clearInterval(timer);
sample();
const elapsedMs = performance.now() - t0;
await engine.dispose();

// Windows: the first and last minute, or the first and last fifth of a run shorter than five minutes.
const windowMs = Math.min(60_000, elapsedMs / 5);
const { firstWindowMaxRssMb: firstMax, lastWindowMaxRssMb: lastMax, rssSlopeMbPerMin: slopeMbPerMin, bounded } = analyseRss(samples, elapsedMs, { windowMs });
const r = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const loadEnd = loadAverage();
const result = {
  command: `node --import tsx benchmarks/engines-soak.ts${process.argv.slice(2).length ? ' ' + process.argv.slice(2).join(' ') : ''}`,
  machine: machineDescription(),
  date: new Date().toISOString(),
  summary: {
    engine: engine.name,
    machine: `${os.cpus().length} cores`,
    minutes: r(elapsedMs / 60_000, 2),
    sentences: classified,
    sentencesPerS: r((classified / elapsedMs) * 1000),
    firstWindowMaxRssMb: r(firstMax),
    lastWindowMaxRssMb: r(lastMax),
    windowSeconds: r(windowMs / 1000, 0),
    rssSlopeMbPerMin: r(slopeMbPerMin, 3),
    bounded,
    loadAverage1m: { start: loadStart[0], end: loadEnd[0] },
  },
  details: {
    model: model.source,
    passes,
    threads,
    limits,
    samples: samples.map((s) => ({ tS: r(s.tMs / 1000), rssMb: r(s.rssMb), heapMb: r(s.heapMb), externalMb: r(s.externalMb) })),
  },
};
const outDir = path.join(ROOT, 'benchmarks/results');
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, 'engines-soak.json'), JSON.stringify(result, null, 2) + '\n');
const s = result.summary;
const md = [
  '# Engine memory soak',
  '',
  `Command: \`${result.command}\` — ${result.date}; machine: ${result.machine}; load average (1 min) ${s.loadAverage1m.start} -> ${s.loadAverage1m.end}.`,
  '',
  '| engine | minutes | sentences | sentences/s | max RSS first window (MB) | max RSS last window (MB) | slope (MB/min) | bounded |',
  '|---|---|---|---|---|---|---|---|',
  `| ${s.engine} | ${s.minutes} | ${s.sentences} | ${s.sentencesPerS} | ${s.firstWindowMaxRssMb} | ${s.lastWindowMaxRssMb} | ${s.rssSlopeMbPerMin} | ${s.bounded ? 'yes' : 'NO'} |`,
  '',
  `Windows: the first and last ${s.windowSeconds} s. Model: ${result.details.model}.`,
  '',
].join('\n');
fs.writeFileSync(path.join(outDir, 'engines-soak.md'), md);
console.log(md);
