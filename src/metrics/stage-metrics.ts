/**
 * The stage's Prometheus metrics on an explicit registry (never the global one, so several stages in
 * one process, as in tests, do not collide). Label values are bounded: stage names, error classes,
 * topic/partition, model version and engine; never document text, ids or patient references.
 * Children of labelled metrics are bound once and reused on the hot path.
 */
import client from 'prom-client';

/** The pipeline's stages (mirrors the pipeline's StageName). */
export const STAGES = ['decode', 'segment', 'match', 'kg', 'inject', 'infer', 'assemble', 'publish'] as const;
export type Stage = (typeof STAGES)[number];

/** Dead-letter error classes (mirrors the pipeline's list); anything else is counted as "Other". */
export const ERROR_CLASSES = [
  'SchemaError',
  'InvalidDocumentError',
  'EmptyTextError',
  'TextTooLongError',
  'InvalidTextError',
  'InferenceError',
  'DocumentProcessingError',
  'OutputTooLargeError',
  'Other',
] as const;

const SWAP_OUTCOMES = ['installed', 'refused', 'unchanged'] as const;

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const E2E_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export interface PromStageMetricsOptions {
  prefix?: string;
  /** Also export Node.js process metrics (CPU, memory, event-loop lag). */
  processMetrics?: boolean;
}

/** Implements the pipeline's StageMetrics port on prom-client. */
export class PromStageMetrics {
  readonly registry: client.Registry;
  private readonly recordsInCounter: client.Counter;
  private readonly recordsOutCounter: client.Counter;
  private readonly deadLetterChildren = new Map<string, client.Counter.Internal>();
  private readonly batchRecords: client.Histogram;
  private readonly batchBytes: client.Histogram;
  private readonly batchSeconds: client.Histogram;
  private readonly stageChildren = new Map<string, client.Histogram.Internal<string>>();
  private readonly e2e: client.Histogram;
  private readonly cacheHits: client.Counter;
  private readonly cacheMisses: client.Counter;
  private readonly degradedCounter: client.Counter;
  private readonly kgUp: client.Gauge;
  private readonly lag: client.Gauge;
  private readonly lagChildren = new Map<string, client.Gauge.Internal<string>>();
  private readonly modelInfo: client.Gauge;
  private readonly swapChildren = new Map<string, client.Counter.Internal>();
  private readonly aborted: client.Counter;
  private readonly ready: client.Gauge;
  private readinessSource: (() => { ready: boolean; checks: Record<string, boolean> }) | null = null;
  private servedKey: { version: string; engine: string } | null = null;

  constructor(options: PromStageMetricsOptions = {}) {
    const p = options.prefix ?? 'rmbert_';
    const registry = (this.registry = new client.Registry());
    if (options.processMetrics ?? true) client.collectDefaultMetrics({ register: registry, prefix: p });

    this.recordsInCounter = new client.Counter({ name: `${p}records_in_total`, help: 'Input records read', registers: [registry] });
    this.recordsOutCounter = new client.Counter({ name: `${p}records_out_total`, help: 'EntityAnnotations records published', registers: [registry] });
    const dead = new client.Counter({ name: `${p}records_dead_lettered_total`, help: 'Input records sent to the dead-letter topic, by error class', labelNames: ['error_class'], registers: [registry] });
    for (const c of ERROR_CLASSES) {
      // zero() makes every bound series visible from the start, so dashboards and rate() see it before the first event.
      dead.inc({ error_class: c }, 0);
      this.deadLetterChildren.set(c, dead.labels({ error_class: c }));
    }

    this.batchRecords = new client.Histogram({ name: `${p}micro_batch_records`, help: 'Records per micro-batch', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], registers: [registry] });
    this.batchBytes = new client.Histogram({ name: `${p}micro_batch_bytes`, help: 'Record bytes per micro-batch', buckets: client.exponentialBuckets(256, 4, 9), registers: [registry] });
    this.batchSeconds = new client.Histogram({ name: `${p}micro_batch_seconds`, help: 'Wall time of one micro-batch, decode to commit', buckets: LATENCY_BUCKETS, registers: [registry] });
    const stage = new client.Histogram({ name: `${p}stage_seconds`, help: 'Wall time per pipeline stage per micro-batch', labelNames: ['stage'], buckets: LATENCY_BUCKETS, registers: [registry] });
    for (const s of STAGES) {
      stage.zero({ stage: s });
      this.stageChildren.set(s, stage.labels({ stage: s }));
    }
    this.e2e = new client.Histogram({ name: `${p}end_to_end_seconds`, help: 'From the input record timestamp to the commit of its output', buckets: E2E_BUCKETS, registers: [registry] });

