/**
 * Masked-LM pretraining throughput: the PyTorch fast path (python/rmbert_train/pretrain.py) against the
 * TensorFlow.js-on-wasm trainer (`rmbert pretrain --backend wasm`), same model shape (4 layers, hidden
 * 256, 4 heads, feed-forward 1024), sequences of 128, batches of 32, interleaved in one run (wasm, torch 1
 * thread, torch 2 threads, then again) because this machine's speed drifts over minutes.
 *
 *   node --import tsx benchmarks/training-speed.ts [--rounds 2] [--seconds 90] [--warmup 20] [--no-torch2]
 *
 * Each run trains from scratch into its own temporary folders for --seconds of its own training clock and
 * is then killed (nothing it wrote is kept); the steady-state tokens/s comes from its log lines after the
 * first --warmup seconds (start-up, the wasm kernels' first calls, PyTorch's first held-out evaluation).
 * The child's CPU time (/proc/<pid>/stat) over the same window gives tokens per CPU-second, the figure
 * that does not depend on how much of a core the shared machine left it.
 *
 * The two trainers do not compute exactly the same step: PyTorch trains over the pruned vocabulary (the
 * ~11 k ids the corpora use: embedding and MLM rows), tfjs over the full 21,128-row embedding with its MLM
 * softmax restricted to the corpus ids; PyTorch masks padding in attention, tfjs attends to all positions.
 *
 * Writes benchmarks/results/training-speed.{json,md}.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadAverage, machineDescription } from './engines-common.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '90' },
    warmup: { type: 'string', default: '20' },
    'no-torch2': { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
const withTorch2 = !values['no-torch2'];
if (!(rounds >= 1 && seconds > warmup && warmup >= 0)) throw new Error('need --rounds >= 1 and --seconds > --warmup >= 0');

const root = path.resolve(import.meta.dirname, '..');
const python = path.join(root, '.venv/bin/python');
const SHAPE = { layers: 4, hidden: 256, heads: 4, intermediate: 1024, seqLen: 128, batchSize: 32 };
const MAX_STEPS = 1_000_000; // runs are stopped by time, never by steps
const STARTUP_LIMIT_S = 240; // a run that has not logged its first step after this long is abandoned
const CLK_TCK = 100;
/** This script and the runs it started: never counted as other load. */
const ours = new Set<number>([process.pid]);

type Variant = 'tfjs-wasm' | 'torch-1' | 'torch-2';

/** One log observation: tokens trained and the trainer's own training clock, plus when we saw it. */
interface Point {
  tokens: number;
  trainSeconds: number;
  wallMs: number;
  cpuSeconds: number;
  /** PyTorch: tokens/s of the log window that ends here. */
  windowTps?: number;
}

interface RunResult {
  variant: Variant;
  round: number;
  command: string;
  loadBefore: number[];
  loadAfter: number[];
  startupSeconds: number;
  trainedSeconds: number;
  measuredSeconds: number;
  measuredTokens: number;
  tokensPerSecond: number;
  cpuShare: number;
  tokensPerCpuSecond: number;
  windows: number[];
  backgroundPretrainingRunning: boolean;
  otherBusyProcesses: { pid: number; command: string; cpuShare: number }[];
  notes: string[];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** utime + stime of a process (all its threads), seconds; NaN once it is gone. */
function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}

/** CPU seconds of every process now, to tell afterwards which other processes shared the machine. */
function processSnapshot(): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const t = cpuSecondsOf(Number(name));
    if (Number.isFinite(t)) out.set(Number(name), t);
  }
  return out;
}

function backgroundPretrainingPids(): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (commandOf(pid).includes('rmbert_train.pretrain') && !ours.has(pid)) pids.push(pid);
  }
  return pids;
}


function cpuModel(): string {
  const info = readFileSync('/proc/cpuinfo', 'utf8');
  const field = (key: string) => new RegExp(`^${key}\\s*:\\s*(.*)$`, 'm').exec(info)?.[1]?.trim() ?? '?';
  return `${field('model name')} (${field('vendor_id')}, family ${field('cpu family')} model ${field('model')})`;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function readLines(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) return [];
  const out: Record<string, unknown>[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line being written right now; the next poll reads it whole
    }
  }
  return out;
}

