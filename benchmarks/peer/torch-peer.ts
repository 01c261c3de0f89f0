/**
 * Drives the PyTorch peer (torch_peer.py) from the TypeScript benchmark: installs it with setup.sh when
 * needed, hands it the weights (safetensors) and the inputs (int32 arrays + index), and asks it for timed
 * segments over stdin/stdout.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { InjectedSentence } from '../../src/domain/index.ts';
import { writeSafetensors } from '../../src/model/safetensors.ts';
import type { BertConfig, WeightMap } from '../../src/model/types.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export interface PeerTiming {
  batchMs: number[];
  totalMs: number;
}

/**
 * Runs setup.sh (idempotent); returns the interpreter to use and the OpenBLAS kernel set to force (null:
 * OpenBLAS's own choice), or throws with the script's output.
 */
export function setupPeer(log: (line: string) => void): { python: string; description: string; openblasCoreType: string | null } {
  const r = spawnSync('bash', [path.join(HERE, 'setup.sh')], { encoding: 'utf8', timeout: 900_000 });
  if (r.status !== 0) throw new Error(`benchmarks/peer/setup.sh failed (${r.status}): ${(r.stderr || r.stdout).trim().slice(-500)}`);
  const lines = r.stdout.trim().split('\n');
  const python = lines[lines.length - 1];
  const coreLine = lines[lines.length - 2] ?? '';
  if (!coreLine.startsWith('OPENBLAS_CORETYPE=')) throw new Error(`benchmarks/peer/setup.sh: unexpected output (no OPENBLAS_CORETYPE line): ${r.stdout.trim().slice(-500)}`);
  const openblasCoreType = coreLine.slice('OPENBLAS_CORETYPE='.length) || null;
  const description = lines[lines.length - 3] ?? '';
  log(`peer: ${description}`);
  return { python, description, openblasCoreType };
}

export class TorchPeer {
  private readonly lines: AsyncIterator<string>;
  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    readonly info: { torch: string; threads: number },
  ) {
    this.lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  }

  static async start(options: {
    python: string;
    workDir: string;
    config: BertConfig;
    weights: WeightMap;
    /** Use this safetensors file instead of writing the weights out. */
    weightsFile: string | null;
    sentences: readonly InjectedSentence[];
    threads: number;
    /** OpenMP's idle-thread policy: 'spin' is libgomp's default (OMP_WAIT_POLICY unset). */
    waitPolicy?: 'spin' | 'passive';
    /** OpenBLAS kernel set to force (setupPeer's choice); null leaves it to OpenBLAS. */
    openblasCoreType?: string | null;
  }): Promise<TorchPeer> {
    fs.mkdirSync(options.workDir, { recursive: true });
    let weightsFile = options.weightsFile;
    if (!weightsFile) {
      weightsFile = path.join(options.workDir, 'weights.safetensors');
      fs.writeFileSync(weightsFile, writeSafetensors(options.weights, { dtype: 'F32' }));
    }
    const configFile = path.join(options.workDir, 'config.json');
    fs.writeFileSync(configFile, JSON.stringify(options.config));
    const total = options.sentences.reduce((a, s) => a + 5 * s.tokenIds.length, 0);
    const data = new Int32Array(total);
    const index: [number, number][] = [];
    let at = 0;
    for (const s of options.sentences) {
      const n = s.tokenIds.length;
      index.push([at, n]);
      for (const arr of [s.tokenIds, s.softPositions, s.segmentIds, s.branch, s.anchor]) {
        data.set(arr, at);
        at += n;
      }
    }
    const inputs = path.join(options.workDir, 'inputs.bin');
    const indexFile = path.join(options.workDir, 'index.json');
    fs.writeFileSync(inputs, new Uint8Array(data.buffer));
    fs.writeFileSync(indexFile, JSON.stringify(index));
    const threads = String(options.threads);
    const child = spawn(
      options.python,
      [path.join(HERE, 'torch_peer.py'), '--weights', weightsFile, '--config', configFile, '--inputs', inputs, '--index', indexFile, '--threads', threads],
      {
        env: {
          ...process.env,
          OMP_NUM_THREADS: threads,
          OPENBLAS_NUM_THREADS: threads,
          MKL_NUM_THREADS: threads,
          ...(options.waitPolicy === 'passive' ? { OMP_WAIT_POLICY: 'PASSIVE' } : {}),
          ...(options.openblasCoreType ? { OPENBLAS_CORETYPE: options.openblasCoreType } : {}),
        },
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const peer = new TorchPeer(child, { torch: '', threads: 0 });
    const first = await peer.lines.next();
    if (first.done) throw new Error(`PyTorch peer exited before it was ready: ${stderr.trim()}`);
    const ready = JSON.parse(first.value) as { torch: string; threads: number };
    Object.assign(peer.info, { torch: ready.torch, threads: ready.threads });
    return peer;
  }

  async request<T>(message: Record<string, unknown>): Promise<T> {
    this.child.stdin.write(JSON.stringify(message) + '\n');
    const next = await this.lines.next();
    if (next.done) throw new Error('PyTorch peer closed its output');
    const reply = JSON.parse(next.value) as T & { error?: string };
    if (reply.error) throw new Error(`PyTorch peer: ${reply.error}`);
    return reply;
  }

  run(batches: number[][]): Promise<PeerTiming> {
    return this.request<PeerTiming>({ cmd: 'run', batches });
  }

  async logits(indices: number[], out: string, labels: number, lengths: number[]): Promise<Float32Array[]> {
    await this.request({ cmd: 'logits', indices, out });
    const buf = fs.readFileSync(out);
    const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    const result: Float32Array[] = [];
    let at = 0;
    for (const n of lengths) {
      result.push(all.slice(at, at + n * labels));
      at += n * labels;
    }
    return result;
  }

  async matmulGflops(n = 2048): Promise<number> {
    return (await this.request<{ gflops: number }>({ cmd: 'matmul', n, runs: 5 })).gflops;
  }

  async maxRssMb(): Promise<number> {
    return (await this.request<{ maxRssKb: number }>({ cmd: 'rss' })).maxRssKb / 1024;
  }

  async close(): Promise<void> {
    try {
      await this.request({ cmd: 'quit' });
    } catch {
      // already gone
    }
    this.child.kill();
  }
}
