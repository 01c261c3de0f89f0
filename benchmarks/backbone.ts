/**
 * Where the backbone's pretraining stands: tokens seen, held-out masked-LM loss and top-1 accuracy on the
 * first 300 sentences of MSRA's test part (never in any training corpus), the same figures for the
 * shipped backbone (models/backbone) and for unigram frequencies on the same masked tokens, the
 * training throughput ratio of the PyTorch path over tfjs-wasm (benchmarks/results/training-speed.json),
 * and the training curve.
 *
 *   node --import tsx benchmarks/backbone.ts [--checkpoint models/backbone-pretraining] [--corpus .cache/corpus]
 *
 * Reads the committed pretraining checkpoint (python/rmbert_train/pretrain.py), evaluates with
 * `python -m rmbert_train.export heldout`, and writes benchmarks/results/backbone.{json,md,svg}.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { renderCharts } from '../src/train/plot.ts';
import { loadAverage, machineDescription } from './engines-common.ts';

const { values } = parseArgs({
  options: {
    checkpoint: { type: 'string', default: 'models/backbone-pretraining' },
    corpus: { type: 'string', default: '.cache/corpus' },
    baseline: { type: 'string', default: 'models/backbone' },
  },
});
const root = path.resolve(import.meta.dirname, '..');
const checkpoint = path.resolve(root, values.checkpoint);
const corpus = path.resolve(root, values.corpus);
const loadStart = loadAverage();

const python = execFileSync('bash', [path.join(root, 'scripts/setup-python.sh')], { encoding: 'utf8' }).trim().split('\n').pop()!;
if (!existsSync(path.join(corpus, 'heldout.i32'))) {
  execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), 'corpus', '--out', corpus], { stdio: 'inherit', cwd: root });
}
const heldout = (args: string[]): { loss: number; top1: number; masked: number } =>
  JSON.parse(
    execFileSync(python, ['-m', 'rmbert_train.export', 'heldout', '--corpus', corpus, ...args], {
      cwd: path.join(root, 'python'),
      encoding: 'utf8',
      env: { ...process.env, OMP_NUM_THREADS: '1' },
    }).trim(),
  ) as { loss: number; top1: number; masked: number };

interface TrainState {
  total_steps: number;
  tokens_seen: number;
  phase: string;
  train_seconds: number;
  config: Record<string, number>;
  hyper: Record<string, number>;
  sessions: Array<Record<string, unknown>>;
  held_out: Array<{ tokens_seen: number; loss: number; top1: number }>;
}
const state = JSON.parse(readFileSync(path.join(checkpoint, 'state.json'), 'utf8')) as TrainState;
const log = readFileSync(path.join(checkpoint, 'log.jsonl'), 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l) as Record<string, number | string>);

const current = heldout(['--commit-dir', checkpoint]);
const shipped = existsSync(path.join(root, values.baseline, 'config.json')) ? heldout(['--artifact', path.resolve(root, values.baseline)]) : null;
const unigram = JSON.parse(
  execFileSync(python, ['-m', 'rmbert_train.export', 'unigram', '--corpus', corpus], { cwd: path.join(root, 'python'), encoding: 'utf8' }).trim(),
) as { loss: number; top1: number; masked: number };

const speedFile = path.join(root, 'benchmarks/results/training-speed.json');
const speed = existsSync(speedFile) ? (JSON.parse(readFileSync(speedFile, 'utf8')) as { summary: Record<string, number> }).summary : null;
const c = state.config;
const params = Number(
  execFileSync(python, ['-c', `import sys, json; sys.path.insert(0, '.'); from rmbert_train.model import BertConfig, BertModel; c = BertConfig(**json.load(open(${JSON.stringify(path.join(checkpoint, 'state.json'))}))['config']); print(sum(p.numel() for p in BertModel(c, mlm_head=True).parameters()))`], {
    cwd: path.join(root, 'python'),
    encoding: 'utf8',
  }).trim(),
);

const round = (x: number, d = 4) => Math.round(x * 10 ** d) / 10 ** d;
const summary = {
  tokensSeen: state.tokens_seen,
  steps: state.total_steps,
  phase: state.phase,
  trainHours: round(state.train_seconds / 3600, 2),
  heldOutMlmLoss: round(current.loss),
  heldOutTop1: round(current.top1),
  heldOutMaskedTokens: current.masked,
  params,
  shape: `${c.num_layers} layers, hidden ${c.hidden_size}, ${c.num_heads} heads, intermediate ${c.intermediate_size}, ${c.vocab_size} vocabulary rows (pruned)`,
  shippedBackboneHeldOutMlmLoss: shipped ? round(shipped.loss) : null,
  shippedBackboneHeldOutTop1: shipped ? round(shipped.top1) : null,
  unigramHeldOutMlmLoss: round(unigram.loss),
  unigramHeldOutTop1: round(unigram.top1),
  fastOverWasm: speed?.fastOverWasm ?? null,
};
const results = {
  name: 'backbone',
  command: `node --import tsx benchmarks/backbone.ts --checkpoint ${values.checkpoint} --corpus ${values.corpus} --baseline ${values.baseline}`,
  trainingCommand: 'cd python && OMP_WAIT_POLICY=PASSIVE ../.venv/bin/python -m rmbert_train.pretrain --corpus ../.cache/corpus --out ../.cache/pretrain-torch --commit-dir ../models/backbone-pretraining --horizon-tokens 90e6 --max-minutes M --threads 1',
  machine: machineDescription(),
  loadAverage: { start: loadStart, end: loadAverage() },
  date: new Date().toISOString(),
  summary,
  heldOut: {
    data: 'dh_msra.txt sentences [50658, 50958) (the first 300 of MSRA test); 15% of tokens masked with a fixed seed, all replaced by [MASK], padding hidden; loss over the pretraining vocabulary (vocab-used.json)',
    history: state.held_out,
  },
  hyperparameters: state.hyper,
  sessions: state.sessions,
};
const resultsDir = path.join(root, 'benchmarks/results');
writeFileSync(path.join(resultsDir, 'backbone.json'), `${JSON.stringify(results, null, 2)}\n`);

const train = log.filter((r) => r.event === 'train').map((r) => [Number(r.tokens_seen) / 1e6, Number(r.loss)] as const);
const held = state.held_out.map((h) => [h.tokens_seen / 1e6, h.loss] as const);
const top1 = state.held_out.map((h) => [h.tokens_seen / 1e6, 100 * h.top1] as const);
const speedPoints = log.filter((r) => r.event === 'train').map((r) => [Number(r.tokens_seen) / 1e6, Number(r.tokens_per_second)] as const);
writeFileSync(
  path.join(resultsDir, 'backbone.svg'),
  renderCharts(
    [
      {
        title: 'masked-LM loss',
        xLabel: 'tokens seen (M)',
        yLabel: 'nats',
        series: [
          { name: 'training (mean per log line)', points: train },
          { name: 'held-out (300 MSRA test sentences)', points: held, markers: true },
          ...(shipped ? [{ name: `previous backbone, held-out (${shipped.loss.toFixed(2)})`, points: [[0, shipped.loss], [Math.max(1, state.tokens_seen / 1e6), shipped.loss]] as const }] : []),
        ],
      },
      { title: 'held-out top-1', xLabel: 'tokens seen (M)', yLabel: '%', series: [{ name: 'top-1 of masked tokens', points: top1, markers: true }] },
      { title: 'throughput (shared 2-core machine)', xLabel: 'tokens seen (M)', yLabel: 'tokens/s', series: [{ name: 'PyTorch, 1 thread', points: speedPoints }] },
    ],
    { columns: 3, caption: `backbone pretraining: ${c.num_layers} layers / hidden ${c.hidden_size}, ${(state.tokens_seen / 1e6).toFixed(1)} M tokens; ${machineDescription()}` },
  ),
);
const md = [
  '# Backbone pretraining',
  '',
  `Command: \`${results.command}\`. Machine: ${results.machine}; load average ${loadStart.join(' ')} at start (the pretraining itself and other work shared the 2 cores while it trained).`,
  '',
  '| figure | value |',
  '|---|---|',
  `| shape | ${summary.shape}; ${params.toLocaleString('en-US')} parameters |`,
  `| tokens seen | ${summary.tokensSeen.toLocaleString('en-US')} (${summary.steps} steps, phase ${summary.phase}, ${summary.trainHours} h of training) |`,
  `| held-out MLM loss (nats) | ${summary.heldOutMlmLoss} (previous backbone ${summary.shippedBackboneHeldOutMlmLoss ?? 'n/a'}, unigram frequencies ${summary.unigramHeldOutMlmLoss}) |`,
  `| held-out top-1 | ${(100 * summary.heldOutTop1).toFixed(1)} % (previous backbone ${shipped ? (100 * shipped.top1).toFixed(1) : 'n/a'} %, unigram ${(100 * unigram.top1).toFixed(1)} %) on ${summary.heldOutMaskedTokens} masked tokens |`,
  `| training throughput, PyTorch / tfjs-wasm | ${summary.fastOverWasm === null ? 'not measured (benchmarks/training-speed.ts)' : `${summary.fastOverWasm}x (benchmarks/results/training-speed.md)`} |`,
  '',
  'Targets (issue): held-out loss 4.0 nats or less, top-1 35 % or more, 80 M tokens or more, fast path 8x tfjs-wasm or more.',
  '',
  '![curve](backbone.svg)',
  '',
];
writeFileSync(path.join(resultsDir, 'backbone.md'), md.join('\n'));
console.log(JSON.stringify(summary, null, 2));