function spawnVariant(variant: Variant, out: string, out2: string): { child: ChildProcess; logFile: string; command: string } {
  const s = SHAPE;
  if (variant === 'tfjs-wasm') {
    const args = [
      '--import', 'tsx', 'src/cli/main.ts', 'pretrain',
      '--layers', `${s.layers}`, '--hidden', `${s.hidden}`, '--heads', `${s.heads}`, '--intermediate', `${s.intermediate}`,
      '--seq-len', `${s.seqLen}`, '--batch-size', `${s.batchSize}`, '--max-steps', `${MAX_STEPS}`, '--backend', 'wasm',
      '--out', out, '--artifact', out2, '--no-progress', '--checkpoint-minutes', '1000',
    ];
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    return { child, logFile: path.join(out, 'train-log.jsonl'), command: `node ${args.join(' ')}` };
  }
  const threads = variant === 'torch-1' ? 1 : 2;
  const args = [
    '-m', 'rmbert_train.pretrain', '--corpus', '../.cache/corpus', '--out', out, '--commit-dir', out2, '--fresh',
    '--layers', `${s.layers}`, '--hidden', `${s.hidden}`, '--heads', `${s.heads}`, '--intermediate', `${s.intermediate}`,
    '--batch-size', `${s.batchSize}`, '--max-steps', `${MAX_STEPS}`, '--threads', `${threads}`,
    '--log-seconds', '10', '--eval-minutes', '1000', '--checkpoint-minutes', '1000',
  ];
  const child = spawn(python, args, { cwd: path.join(root, 'python'), stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' } });
  return { child, logFile: path.join(out2, 'log.jsonl'), command: `cd python && OMP_WAIT_POLICY=PASSIVE ../.venv/bin/python ${args.join(' ')}` };
}

/**
 * The run's training clock so far, from its log. tfjs logs every step with its training clock; PyTorch logs
 * windows of ~10 s with the window's tokens/s, so a window lasts (tokens in it) / (its tokens/s) and the
 * windows follow one another from the start of training (the first includes the held-out evaluation).
 */
function pointsOf(variant: Variant, lines: Record<string, unknown>[]): { tokens: number; trainSeconds: number; windowTps?: number }[] {
  if (variant === 'tfjs-wasm') {
    return lines.map((l) => ({ tokens: Number(l.tokensSeen), trainSeconds: Number(l.elapsedSeconds) }));
  }
  const out: { tokens: number; trainSeconds: number; windowTps?: number }[] = [];
  let clock = 0;
  let tokens = 0;
  for (const l of lines) {
    if (l.event !== 'train') continue;
    const seen = Number(l.tokens_seen);
    const tps = Number(l.tokens_per_second);
    clock += (seen - tokens) / tps;
    tokens = seen;
    out.push({ tokens, trainSeconds: clock, windowTps: tps });
  }
  return out;
}

async function runOnce(variant: Variant, round: number): Promise<RunResult> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), `rmbert-trainspeed-${variant}-`));
  const out = path.join(tmp, 'out');
  const out2 = path.join(tmp, 'out2');
  const notes: string[] = [];
  const loadBefore = loadAverage();
  const background = backgroundPretrainingPids();
  const before = processSnapshot();
  const wallBefore = performance.now();
  const { child, logFile, command } = spawnVariant(variant, out, out2);
  const pid = child.pid!;
  ours.add(pid);
  const stderrTail: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) if (line.trim()) stderrTail.push(line);
    while (stderrTail.length > 40) stderrTail.shift();
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exited = false;
  child.on('exit', () => (exited = true));

  // Each log point, stamped with the wall time and the child's CPU time of the poll that first saw it.
  const seen: Point[] = [];
  let firstLogMs = Number.NaN;
  try {
    for (;;) {
      await sleep(250);
      const wallMs = performance.now();
      const cpu = cpuSecondsOf(pid);
      const points = pointsOf(variant, readLines(logFile));
      for (const p of points.slice(seen.length)) seen.push({ ...p, wallMs, cpuSeconds: cpu });
      if (seen.length && Number.isNaN(firstLogMs)) firstLogMs = wallMs;
      const last = seen[seen.length - 1];
      if (last && last.trainSeconds >= seconds) break;
      if (exited) {
        notes.push(`exited early: ${stderrTail.slice(-5).join(' | ')}`);
        break;
      }
      if (!seen.length && (wallMs - wallBefore) / 1000 > STARTUP_LIMIT_S) {
        notes.push(`no training step logged within ${STARTUP_LIMIT_S} s: ${stderrTail.slice(-5).join(' | ')}`);
        break;
      }
    }
  } finally {
    if (!exited) child.kill('SIGKILL');
    while (!exited) await sleep(50);
  }
  const wallAfter = performance.now();
  const after = processSnapshot();
  const loadAfter = loadAverage();
  await rm(tmp, { recursive: true, force: true });

  const runSeconds = (wallAfter - wallBefore) / 1000;
  const otherBusyProcesses: RunResult['otherBusyProcesses'] = [];
  for (const [p, t] of after) {
    if (ours.has(p)) continue;
    const share = (t - (before.get(p) ?? 0)) / runSeconds;
    if (share >= 0.1) otherBusyProcesses.push({ pid: p, command: commandOf(p).slice(0, 160), cpuShare: Math.round(share * 100) / 100 });
  }
  otherBusyProcesses.sort((a, b) => b.cpuShare - a.cpuShare);

  const steady = seen.filter((p, i) => (variant === 'tfjs-wasm' ? p.trainSeconds >= warmup : i > 0 && seen[i - 1].trainSeconds >= warmup));
  // For PyTorch the window ending at point i started at point i-1: steady windows start after the warm-up.
  const base = variant === 'tfjs-wasm' ? steady[0] : seen[seen.indexOf(steady[0]) - 1];
  const last = seen[seen.length - 1];
  let tokensPerSecond = Number.NaN;
  let cpuShare = Number.NaN;
  let measuredSeconds = 0;
  let measuredTokens = 0;
  if (base && last && last !== base) {
    measuredTokens = last.tokens - base.tokens;
    measuredSeconds = last.trainSeconds - base.trainSeconds;
    tokensPerSecond = measuredTokens / measuredSeconds;
    cpuShare = (last.cpuSeconds - base.cpuSeconds) / ((last.wallMs - base.wallMs) / 1000);
  } else {
    notes.push('too few log points after the warm-up to measure');
  }
  const windows =
    variant === 'tfjs-wasm'
      ? seen.slice(1).map((p, i) => Math.round((p.tokens - seen[i].tokens) / (p.trainSeconds - seen[i].trainSeconds)))
      : seen.map((p) => Math.round(p.windowTps ?? Number.NaN));
  const startupLine = stderrTail.find((l) => l.includes('parameters')) ?? stderrTail.find((l) => l.startsWith('corpus:'));
  if (startupLine) notes.push(startupLine.trim());
  return {
    variant,
    round,
    command,
    loadBefore,
    loadAfter,
    startupSeconds: Math.round((firstLogMs - wallBefore) / 100) / 10,
    trainedSeconds: Math.round((last?.trainSeconds ?? 0) * 10) / 10,
    measuredSeconds: Math.round(measuredSeconds * 10) / 10,
    measuredTokens,
    tokensPerSecond: Math.round(tokensPerSecond * 10) / 10,
    cpuShare: Math.round(cpuShare * 1000) / 1000,
    tokensPerCpuSecond: Math.round((tokensPerSecond / cpuShare) * 10) / 10,
    windows,
    backgroundPretrainingRunning: background.length > 0,
    otherBusyProcesses,
    notes,
  };
}

