/**
 * Memory soak of the whole streaming stage (not just the engine): the stage runs in this process against
 * the real local Kafka and Neo4j, built as benchmarks/stream.ts builds it (its own topics, the knowledge
 * graph from data/kg/Medical.spo in Neo4j, models/medical, ONNX Runtime with 2 threads, the default
 * micro-batch limits), while a producer keeps the input topic ahead of it for the whole run. Every few
 * seconds it samples the process's RSS, heap used and external memory, the records processed and the
 * input lag; at the end it says whether RSS stayed bounded (first vs last window, slope after the first
 * window: the analysis engines-soak.ts uses) and draws RSS and heap over time.
 *
 *   node --import tsx benchmarks/stage-soak.ts [--minutes 10] [--sample-seconds 5]
 *
 * Needs the local servers (bash scripts/infra.sh up). Writes benchmarks/results/stage-soak.json,
 * stage-soak.md and stage-soak.svg.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { buildConfig } from '../src/config/index.ts';
import { createModelLoader, GraphKnowledge } from '../src/cli/stage-wiring.ts';
import type { Document } from '../src/domain/index.ts';
import { Neo4jKnowledgeGraph } from '../src/knowledge/index.ts';
import { PromStageMetrics } from '../src/metrics/index.ts';
import { writeArtifact } from '../src/model/artifact.ts';
import { SHIPPED_VOCAB_SHA256 } from '../src/model/tokenizer.ts';
import { SILENT_LOGGER, createJsonLogger } from '../src/pipeline/logging.ts';
import { StreamClient } from '../src/stream/client.ts';
import { startStage } from '../src/stream/stage.ts';
import { renderCharts } from '../src/train/plot.ts';
import {
  BROKERS,
  NEO4J,
  ROOT,
  RSS_BOUNDED_RULE,
  analyseRss,
  ensureGraph,
  loadAverage,
  loadBenchModel,
  machineDescription,
  medicalSentences,
  stageConfigFor,
} from './engines-common.ts';

const USAGE = `usage: node --import tsx benchmarks/stage-soak.ts [--minutes 10] [--sample-seconds 5]

Memory soak of the whole streaming stage: Kafka in -> Neo4j knowledge graph -> BERT NER (ONNX Runtime,
2 threads, models/medical) -> Avro out, exactly once, in this process, against the local servers
(start them first: bash scripts/infra.sh up). A producer in the same process keeps the input topic
ahead of the stage for the whole run (records: the sentences of the medical test split and of
data/samples/emr-samples.jsonl, over and over), so the stage runs at full speed.

  --minutes N          length of the run (default 10)
  --sample-seconds S   sampling interval of RSS, heap used, external memory, records and input lag (default 5)
  --help               this text

Warm-up: the first min(60 s, 10% of the run). Windows: the first 20% of the run after the warm-up and
the last 20% of the run. The slope: a least-squares line through the RSS samples after the first window.
${RSS_BOUNDED_RULE}.
Writes benchmarks/results/stage-soak.json, stage-soak.md and stage-soak.svg. Creates its own topics
(bench-soak-*) and deletes them at the end.`;

let parsed;
try {
  parsed = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      'sample-seconds': { type: 'string', default: '5' },
      help: { type: 'boolean', default: false },
    },
  });
} catch (error) {
  console.error(`stage-soak: ${(error as Error).message}\n\n${USAGE}`);
  process.exit(2);
}
const args = parsed.values;
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
const MINUTES = Number(args.minutes);
const SAMPLE_MS = Number(args['sample-seconds']) * 1000;
if (!(MINUTES > 0) || !(SAMPLE_MS > 0)) {
  console.error('stage-soak: --minutes and --sample-seconds must be positive numbers');
  process.exit(2);
}
const RUN_MS = MINUTES * 60_000;
const WARMUP_MS = Math.min(60_000, RUN_MS * 0.1);
const WINDOW_MS = RUN_MS * 0.2;
if (SAMPLE_MS * 2 > WINDOW_MS) {
  console.error(`stage-soak: --sample-seconds ${SAMPLE_MS / 1000} leaves fewer than 2 samples in a window of ${WINDOW_MS / 1000} s; sample more often or run longer`);
  process.exit(2);
}
const COMMAND = `node --import tsx benchmarks/stage-soak.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`;
/** The stage's default micro-batch cap. */
const MAX_RECORDS = buildConfig({ env: {}, overrides: { embedded: true, 'knowledge.enabled': false } }).batch.maxRecords;
/** The producer tops the input up to this many records not yet taken by the stage (a few micro-batches). */
const AHEAD_TARGET = 4 * MAX_RECORDS;
const SAMPLES_FILE = path.join(ROOT, 'data/samples/emr-samples.jsonl');

