/**
 * The fast CPU inference engine: ONNX Runtime (onnxruntime-node) running a graph built in memory from the
 * artifact's weights (./graph.ts). Same math as the tfjs model; parity is tested to 1e-4 relative.
 *
 * onnxruntime-node carries its CPU library inside the npm package (bin/napi-v6/<os>/<arch>); its
 * postinstall script only fetches CUDA/TensorRT providers, which this engine does not use. Install with
 * ONNXRUNTIME_NODE_INSTALL=skip where install scripts run, or the script tries to download them and
 * fails offline.
 */
import * as ort from 'onnxruntime-node';
import { writeAdditiveMask, type InjectedSentence, type ModelVersion } from '../../domain/index.ts';
import { ModelError } from '../../errors/index.ts';
import type { BertConfig, InferenceEngine, ModelArtifact } from '../types.ts';
import { BatchBuffers, planBatches, type BatchLimits } from './batching.ts';
import { buildOnnxModel, ONNX_OUTPUT_NAME, type OnnxGraphOptions, type OnnxQuantization } from './graph.ts';

export interface OnnxEngineOptions {
  /** Intra-op threads (ONNX Runtime's thread pool size, the calling thread included). Default 2. */
  threads?: number;
  /** Most padded tokens per batch. Default 8192. */
  maxBatchTokens?: number;
  /** Most sentences per batch. Default 32. */
  maxBatchSize?: number;
  /** 'int8' quantises the dense weights (faster, slightly less exact; see benchmarks/results/engines.md). */
  quantize?: OnnxQuantization;
  /** Graph form (see graph.ts); 'fused' by default. */
  graph?: Omit<OnnxGraphOptions, 'quantize'>;
  /** Let idle pool threads spin for work (faster batches, burns CPU while idle). Default true. */
  spinThreads?: boolean;
  /** Write ONNX Runtime's optimised graph to this path (diagnostics). */
  optimizedModelPath?: string;
  logger?: (line: string) => void;
}

export interface OnnxEngineInfo {
  graphOpTypes: Record<string, number>;
  graphBytes: number;
  buildMs: number;
  sessionMs: number;
  warmupMs: number;
  threads: number;
  limits: BatchLimits;
}

const DEFAULTS = { threads: 2, maxBatchTokens: 8192, maxBatchSize: 32 };