const variants: Variant[] = withTorch2 ? ['tfjs-wasm', 'torch-1', 'torch-2'] : ['tfjs-wasm', 'torch-1'];
const runs: RunResult[] = [];
const backgroundAtStart = backgroundPretrainingPids().map((p) => ({ pid: p, command: commandOf(p) }));
const started = performance.now();
for (let round = 1; round <= rounds; round++) {
  for (const variant of variants) {
    const r = await runOnce(variant, round);
    runs.push(r);
    console.error(
      `round ${round} ${variant}: ${r.tokensPerSecond} tokens/s (${r.tokensPerCpuSecond} per CPU-s, CPU share ${r.cpuShare}) over ${r.measuredSeconds} s; load ${r.loadBefore[0]} -> ${r.loadAfter[0]}; start-up ${r.startupSeconds} s${r.notes.length ? `; ${r.notes.join('; ')}` : ''}`,
    );
  }
}
const totalMinutes = (performance.now() - started) / 60000;

const of = (v: Variant) => runs.filter((r) => r.variant === v);
const perRound = (key: 'tokensPerSecond' | 'tokensPerCpuSecond') =>
  Array.from({ length: rounds }, (_, i) => {
    const w = of('tfjs-wasm').find((r) => r.round === i + 1)?.[key];
    const t = of('torch-1').find((r) => r.round === i + 1)?.[key];
    return w && t ? t / w : Number.NaN;
  }).filter(Number.isFinite);
