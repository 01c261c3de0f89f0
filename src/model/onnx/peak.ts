/**
 * The machine's matmul peak as ONNX Runtime sees it: a one-node MatMul graph on n x n float32 inputs,
 * timed over a few runs. Benchmarks report model throughput as a fraction of it.
 */
import * as ort from 'onnxruntime-node';
import { DataType, GraphBuilder } from './proto.ts';

export async function onnxMatMulPeakGflops(options: { n?: number; threads?: number; runs?: number } = {}): Promise<number> {
  const n = options.n ?? 2048;
  const runs = options.runs ?? 5;
  const g = new GraphBuilder();
  g.input('a', DataType.FLOAT, [n, n]);
  g.input('b', DataType.FLOAT, [n, n]);
  g.node('MatMul', ['a', 'b'], { outputs: ['c'] });
  g.output('c', DataType.FLOAT, [n, n]);
  const session = await ort.InferenceSession.create(g.encode('matmul', { name: 'rmbert-stream', version: '1' }), {
    intraOpNumThreads: options.threads ?? 2,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  });
  try {
    const data = Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
    const feeds = { a: new ort.Tensor('float32', data, [n, n]), b: new ort.Tensor('float32', data, [n, n]) };
    (await session.run(feeds)).c.dispose();
    let best = Infinity;
    for (let r = 0; r < runs; r++) {
      const t0 = performance.now();
      const out = await session.run(feeds);
      best = Math.min(best, performance.now() - t0);
      out.c.dispose();
    }
    return (2 * n ** 3) / (best / 1000) / 1e9;
  } finally {
    await session.release();
  }
}