const log = (line: string) => process.stderr.write(`stage-soak: ${line}\n`);
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MB = 2 ** 20;

interface Sample {
  tMs: number;
  rssMb: number;
  heapUsedMb: number;
  heapTotalMb: number;
  /** process.memoryUsage().external (C++ objects bound to JS, ArrayBuffers and Buffers included). */
  externalMb: number;
  /** The ArrayBuffer / Buffer part of externalMb. */
  arrayBuffersMb: number;
  /** Output records published (committed) by the stage since the start. */
  recordsOut: number;
  recordsIn: number;
  /** Input lag on the broker: high watermark - the stage group's committed offset (records). NaN if the query failed. */
  lag: number;
  /** Records produced but not yet taken into a micro-batch by the stage. */
  ahead: number;
  load1m: number;
}

/** Rejects with a clear message when nothing listens at host:port. */
function probe(name: string, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const fail = (why: string) => {
      socket.destroy();
      reject(new Error(`${name} is not reachable at ${host}:${port} (${why}): start the local servers with bash scripts/infra.sh up`));
    };
    socket.setTimeout(3000, () => fail('timed out'));
    socket.once('error', (e) => fail(e.message));
    socket.once('connect', () => {
      socket.end();
      resolve();
    });
  });
}

function recordTexts(medical: string[]): { texts: string[]; fromSamples: number } {
  const samples = readFileSync(SAMPLES_FILE, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => String((JSON.parse(l) as { text: unknown }).text));
  return { texts: [...medical, ...samples], fromSamples: samples.length };
}