    this.cacheHits = new client.Counter({ name: `${p}kg_cache_hits_total`, help: 'Concept names answered from the knowledge cache', registers: [registry] });
    this.cacheMisses = new client.Counter({ name: `${p}kg_cache_misses_total`, help: 'Concept names not in the knowledge cache', registers: [registry] });
    this.degradedCounter = new client.Counter({ name: `${p}kg_degraded_total`, help: 'Output records marked kgDegraded (graph store unreachable, knowledge not cached)', registers: [registry] });
    this.kgUp = new client.Gauge({ name: `${p}kg_available`, help: '1 while the graph store answers, 0 while the stage serves cached knowledge only', registers: [registry] });
    this.lag = new client.Gauge({ name: `${p}consumer_lag`, help: 'Records behind the high watermark, per input partition', labelNames: ['topic', 'partition'], registers: [registry] });
    this.modelInfo = new client.Gauge({ name: `${p}model_info`, help: 'The model serving (value 1), with its version and inference engine/backend', labelNames: ['version', 'engine'], registers: [registry] });
    const swaps = new client.Counter({ name: `${p}model_swaps_total`, help: 'Model swap requests by outcome', labelNames: ['outcome'], registers: [registry] });
    for (const o of SWAP_OUTCOMES) {
      swaps.inc({ outcome: o }, 0);
      this.swapChildren.set(o, swaps.labels({ outcome: o }));
    }
    this.aborted = new client.Counter({ name: `${p}transactions_aborted_total`, help: 'Output transactions aborted (their input is processed again)', registers: [registry] });
    // rmbert_ready and rmbert_readiness_check are read at scrape time from the same function that
    // answers /readyz (useReadiness), so the two can never disagree.
    const ready: client.Gauge = new client.Gauge({
      name: `${p}ready`,
      help: '1 when the stage can do its work (the same answer as /readyz)',
      registers: [registry],
      collect: () => {
        if (this.readinessSource) ready.set(this.readinessSource().ready ? 1 : 0);
      },
    });
    this.ready = ready;
    const checks: client.Gauge = new client.Gauge({
      name: `${p}readiness_check`,
      help: 'Each readiness check of /readyz: 1 passing, 0 failing (e.g. transactionsCommitting 0 when output transactions keep aborting)',
      labelNames: ['check'],
      registers: [registry],
      collect: () => {
        if (!this.readinessSource) return;
        checks.reset();
        for (const [check, ok] of Object.entries(this.readinessSource().checks)) checks.set({ check }, ok ? 1 : 0);
      },
    });
  }

  recordsIn(count: number): void {
    this.recordsInCounter.inc(count);
  }
  recordsOut(count: number): void {
    this.recordsOutCounter.inc(count);
  }
  deadLettered(errorClass: string, count = 1): void {
    (this.deadLetterChildren.get(errorClass) ?? this.deadLetterChildren.get('Other')!).inc(count);
  }
  microBatch(records: number, bytes: number, seconds: number): void {
    this.batchRecords.observe(records);
    this.batchBytes.observe(bytes);
    this.batchSeconds.observe(seconds);
  }
  stageSeconds(stage: string, seconds: number): void {
    this.stageChildren.get(stage)?.observe(seconds);
  }
  endToEndSeconds(seconds: number): void {
    this.e2e.observe(seconds);
  }
  kgCache(hits: number, misses: number): void {
    if (hits > 0) this.cacheHits.inc(hits);
    if (misses > 0) this.cacheMisses.inc(misses);
  }
  kgDegraded(documents: number): void {
    this.degradedCounter.inc(documents);
  }
  kgAvailable(up: boolean): void {
    this.kgUp.set(up ? 1 : 0);
  }
  consumerLag(topic: string, partition: number, lag: number): void {
    const key = `${topic}\u0000${partition}`;
    let child = this.lagChildren.get(key);
    if (!child) this.lagChildren.set(key, (child = this.lag.labels({ topic, partition: String(partition) })));
    child.set(Math.max(0, lag));
  }
  modelServed(version: string, engine: string): void {
    if (this.servedKey) this.modelInfo.remove(this.servedKey);
    this.servedKey = { version, engine };
    this.modelInfo.set(this.servedKey, 1);
  }
  modelSwap(outcome: 'installed' | 'refused' | 'unchanged'): void {
    this.swapChildren.get(outcome)?.inc();
  }
  transactionAborted(): void {
    this.aborted.inc();
  }
  /** Without a readiness source (useReadiness), rmbert_ready is what was last set here. */
  setReady(ready: boolean): void {
    this.ready.set(ready ? 1 : 0);
  }
  /** Makes rmbert_ready and rmbert_readiness_check read `source` at every scrape. */
  useReadiness(source: () => { ready: boolean; checks: Record<string, boolean> }): void {
    this.readinessSource = source;
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
