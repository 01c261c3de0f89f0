/**
 * Chooses the inference engine for a host. 'auto': TensorFlow.js on tfjs-node-gpu when it loads and sees
 * a GPU; else ONNX Runtime on the CPU (the fastest CPU engine measured here, benchmarks/results/engines.md);
 * else TensorFlow.js on the best CPU backend it can load. The choice and the reason for every candidate
 * passed over are returned and logged, so an operator can see why a host got the engine it got.
 * Each runtime is imported only when it is tried.
 */
import { ModelError } from '../errors/index.ts';
import type { BackendChoice } from './backend.ts';
import type { OnnxQuantization } from './onnx/graph.ts';
import type { InferenceEngine, ModelArtifact } from './types.ts';

export type EngineChoice = 'auto' | 'onnx' | 'tfjs';

export interface EngineSelectOptions {
  engine?: EngineChoice;
  /** CPU threads for ONNX Runtime's intra-op pool (default 2). tfjs-wasm runs single-threaded under Node. */
  threads?: number;
  maxBatchTokens?: number;
  maxBatchSize?: number;
  /** ONNX only: 'int8' quantises the dense weights. */
  quantize?: OnnxQuantization;
  /** tfjs only: which backend ('auto' by default: node-gpu, node, wasm, cpu). */
  tfjsBackend?: BackendChoice;
  logger?: (line: string) => void;
}

export interface EngineSelection {
  engine: InferenceEngine;
  /** Why this engine: one line. */
  reason: string;
  /** Candidates tried before it, each with why it was passed over. */
  skipped: { candidate: string; reason: string }[];
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0].slice(0, 300);
}

async function loadOnnx(artifact: ModelArtifact, options: EngineSelectOptions): Promise<InferenceEngine> {
  const { OnnxEngine } = await import('./onnx/engine.ts');
  return OnnxEngine.load(artifact, {
    threads: options.threads,
    maxBatchTokens: options.maxBatchTokens,
    maxBatchSize: options.maxBatchSize,
    quantize: options.quantize,
    logger: options.logger,
  });
}

async function loadTfjs(artifact: ModelArtifact, options: EngineSelectOptions, backend: BackendChoice): Promise<InferenceEngine> {
  const { TfjsEngine } = await import('./tfjs-engine.ts');
  return TfjsEngine.load(artifact, {
    backend,
    maxBatchTokens: options.maxBatchTokens,
    maxBatchSize: options.maxBatchSize,
    logger: options.logger,
  });
}

/** True when tfjs-node-gpu loads and its backend runs on a GPU device. */
async function gpuBackend(log: (line: string) => void): Promise<{ ok: boolean; reason: string }> {
  const { selectBackend } = await import('./backend.ts');
  try {
    const selection = await selectBackend('node-gpu', () => {});
    if (selection.engineName !== 'tfjs-node-gpu') return { ok: false, reason: `tfjs backend is already ${selection.engineName}` };
    const tf = await import('@tensorflow/tfjs-core');
    // tfjs-node-gpu falls back to the CPU when CUDA finds no device; its backend says which it uses.
    const usesGpu = (tf.backend() as { isUsingGpuDevice?: boolean }).isUsingGpuDevice === true;
    return usesGpu ? { ok: true, reason: 'tfjs-node-gpu is loaded and runs on a GPU' } : { ok: false, reason: 'tfjs-node-gpu loaded but sees no GPU device' };
  } catch (error) {
    const reason = `tfjs-node-gpu unavailable: ${firstLine(error)}`;
    log(`engine: ${reason}`);
    return { ok: false, reason };
  }
}

export async function selectEngine(artifact: ModelArtifact, options: EngineSelectOptions = {}): Promise<EngineSelection> {
  const choice = options.engine ?? 'auto';
  const log = options.logger ?? (() => {});
  const skipped: EngineSelection['skipped'] = [];
  const done = (engine: InferenceEngine, reason: string): EngineSelection => {
    log(`engine: ${engine.name} (${reason})`);
    return { engine, reason, skipped };
  };
  if (choice === 'onnx') return done(await loadOnnx(artifact, options), 'asked for onnx');
  if (choice === 'tfjs') {
    const engine = await loadTfjs(artifact, options, options.tfjsBackend ?? 'auto');
    return done(engine, `asked for tfjs (backend ${options.tfjsBackend ?? 'auto'})`);
  }
  if (choice !== 'auto') throw new ModelError(`unknown engine "${String(choice)}" (use auto, onnx or tfjs)`);

  const gpu = await gpuBackend(log);
  if (gpu.ok) {
    try {
      return done(await loadTfjs(artifact, options, 'node-gpu'), gpu.reason);
    } catch (error) {
      skipped.push({ candidate: 'tfjs-node-gpu', reason: firstLine(error) });
    }
  } else {
    skipped.push({ candidate: 'tfjs-node-gpu', reason: gpu.reason });
  }
  try {
    const engine = await loadOnnx(artifact, options);
    return done(engine, `no GPU backend (${gpu.reason}); ONNX Runtime is the fastest CPU engine measured here`);
  } catch (error) {
    skipped.push({ candidate: 'onnxruntime-cpu', reason: firstLine(error) });
    log(`engine: onnxruntime-cpu unavailable: ${firstLine(error)}`);
  }
  try {
    const engine = await loadTfjs(artifact, options, options.tfjsBackend ?? 'auto');
    return done(engine, `fallback: ${skipped.map((s) => `${s.candidate}: ${s.reason}`).join('; ')}`);
  } catch (error) {
    skipped.push({ candidate: 'tfjs', reason: firstLine(error) });
    throw new ModelError(`no inference engine could be loaded: ${skipped.map((s) => `${s.candidate}: ${s.reason}`).join('; ')}`, { cause: error });
  }
}

/** `selectEngine(...).engine`; the choice and its reason go to `options.logger`. */
export async function createEngine(artifact: ModelArtifact, options: EngineSelectOptions = {}): Promise<InferenceEngine> {
  return (await selectEngine(artifact, options)).engine;
}