const round2 = (x: number) => Math.round(x * 100) / 100;
const summary: Record<string, number> = {
  wasmTokensPerSecond: round2(median(of('tfjs-wasm').map((r) => r.tokensPerSecond))),
  torch1TokensPerSecond: round2(median(of('torch-1').map((r) => r.tokensPerSecond))),
  ...(withTorch2 ? { torch2TokensPerSecond: round2(median(of('torch-2').map((r) => r.tokensPerSecond))) } : {}),
  fastOverWasm: round2(median(perRound('tokensPerSecond'))),
  wasmTokensPerCpuSecond: round2(median(of('tfjs-wasm').map((r) => r.tokensPerCpuSecond))),
  torch1TokensPerCpuSecond: round2(median(of('torch-1').map((r) => r.tokensPerCpuSecond))),
  ...(withTorch2 ? { torch2TokensPerCpuSecond: round2(median(of('torch-2').map((r) => r.tokensPerCpuSecond))) } : {}),
  fastOverWasmPerCpuSecond: round2(median(perRound('tokensPerCpuSecond'))),
};

const machine = `${machineDescription()}; /proc/cpuinfo: ${cpuModel()}`;
const command = `node --import tsx benchmarks/training-speed.ts --rounds ${rounds} --seconds ${seconds} --warmup ${warmup}${withTorch2 ? '' : ' --no-torch2'}`;
const result = {
  command,
  machine,
  date: new Date().toISOString(),
  summary,
  shape: { ...SHAPE, tfjsVocabularyRows: 21128, torchVocabularyRows: 'pruned to the corpus ids (vocab-used.json)' },
  sharing: {
    backgroundPretraining: backgroundAtStart,
    note:
      'The long PyTorch pretraining job (python -m rmbert_train.pretrain, 1 thread, meant to have one of the 2 cores) ran during every run; ' +
      'otherBusyProcesses lists, per run, every other process that used at least 10 % of a core meanwhile (the background job among them, with the share it actually got). ' +
      'Wall tokens/s therefore reflect a shared machine; tokens per CPU-second (CPU time of the trainer process over the measured window) do not depend on the share of a core it got.',
  },
  method:
    `Runs interleaved (${variants.join(', ')}) x ${rounds} rounds; each trains from random weights for ${seconds} s of its own training clock, then is killed. ` +
    `Steady state: tokens between the first log point after ${warmup} s and the last one, over the trainer's own clock for that span ` +
    '(tfjs: per-step log with its elapsed training seconds; PyTorch: 10-s log windows, each timed as its tokens / its tokens/s). ' +
    'fastOverWasm is the median over rounds of (PyTorch 1 thread / tfjs-wasm) of the same round.',
  differences:
    'Same shape (4 layers, hidden 256, 4 heads, feed-forward 1024, 128 tokens, batch 32, 15 % masking, AdamW, clip 1). ' +
    'PyTorch trains over the pruned vocabulary (embedding and MLM output rows for the ~11 k ids the corpora use, as designed; export expands them back); ' +
    'tfjs keeps the full 21,128-row embedding and restricts its MLM softmax to the corpus ids. PyTorch masks padding in attention; tfjs attends to all positions. ' +
    'tfjs-wasm runs one thread (Node has no wasm pthreads here).',
  totalMinutes: round2(totalMinutes),
  runs,
};
const resultsDir = path.join(root, 'benchmarks/results');
await mkdir(resultsDir, { recursive: true });
await writeFile(path.join(resultsDir, 'training-speed.json'), JSON.stringify(result, null, 1) + '\n');