async function main(): Promise<void> {
  const [bh, bp] = BROKERS[0].split(':');
  const neo = new URL(NEO4J.uri.replace(/^bolt:/, 'http:'));
  await probe('Kafka', bh, Number(bp));
  await probe('Neo4j (Bolt)', neo.hostname, Number(neo.port));

  const loadStart = loadAverage();
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'rmbert-stage-soak-'));
  try {
    const bench = await loadBenchModel();
    if (!bench.fineTuned) log(`WARNING: no shipped model in models/medical; soaking with ${bench.source}`);
    const modelDir = path.join(scratch, 'model');
    await writeArtifact(modelDir, { ...bench.artifact.config, vocabSha256: SHIPPED_VOCAB_SHA256 }, bench.artifact.weights, { dtype: 'F32' });
    const kgVersion = await ensureGraph();
    const knowledge = new GraphKnowledge(new Neo4jKnowledgeGraph(NEO4J), { cacheSize: 100_000, logger: SILENT_LOGGER });
    if (!(await knowledge.open())) throw new Error('Neo4j is not reachable: start the local servers with bash scripts/infra.sh up');
    const medical = await medicalSentences();
    const { texts, fromSamples } = recordTexts(medical);

    const run = `bench-soak-${Date.now().toString(36)}-${Math.random().toString(16).slice(2, 8)}`;
    const config = stageConfigFor(run, modelDir, MAX_RECORDS);
    const client = new StreamClient(config, SILENT_LOGGER);
    await client.createTopics(1);
    const metrics = new PromStageMetrics({ processMetrics: false });
    const stage = await startStage(config, {
      logger: createJsonLogger({ level: 'error', sink: (l) => process.stderr.write(`${l}\n`) }),
      metrics,
      knowledge,
      modelLoader: createModelLoader({ engine: 'onnx', logger: SILENT_LOGGER }),
    });
    const serving = stage.models.current;
    log(`model ${bench.source}, version ${serving.version.name}+${serving.version.hash}, engine ${serving.engine}; ${texts.length} record texts; ${MINUTES} min, samples every ${SAMPLE_MS / 1000} s`);
    const admin = client.kafka.admin();
    await admin.connect();

    // The producer: keeps AHEAD_TARGET records waiting for the stage, checking every 50 ms.
    let produced = 0;
    let producing = true;
    let producerError: unknown = null;
    const produceSome = async (count: number) => {
      const docs: Document[] = [];
      for (let i = 0; i < count; i++, produced++) {
        const k = produced % texts.length;
        docs.push({ id: `soak-${produced}`, sourceSystem: 'bench', patientRef: `p${k}`, text: texts[k], language: 'zh', createdAt: Date.now(), section: null });
      }
      await client.produceDocuments(docs);
    };
    await produceSome(AHEAD_TARGET);
    const producer = (async () => {
      try {
        while (producing) {
          const ahead = produced - stage.counters().recordsIn;
          if (ahead < AHEAD_TARGET) await produceSome(Math.min(500, AHEAD_TARGET - ahead));
          await sleep(50);
        }
      } catch (error) {
        producerError = error;
      }
    })();

    const lagNow = async (): Promise<number> => {
      try {
        const [high] = await admin.fetchTopicOffsets(config.topics.input);
        const [group] = await admin.fetchOffsets({ groupId: config.groupId, topics: [config.topics.input] });
        const committed = Number(group?.partitions[0]?.offset ?? -1);
        return Number(high.high) - (committed >= 0 ? committed : Number(high.low));
      } catch {
        return NaN;
      }
    };

    const samples: Sample[] = [];
    const t0 = performance.now();
    const base = stage.counters();
    const sample = async () => {
      const m = process.memoryUsage();
      const c = stage.counters();
      const tMs = performance.now() - t0;
      const lag = await lagNow();
      samples.push({
        tMs,
        rssMb: m.rss / MB,
        heapUsedMb: m.heapUsed / MB,
        heapTotalMb: m.heapTotal / MB,
        externalMb: m.external / MB,
        arrayBuffersMb: m.arrayBuffers / MB,
        recordsOut: c.recordsOut - base.recordsOut,
        recordsIn: c.recordsIn - base.recordsIn,
        lag,
        ahead: produced - c.recordsIn,
        load1m: round(os.loadavg()[0], 2),
      });
    };
    await sample();
    let nextLog = 60_000;
    for (let k = 1; k * SAMPLE_MS <= RUN_MS; k++) {
      await sleep(Math.max(0, t0 + k * SAMPLE_MS - performance.now()));
      if (producerError) throw producerError;
      await sample();
      const s = samples[samples.length - 1];
      if (s.tMs >= nextLog || k * SAMPLE_MS + SAMPLE_MS > RUN_MS) {
        nextLog += 60_000;
        log(`${round(s.tMs / 60_000, 2)} min: ${s.recordsOut} records (${round((s.recordsOut / s.tMs) * 1000)}/s), RSS ${round(s.rssMb)} MB, heap ${round(s.heapUsedMb)} MB, external ${round(s.externalMb)} MB, input lag ${s.lag}, load ${s.load1m}`);
      }
    }
    const elapsedMs = performance.now() - t0;
    const end = stage.counters();
    producing = false;
    await producer;
    if (producerError) throw producerError;
    const engine = stage.models.current.engine;
    const stopped = await stage.stop(30_000);
    await admin.disconnect();
    await client.deleteTopics().catch(() => undefined);
    await client.close();
    await knowledge.close();
    const loadEnd = loadAverage();

    // Figures.
    const records = end.recordsOut - base.recordsOut;
    const rss = analyseRss(samples, elapsedMs, { warmupMs: WARMUP_MS, windowMs: WINDOW_MS });
    const heap = analyseRss(
      samples.map((s) => ({ tMs: s.tMs, rssMb: s.heapUsedMb })),
      elapsedMs,
      { warmupMs: WARMUP_MS, windowMs: WINDOW_MS },
    );
    // Memory outside the JavaScript heap (ONNX Runtime's arena, the allocator, code): the GC sawtooth of
    // the heap dominates RSS maxima, so this is what tells a native leak from a plateau.
    const native = analyseRss(
      samples.map((s) => ({ tMs: s.tMs, rssMb: s.rssMb - s.heapTotalMb - s.externalMb })),
      elapsedMs,
      { warmupMs: WARMUP_MS, windowMs: WINDOW_MS },
    );
    const running = samples.filter((s) => s.tMs > 0);
    const lags = running.map((s) => s.lag).filter((x) => Number.isFinite(x));
    const lagMin = lags.length ? Math.min(...lags) : NaN;
    const lagFailed = running.length - lags.length;
    const fullSpeed = lags.length > 0 && lagMin > 0 && lagFailed === 0;
    const inWindow = (s: Sample, [from, to]: [number, number]) => s.tMs >= from && s.tMs <= to;
    const rate = (w: [number, number]) => {
      const inside = samples.filter((s) => inWindow(s, w));
      if (inside.length < 2) return NaN;
      const a = inside[0];
      const b = inside[inside.length - 1];
      return ((b.recordsOut - a.recordsOut) / (b.tMs - a.tMs)) * 1000;
    };
    const meanLoad = round(samples.reduce((n, s) => n + s.load1m, 0) / samples.length, 2);
    const minuteWindow = ([from, to]: [number, number]) => `${round(from / 60_000, 2)}-${round(to / 60_000, 2)} min`;

    const summary = {
      machine: '2 cores',
      engine: `${engine} (ONNX Runtime CPU, 2 threads)`,
      model: `${serving.version.name}+${serving.version.hash}`,
      minutes: round(elapsedMs / 60_000, 2),
      records,
      recordsPerS: round((records / elapsedMs) * 1000),
      recordsPerSFirstWindow: round(rate(rss.firstWindowMs)),
      recordsPerSLastWindow: round(rate(rss.lastWindowMs)),
      firstWindowMaxRssMb: round(rss.firstWindowMaxRssMb),
      lastWindowMaxRssMb: round(rss.lastWindowMaxRssMb),
      rssSlopeMbPerMin: round(rss.rssSlopeMbPerMin, 3),
      bounded: rss.bounded,
      boundedRule: RSS_BOUNDED_RULE,
      maxRssMb: round(Math.max(...samples.map((s) => s.rssMb))),
      firstWindowMaxHeapUsedMb: round(heap.firstWindowMaxRssMb),
      lastWindowMaxHeapUsedMb: round(heap.lastWindowMaxRssMb),
      heapUsedSlopeMbPerMin: round(heap.rssSlopeMbPerMin, 3),
      firstWindowMaxNativeMb: round(native.firstWindowMaxRssMb),
      lastWindowMaxNativeMb: round(native.lastWindowMaxRssMb),
      nativeSlopeMbPerMin: round(native.rssSlopeMbPerMin, 3),
      nativeDefinition: 'RSS - V8 heap total - external (ONNX Runtime, allocator, code)',
      warmupSeconds: round(WARMUP_MS / 1000, 0),
      firstWindow: minuteWindow(rss.firstWindowMs),
      lastWindow: minuteWindow(rss.lastWindowMs),
      slopeSamples: rss.slopeSamples,
      inputLagMin: lagMin,
      inputLagMax: lags.length ? Math.max(...lags) : NaN,
      inputLagFailedSamples: lagFailed,
      fullSpeed,
      deadLettered: end.deadLettered - base.deadLettered,
      transactionsAborted: end.transactionsAborted - base.transactionsAborted,
      cleanStop: stopped.clean,
      loadAverage1m: { start: loadStart[0], mean: meanLoad, end: loadEnd[0] },
    };
    const result = {
      command: COMMAND,
      machine: `2 cores: ${machineDescription()}; Kafka and Neo4j on the same machine`,
      date: new Date().toISOString(),
      summary,
      details: {
        model: bench.source,
        fineTuned: bench.fineTuned,
        knowledge: `Neo4j (default graph, data/kg/Medical.spo, version ${kgVersion.slice(0, 12)}), LRU cache`,
        records: `${medical.length} sentences of the CCKS 2017 medical test split (K-BERT) and the ${fromSamples} texts of data/samples/emr-samples.jsonl, one record each, cycled; unique ids`,
        batchMaxRecords: MAX_RECORDS,
        producer: `in this process; tops the input topic up to ${AHEAD_TARGET} records not yet taken by the stage every 50 ms (${produced} produced)`,
        inputLag: 'input topic high watermark - the stage group committed offset, on the broker, at each sample',
        rss: 'process.memoryUsage().rss of this process: the stage, its Kafka and Neo4j clients, the producer and the sampler (Kafka and Neo4j run in their own JVMs)',
        external: 'process.memoryUsage().external (ArrayBuffers included; arrayBuffersMb is that part)',
        samples: samples.map((s) => ({
          tS: round(s.tMs / 1000),
          rssMb: round(s.rssMb),
          heapUsedMb: round(s.heapUsedMb),
          heapTotalMb: round(s.heapTotalMb),
          externalMb: round(s.externalMb),
          arrayBuffersMb: round(s.arrayBuffersMb),
          records: s.recordsOut,
          lag: s.lag,
          ahead: s.ahead,
          load1m: s.load1m,
        })),
      },
    };
    const outDir = path.join(ROOT, 'benchmarks/results');
    mkdirSync(outDir, { recursive: true });
    writeFileSync(path.join(outDir, 'stage-soak.json'), `${JSON.stringify(result, null, 2)}\n`);

    const minutesOf = (s: Sample) => s.tMs / 60_000;
    const band = (w: [number, number], y: number): [number, number][] => [
      [w[0] / 60_000, y],
      [w[1] / 60_000, y],
    ];
    const svg = renderCharts(
      [
        {
          title: 'Stage process memory',
          xLabel: 'minutes',
          yLabel: 'MB',
          yMin: 0,
          series: [
            { name: 'RSS', points: samples.map((s) => [minutesOf(s), s.rssMb]) },
            { name: 'heap used', points: samples.map((s) => [minutesOf(s), s.heapUsedMb]) },
            { name: 'external', points: samples.map((s) => [minutesOf(s), s.externalMb]) },
            { name: 'max RSS, first window', points: band(rss.firstWindowMs, rss.firstWindowMaxRssMb) },
            { name: 'max RSS, last window', points: band(rss.lastWindowMs, rss.lastWindowMaxRssMb) },
          ],
        },
        {
          title: 'Input lag (records waiting on the broker)',
          xLabel: 'minutes',
          yLabel: 'records',
          yMin: 0,
          series: [{ name: 'input lag', points: samples.filter((s) => Number.isFinite(s.lag)).map((s) => [minutesOf(s), s.lag]) }],
        },
        {
          title: 'Throughput',
          xLabel: 'minutes',
          yLabel: 'records/s',
          yMin: 0,
          series: [
            {
              name: 'records/s (per sample interval)',
              points: samples.slice(1).map((s, i) => [minutesOf(s), ((s.recordsOut - samples[i].recordsOut) / (s.tMs - samples[i].tMs)) * 1000]),
            },
          ],
        },
      ],
      {
        columns: 3,
        width: 460,
        caption: `Stage soak, ${summary.minutes} min, 2 cores, ${engine} (2 threads), ${serving.version.name}: ${summary.recordsPerS} records/s; max RSS first / last window ${summary.firstWindowMaxRssMb} / ${summary.lastWindowMaxRssMb} MB, slope ${summary.rssSlopeMbPerMin} MB/min, bounded: ${rss.bounded ? 'yes' : 'NO'}`,
      },
    );
    writeFileSync(path.join(outDir, 'stage-soak.svg'), svg);

    const loaded = loadStart[0] > 3 || meanLoad > 3;
    const md = [
      '# Stage memory soak',
      '',
      `Command: \`${COMMAND}\` — ${result.date}`,
      `Machine: ${result.machine}; load average (1 min) ${loadStart[0]} at start, ${meanLoad} mean over the samples, ${loadEnd[0]} at end${loaded ? ' — **other work shared the machine during this run** (the stage itself keeps about 2-3 threads runnable)' : ''}.`,
      `Model: ${bench.source}, version ${summary.model}. Engine: ${summary.engine}. Knowledge: ${result.details.knowledge}. Micro-batch limit: the default, <= ${MAX_RECORDS} records.`,
      `Records: ${result.details.records}. The producer runs in the same process and keeps the input ahead of the stage: input lag on the broker ${fullSpeed ? `stayed > 0 at every sample (min ${lagMin}, max ${summary.inputLagMax} records), so the stage never waited for input (full speed)` : `**did not stay > 0** (min ${lagMin}, ${lagFailed} failed lag queries): the run was not at full speed throughout`}.`,
      '',
      `**Summary (2 cores):** ${records} records in ${summary.minutes} min, ${summary.recordsPerS} records/s; max RSS ${summary.firstWindowMaxRssMb} MB in the first window, ${summary.lastWindowMaxRssMb} MB in the last; RSS slope after the first window ${summary.rssSlopeMbPerMin} MB/min; bounded: **${rss.bounded ? 'yes' : 'NO'}**.`,
      '',
      '| engine | model | minutes | records | records/s | max RSS first window (MB) | max RSS last window (MB) | RSS slope (MB/min) | max heap used first / last window (MB) | input lag min (records) | bounded |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
      `| ${summary.engine} | ${serving.version.name} | ${summary.minutes} | ${records} | ${summary.recordsPerS} | ${summary.firstWindowMaxRssMb} | ${summary.lastWindowMaxRssMb} | ${summary.rssSlopeMbPerMin} | ${summary.firstWindowMaxHeapUsedMb} / ${summary.lastWindowMaxHeapUsedMb} | ${lagMin} | ${rss.bounded ? 'yes' : 'NO'} |`,
      '',
      `Samples every ${SAMPLE_MS / 1000} s (${samples.length}). Warm-up: the first ${summary.warmupSeconds} s. Windows: first ${summary.firstWindow}, last ${summary.lastWindow}; the slope is a least-squares line through the ${rss.slopeSamples} samples after the first window. ${RSS_BOUNDED_RULE} (the rule engines-soak uses). Outside the JavaScript heap (RSS - heap total - external): max ${summary.firstWindowMaxNativeMb} MB in the first window, ${summary.lastWindowMaxNativeMb} MB in the last, slope ${summary.nativeSlopeMbPerMin} MB/min. Records/s in the first / last window: ${summary.recordsPerSFirstWindow} / ${summary.recordsPerSLastWindow}. Dead letters: ${summary.deadLettered}; aborted transactions: ${summary.transactionsAborted}.`,
      '',
      `RSS is the whole process: the stage with its Kafka and Neo4j clients, plus the producer and the sampler (the servers run in their own JVMs). Plot: \`stage-soak.svg\` (RSS, heap used and external memory; input lag; records/s).`,
      '',
    ].join('\n');
    writeFileSync(path.join(outDir, 'stage-soak.md'), md);
    console.log(md);
    log('wrote benchmarks/results/stage-soak.json, stage-soak.md and stage-soak.svg');
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(`stage-soak: ${error instanceof Error ? error.message : String(error)}`);
    if (error instanceof Error && error.stack) console.error(error.stack);
    process.exit(1);
  },
);