export class OnnxEngine implements InferenceEngine {
  readonly name: string;
  readonly version: ModelVersion;
  readonly labels: readonly string[];
  readonly info: OnnxEngineInfo;
  private readonly buffers = new BatchBuffers();
  /** Runs go one at a time: they share the input buffers and the thread pool. */
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly config: BertConfig,
    private readonly numLabels: number,
    private readonly padId: number,
    artifact: ModelArtifact,
    name: string,
    info: OnnxEngineInfo,
  ) {
    this.name = name;
    this.version = artifact.version;
    this.labels = artifact.config.labels.length > 0 ? artifact.config.labels : Array.from({ length: numLabels }, (_, i) => `LABEL_${i}`);
    this.info = info;
  }

  /** Builds the graph from the artifact's weights, creates the session and warms it up. */
  static async load(artifact: ModelArtifact, options: OnnxEngineOptions = {}): Promise<OnnxEngine> {
    const threads = options.threads ?? DEFAULTS.threads;
    const limits: BatchLimits = {
      maxBatchTokens: options.maxBatchTokens ?? DEFAULTS.maxBatchTokens,
      maxBatchSize: options.maxBatchSize ?? DEFAULTS.maxBatchSize,
    };
    if (!Number.isInteger(threads) || threads < 1) throw new ModelError(`threads must be a positive integer, got ${threads}`);
    if (!Number.isInteger(limits.maxBatchTokens) || limits.maxBatchTokens < 1 || !Number.isInteger(limits.maxBatchSize) || limits.maxBatchSize < 1) {
      throw new ModelError(`maxBatchTokens and maxBatchSize must be positive integers (got ${limits.maxBatchTokens}, ${limits.maxBatchSize})`);
    }
    const config = artifact.config.model;
    const quantize = options.quantize ?? 'none';
    let t0 = performance.now();
    const built = buildOnnxModel(config, artifact.weights, { ...options.graph, quantize });
    const buildMs = performance.now() - t0;
    if (artifact.config.labels.length > 0 && artifact.config.labels.length !== built.numLabels) {
      throw new ModelError(`artifact lists ${artifact.config.labels.length} labels but its classifier has ${built.numLabels} outputs`);
    }
    t0 = performance.now();
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(built.bytes, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
        executionMode: 'sequential',
        logSeverityLevel: 3,
        ...(options.optimizedModelPath ? { optimizedModelFilePath: options.optimizedModelPath } : {}),
        extra: { session: { intra_op: { allow_spinning: options.spinThreads === false ? '0' : '1' } } },
      });
    } catch (error) {
      throw new ModelError(`ONNX Runtime could not load the graph built from ${artifact.config.name}: ${(error as Error).message}`, { cause: error });
    }
    const sessionMs = performance.now() - t0;
    const name = quantize === 'int8' ? 'onnxruntime-cpu-int8' : 'onnxruntime-cpu';
    const info: OnnxEngineInfo = { graphOpTypes: built.opTypes, graphBytes: built.bytes.length, buildMs, sessionMs, warmupMs: 0, threads, limits };
    const engine = new OnnxEngine(session, config, built.numLabels, 0, artifact, name, info);
    t0 = performance.now();
    await engine.warmUp();
    info.warmupMs = performance.now() - t0;
    options.logger?.(
      `${name}: graph ${(built.bytes.length / 1e6).toFixed(1)} MB built in ${buildMs.toFixed(0)} ms, session in ${sessionMs.toFixed(0)} ms, ` +
        `warm-up ${info.warmupMs.toFixed(0)} ms; ${threads} threads, <= ${limits.maxBatchSize} sentences / ${limits.maxBatchTokens} tokens per batch`,
    );
    return engine;
  }

  /** One small batch and one of the longest length: ORT allocates and specialises kernels on first use. */
  private async warmUp(): Promise<void> {
    const sentence = (len: number): InjectedSentence => {
      const z = new Int32Array(len);
      return {
        tokenIds: z,
        softPositions: Int32Array.from({ length: len }, (_, i) => i),
        segmentIds: z,
        branch: new Int32Array(len).fill(-1),
        anchor: new Int32Array(len).fill(-1),
        charStart: new Int32Array(len).fill(-1),
        charEnd: new Int32Array(len).fill(-1),
      };
    };
    await this.classify([sentence(8), sentence(8)]);
    await this.classify([sentence(Math.min(64, this.config.maxPositions))]);
  }

  async classify(sentences: readonly InjectedSentence[]): Promise<Float32Array[]> {
    if (this.disposed) throw new ModelError(`${this.name} engine has been disposed`);
    sentences.forEach((s, i) => this.validate(s, i));
    const results = new Array<Float32Array>(sentences.length);
    const batches = planBatches(
      sentences.map((s) => s.tokenIds.length),
      this.info.limits,
    );
    for (const batch of batches) {
      const members = batch.indices.map((i) => sentences[i]);
      const logits = await this.enqueue(() => this.runBatch(members, batch.seqLen));
      const L = this.numLabels;
      batch.indices.forEach((index, b) => {
        const n = sentences[index].tokenIds.length;
        results[index] = logits.slice(b * batch.seqLen * L, (b * batch.seqLen + n) * L);
      });
    }
    return results;
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async runBatch(sentences: InjectedSentence[], seqLen: number): Promise<Float32Array> {
    if (this.disposed) throw new ModelError(`${this.name} engine was disposed while a request was in flight`);
    const B = sentences.length;
    const input = this.buffers.fill(sentences, seqLen, writeAdditiveMask, this.padId);
    const feeds = {
      input_ids: new ort.Tensor('int64', input.ids, [B, seqLen]),
      soft_positions: new ort.Tensor('int64', input.positions, [B, seqLen]),
      segment_ids: new ort.Tensor('int64', input.segments, [B, seqLen]),
      visibility_mask: new ort.Tensor('float32', input.mask, [B, seqLen, seqLen]),
    };
    let out: ort.InferenceSession.OnnxValueMapType;
    try {
      out = await this.session.run(feeds);
    } catch (error) {
      throw new ModelError(`${this.name} forward pass failed on a batch of ${B} x ${seqLen}: ${(error as Error).message}`, { cause: error });
    }
    // A CPU output owns a plain JS buffer; the caller copies each sentence's rows out of it.
    return out[ONNX_OUTPUT_NAME].data as Float32Array;
  }

  private validate(s: InjectedSentence, index: number): void {
    const n = s.tokenIds.length;
    const problem = (what: string): never => {
      throw new ModelError(`sentence ${index}: ${what}`);
    };
    if (n === 0) problem('has no tokens');
    for (const [name, arr] of [['softPositions', s.softPositions], ['segmentIds', s.segmentIds], ['branch', s.branch], ['anchor', s.anchor]] as const) {
      if (arr.length !== n) problem(`${name} has ${arr.length} entries for ${n} tokens`);
    }
    const { vocabSize, maxPositions, typeVocabSize } = this.config;
    for (let t = 0; t < n; t++) {
      const id = s.tokenIds[t];
      const pos = s.softPositions[t];
      const seg = s.segmentIds[t];
      if (id < 0 || id >= vocabSize) problem(`token id ${id} at ${t} is outside the vocabulary (${vocabSize})`);
      if (pos < 0 || pos >= maxPositions) problem(`soft position ${pos} at ${t} is outside the model's ${maxPositions} positions`);
      if (seg < 0 || seg >= typeVocabSize) problem(`segment id ${seg} at ${t} is outside ${typeVocabSize} segment types`);
    }
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.queue;
    await this.session.release();
  }
}