const fmt = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en') : '-');
const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' / ');
const backgroundShares = runs.flatMap((r) => r.otherBusyProcesses.filter((p) => p.command.includes('rmbert_train.pretrain')).map((p) => p.cpuShare));
const loads = runs.flatMap((r) => [r.loadBefore[0], r.loadAfter[0]]);
/** "a-b %" of a list of fractions (or, with unit '', "a-b" of plain numbers). */
const shareRange = (xs: readonly number[], unit = ' %'): string => {
  const ok = xs.filter(Number.isFinite);
  if (!ok.length) return '-';
  const f = (x: number) => (unit ? `${Math.round(x * 100)}` : x.toFixed(1));
  return `${f(Math.min(...ok))}-${f(Math.max(...ok))}${unit}`;
};
const md = [
  `# Pretraining throughput: PyTorch fast path vs TensorFlow.js on wasm`,
  '',
  `Machine: ${machine}. Command: \`${command}\`. Date: ${result.date}.`,
  '',
  `Model: 4 layers, hidden 256, 4 heads, feed-forward 1024; 128 tokens per sequence, batches of 32 (4,096 tokens a step); masked-LM from random weights.`,
  '',
  '| trainer | tokens/s (median) | tokens per CPU-second (median) |',
  '|---|---|---|',
  `| tfjs-wasm (1 thread) | ${fmt(summary.wasmTokensPerSecond)} | ${fmt(summary.wasmTokensPerCpuSecond)} |`,
  `| PyTorch, 1 thread | ${fmt(summary.torch1TokensPerSecond)} | ${fmt(summary.torch1TokensPerCpuSecond)} |`,
  ...(withTorch2 ? [`| PyTorch, 2 threads | ${fmt(summary.torch2TokensPerSecond)} | ${fmt(summary.torch2TokensPerCpuSecond)} |`] : []),
  '',
  `**PyTorch (1 thread) / tfjs-wasm: ${summary.fastOverWasm.toFixed(1)}x** in tokens/s (median over rounds of the same-round ratio); ${summary.fastOverWasmPerCpuSecond.toFixed(1)}x per CPU-second.`,
  '',
  '| round | trainer | tokens/s | CPU share | tokens per CPU-s | measured s | load before (1/5/15 min) | load after | other busy processes |',
  '|---|---|---|---|---|---|---|---|---|',
  ...runs.map(
    (r) =>
      `| ${r.round} | ${r.variant} | ${fmt(r.tokensPerSecond)} | ${Number.isFinite(r.cpuShare) ? `${Math.round(r.cpuShare * 100)}%` : '-'} | ${fmt(r.tokensPerCpuSecond)} | ${r.measuredSeconds} | ${load(r.loadBefore)} | ${load(r.loadAfter)} | ${r.otherBusyProcesses.map((p) => `${p.command.split(' ').slice(0, 3).join(' ').replace(/\|/g, '/')} (${Math.round(p.cpuShare * 100)}%)`).join('; ') || 'none'} |`,
  ),
  '',
  `Shared machine: the background PyTorch pretraining job (1 thread) ${backgroundAtStart.length ? `ran throughout (it got ${shareRange(backgroundShares)} of a core during the runs)` : 'was not running at the start'}; ` +
    `the other busy processes are listed per run; 1-minute load average ${shareRange(loads, '')} on 2 cores; each trainer got ${shareRange(runs.map((r) => r.cpuShare))} of a core. ` +
    `Tokens per CPU-second (the trainer's own CPU time over the measured window) are the figure least affected by this sharing. Steady state is measured after the first ${warmup} s of each run's training clock. ` +
    'PyTorch trains over the pruned vocabulary (about 11 k embedding/MLM rows, as designed); tfjs over the full 21,128-row embedding with its MLM softmax over the corpus ids; PyTorch masks padding in attention, tfjs does not. ' +
    'With 2 threads PyTorch competes with the other jobs for both cores, so its figure understates what 2 free cores give.',
  '',
].join('\n');
await writeFile(path.join(resultsDir, 'training-speed.md'), md);
console.log(md);
