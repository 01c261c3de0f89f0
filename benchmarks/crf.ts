/**
 * Linear-chain CRF peer: the character-level model a hospital would train instead of a BERT, on the
 * same splits and scored by the same scorer as our models (`rmbert eval`: strict span+type P/R/F1, the
 * K-BERT metric and per-type strict F1, via scorePredictions of src/train/evaluate.ts).
 *
 *   node --import tsx benchmarks/crf.ts [--corpus medical|msra|both]     (default both)
 *
 * The corpora come from loadCorpus (src/train/datasets.ts): medical = K-BERT's CCKS 2017 split
 * (6,919 / 939 / 755 sentences); msra = dh_msra's training part minus every sentence overlapping K-BERT's
 * dev/test, with K-BERT's dev/test (drawn by K-BERT from that same training part); for MSRA the official
 * test set (dh_msra's last 4,631 sentences) is scored too, as details. The CRF trains on the repaired tags
 * (valid BIO, as our models do).
 * The model is sklearn-crfsuite (L-BFGS, c1 = c2 = 0.05, 200 iterations, single-threaded), run by
 * benchmarks/peer/crf_peer.py in .venv (scripts/setup-python.sh, run first, makes it). Features per
 * character: characters at -2..+2, bigrams at -2..+1, trigrams centred at -1 and 0, digit/Latin flags,
 * BOS/EOS.
 *
 * Writes benchmarks/results/crf.{json,md}. A single-corpus run keeps the other corpus's results from the
 * existing crf.json (each corpus records its own command, date and load average under details).
 * Progress goes to stderr.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { defaultDataDir, loadCorpus, readMsraZip, type NamedCorpus, type NerSentence } from '../src/train/datasets.ts';
import { predictionRecord } from '../src/train/baselines.ts';
import { scorePredictions } from '../src/train/evaluate.ts';
import type { NerEvaluation } from '../src/train/metrics.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PEER = path.join(ROOT, 'benchmarks/peer/crf_peer.py');
const RESULTS = path.join(ROOT, 'benchmarks/results');
const log = (line: string) => process.stderr.write(`crf: ${line}\n`);

const { values } = parseArgs({ options: { corpus: { type: 'string', default: 'both' } } });
if (!['medical', 'msra', 'both'].includes(values.corpus as string)) {
  log(`--corpus must be medical, msra or both (got "${values.corpus}")`);
  process.exit(2);
}
const corpora: NamedCorpus[] = values.corpus === 'both' ? ['medical', 'msra'] : [values.corpus as NamedCorpus];
const command = `node --import tsx benchmarks/crf.ts --corpus ${values.corpus}`;

function loadAverage(): number[] {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}

function machine(): string {
  const cpus = os.cpus();
  return `2 cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}), ${cpus.length} CPUs visible, ${Math.round(os.totalmem() / 2 ** 30)} GiB, shared with other jobs; the CRF trains on one thread`;
}

/** Runs scripts/setup-python.sh (idempotent); its last line is the interpreter. */
function setupPython(): string {
  const r = spawnSync('bash', [path.join(ROOT, 'scripts/setup-python.sh')], { encoding: 'utf8', timeout: 1_800_000 });
  if (r.status !== 0) throw new Error(`scripts/setup-python.sh failed (${r.status}): ${(r.stderr || r.stdout).trim().slice(-800)}`);
  const lines = r.stdout.trim().split('\n');
  return lines[lines.length - 1];
}

function peerVersions(python: string): Record<string, string> {
  const script =
    'import json, sys, importlib.metadata as m\n' +
    'print(json.dumps({"python": sys.version.split()[0], **{p: m.version(p) for p in ["sklearn-crfsuite", "python-crfsuite", "scikit-learn", "numpy"]}}))';
  const r = spawnSync(python, ['-c', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${python}: cannot read package versions: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as Record<string, string>;
}

function writeJsonl(file: string, sentences: readonly NerSentence[], withLabels: boolean): void {
  const lines = sentences.map((s) => JSON.stringify(withLabels ? { chars: s.chars, labels: s.labels } : { chars: s.chars }));
  writeFileSync(file, lines.join('\n') + '\n');
}

function readPredictions(file: string, sentences: readonly NerSentence[]): string[][] {
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
  if (lines.length !== sentences.length) throw new Error(`${file}: ${lines.length} predictions for ${sentences.length} sentences`);
  return lines.map((l, i) => {
    const tags = (JSON.parse(l) as { labels: string[] }).labels;
    if (tags.length !== sentences[i].chars.length) throw new Error(`${file}: sentence ${i + 1} has ${sentences[i].chars.length} characters but ${tags.length} tags`);
    return tags;
  });
}

/** Predicted tags that are not valid BIO (I-X not after B-X/I-X); the scorer reads such an I-X as a new entity. */
function invalidTransitions(predicted: readonly string[][]): { tags: number; sentences: number } {
  let tags = 0;
  let sentences = 0;
  for (const seq of predicted) {
    let bad = 0;
    for (let i = 0; i < seq.length; i++) {
      if (seq[i][0] !== 'I') continue;
      const prev = i > 0 ? seq[i - 1] : 'O';
      if (prev === 'O' || prev.slice(2) !== seq[i].slice(2)) bad++;
    }
    tags += bad;
    if (bad) sentences++;
  }
  return { tags, sentences };
}

interface PeerResult {
  trainSeconds: number;
  trainCpuSeconds: number;
  iterations: number | null;
  loss: number | null;
  activeFeatures: number | null;
  labels: string[];
  sentences: number;
  chars: number;
  devPredictSeconds: number;
  testPredictSeconds: number;
  params: Record<string, unknown>;
}

/** Runs crf_peer.py single-threaded; its stderr is passed on as progress, its last stdout line is the result. */
function runPeer(python: string, args: string[], label: string): Promise<PeerResult> {
  return new Promise((resolve, reject) => {
    const threads = { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', MKL_NUM_THREADS: '1' };
    const child = spawn(python, [PEER, ...args], { env: { ...process.env, ...threads, PYTHONUNBUFFERED: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderrTail = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    readline.createInterface({ input: child.stderr }).on('line', (line) => {
      stderrTail = (stderrTail + line + '\n').slice(-4000);
      log(`${label}: ${line}`);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`crf_peer.py exited with ${code}: ${stderrTail.trim().slice(-1500)}`));
      const last = stdout.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(last) as PeerResult);
      } catch {
        reject(new Error(`crf_peer.py: no result line on stdout (got "${last.slice(0, 200)}")`));
      }
    });
  });
}

const f1Of = (e: NerEvaluation) => Object.fromEntries(Object.entries(e.perType).map(([t, m]) => [t, m.f1]));

async function runCorpus(name: NamedCorpus, python: string): Promise<{ summary: Record<string, unknown>; details: Record<string, unknown> }> {
  const loadStart = loadAverage();
  const date = new Date().toISOString();
  const corpus = loadCorpus(name);
  const [train, dev, test] = [corpus.train, corpus.dev, corpus.test];
  log(`${name}: train ${train.sentences.length}, dev ${dev.sentences.length}, test ${test.sentences.length} sentences (${train.stats.chars} training characters)`);
  const dir = mkdtempSync(path.join(os.tmpdir(), `rmbert-crf-${name}-`));
  try {
    const file = (f: string) => path.join(dir, f);
    writeJsonl(file('train.jsonl'), train.sentences, true);
    writeJsonl(file('dev.jsonl'), dev.sentences, false);
    writeJsonl(file('test.jsonl'), test.sentences, false);
    const args = ['--train', file('train.jsonl'), '--dev', file('dev.jsonl'), '--dev-out', file('dev.pred.jsonl'), '--test', file('test.jsonl'), '--test-out', file('test.pred.jsonl')];
    // MSRA: K-BERT's dev/test were drawn from the MSRA training portion (the same news documents as the
    // training sentences); the official MSRA test set (dh_msra's last 4,631 sentences) is scored as well.
    const official = name === 'msra' ? readMsraZip(path.join(defaultDataDir(), 'msra-dh', 'dh_msra.zip')).test : null;
    if (official) {
      writeJsonl(file('official.jsonl'), official.sentences, false);
      args.push('--predict', file('official.jsonl'), file('official.pred.jsonl'));
    }
    const wall0 = performance.now();
    const peer = await runPeer(python, args, name);
    const peerWallSeconds = (performance.now() - wall0) / 1000;
    const devPred = readPredictions(file('dev.pred.jsonl'), dev.sentences);
    const testPred = readPredictions(file('test.pred.jsonl'), test.sentences);
    const devEval = scorePredictions(dev.sentences, devPred, corpus.types);
    const testEval = scorePredictions(test.sentences, testPred, corpus.types);
    const officialEval = official
      ? scorePredictions(official.sentences, readPredictions(file('official.pred.jsonl'), official.sentences), corpus.types)
      : null;
    // Kept beside the results in the format of `rmbert eval --predictions`, so that benchmarks/tables.ts can
    // pair the CRF with our models sentence by sentence (paired bootstrap).
    const records = test.sentences.map((s, i) => JSON.stringify(predictionRecord(i, s, testPred[i])));
    writeFileSync(path.join(RESULTS, `crf-${name}-test.predictions.jsonl`), records.join('\n') + '\n');
    const loadEnd = loadAverage();
    const pct = (x: number) => (100 * x).toFixed(2);
    log(
      `${name}: test strict P ${pct(testEval.strict.precision)} R ${pct(testEval.strict.recall)} F1 ${pct(testEval.strict.f1)}, ` +
        `K-BERT F1 ${pct(testEval.kbert.f1)}; dev strict F1 ${pct(devEval.strict.f1)}; trained in ${peer.trainSeconds.toFixed(1)} s`,
    );
    if (officialEval) log(`${name}: official MSRA test strict F1 ${pct(officialEval.strict.f1)}`);
    const summary = {
      strictF1: testEval.strict.f1,
      strictP: testEval.strict.precision,
      strictR: testEval.strict.recall,
      kbertF1: testEval.kbert.f1,
      kbertP: testEval.kbert.precision,
      kbertR: testEval.kbert.recall,
      devStrictF1: devEval.strict.f1,
      devKbertF1: devEval.kbert.f1,
      trainSeconds: peer.trainSeconds,
      trainCpuSeconds: peer.trainCpuSeconds,
      perType: f1Of(testEval),
      devPerType: f1Of(devEval),
      ...(officialEval
        ? {
            officialTest: {
              strictF1: officialEval.strict.f1,
              strictP: officialEval.strict.precision,
              strictR: officialEval.strict.recall,
              kbertF1: officialEval.kbert.f1,
              perType: f1Of(officialEval),
            },
          }
        : {}),
    };
    const details = {
      command,
      date,
      loadAverage: { start: loadStart, end: loadEnd },
      data: {
        train: { source: train.source, ...train.stats },
        dev: { source: dev.source, ...dev.stats },
        test: { source: test.source, ...test.stats },
        ...(official ? { officialTest: { source: official.source, ...official.stats } } : {}),
        trainingTags: 'repaired (orphan I-X -> B-X), as our models train; K-BERT metric scored on the tags as in the files',
      },
      peer: { ...peer, wallSecondsWithIo: peerWallSeconds },
      invalidBio: { dev: invalidTransitions(devPred), test: invalidTransitions(testPred) },
      test: testEval,
      dev: devEval,
      ...(officialEval ? { officialTest: officialEval } : {}),
    };
    return { summary, details };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface OurModel {
  label: string;
  strictF1: number;
  kbertMetricF1: number;
  perTypeF1: Record<string, number>;
  runs: number;
}

/** Our models' figures from the experiment results files, for the comparison table (null when absent). */
function ourModels(name: NamedCorpus): { command: string; date: string; models: OurModel[] } | null {
  const file = path.join(RESULTS, `${name}.json`);
  if (!existsSync(file)) return null;
  const j = JSON.parse(readFileSync(file, 'utf8')) as { command: string; date: string; summary: Record<string, unknown> };
  const models = ['bert', 'kbert', 'rmbert'].map((k) => j.summary[k] as OurModel | undefined).filter((m): m is OurModel => !!m && typeof m.strictF1 === 'number');
  // benchmarks/tables.ts writes percentages (units: "percent"); this table works in fractions.
  if (j.summary.units !== 'percent') return { command: j.command, date: j.date, models };
  const fraction = (x: number) => x / 100;
  const asFractions = models.map((m) => ({
    ...m,
    strictF1: fraction(m.strictF1),
    kbertMetricF1: fraction(m.kbertMetricF1),
    perTypeF1: Object.fromEntries(Object.entries(m.perTypeF1).map(([t, v]) => [t, fraction(v)])),
  }));
  return { command: j.command, date: j.date, models: asFractions };
}

const python = setupPython();
const versions = peerVersions(python);
log(`interpreter ${python}: ${Object.entries(versions).map(([k, v]) => `${k} ${v}`).join(', ')}`);
const loadStart = loadAverage();
const summary: Record<string, Record<string, unknown>> = {};
const details: Record<string, unknown> = {};
const outJson = path.join(RESULTS, 'crf.json');
if (corpora.length === 1 && existsSync(outJson)) {
  // Keep the other corpus's figures (they carry their own command, date and load average).
  const old = JSON.parse(readFileSync(outJson, 'utf8')) as { summary?: Record<string, Record<string, unknown>>; details?: Record<string, unknown> };
  for (const other of ['medical', 'msra'] as const) {
    if (other !== corpora[0] && old.summary?.[other] && old.details?.[other]) {
      summary[other] = old.summary[other];
      details[other] = old.details[other];
    }
  }
}
for (const name of corpora) {
  const r = await runCorpus(name, python);
  summary[name] = r.summary;
  details[name] = r.details;
}
const loadEnd = loadAverage();
const ordered = <T,>(o: Record<string, T>): Record<string, T> => Object.fromEntries((['medical', 'msra'] as const).filter((k) => k in o).map((k) => [k, o[k]]));
const orderedSummary = ordered(summary);
const out = {
  command,
  machine: machine(),
  date: new Date().toISOString(),
  loadAverage: { start: loadStart, end: loadEnd },
  summary: orderedSummary,
  details: {
    ...ordered(details),
    model: 'sklearn_crfsuite.CRF(algorithm="lbfgs", c1=0.05, c2=0.05, max_iterations=200, all_possible_transitions=False), single-threaded',
    features: 'per character: chars at -2..+2, bigrams chars[i+k]+chars[i+k+1] for k=-2..1, trigrams centred at -1 and 0, digit/Latin flags, BOS/EOS; <PAD> outside the sentence',
    scorer: 'scorePredictions (src/train/evaluate.ts) = NerEvaluator (src/train/metrics.ts), as rmbert eval',
    trainSeconds: 'wall seconds of CRF.fit (feature extraction + L-BFGS), measured inside crf_peer.py',
    versions,
  },
};
mkdirSync(RESULTS, { recursive: true });
writeFileSync(outJson, JSON.stringify(out, null, 1) + '\n');

const pct = (x: unknown) => (typeof x === 'number' ? (100 * x).toFixed(2) : 'n/a');
const md: string[] = [
  '# Linear-chain CRF peer (sklearn-crfsuite)',
  '',
  `\`${command}\` — ${out.date}. Machine: ${out.machine}.`,
  '',
  `Model: ${out.details.model}. Features: ${out.details.features}. Scored with our own scorer (${out.details.scorer}); test set unless marked dev, micro scores in %.`,
  '',
  '| corpus | strict P | strict R | strict F1 | K-BERT-metric F1 | dev strict F1 | training, wall s (CPU s) | load average start → end (1 min) |',
  '|---|---|---|---|---|---|---|---|',
];
for (const [name, s] of Object.entries(orderedSummary)) {
  const d = details[name] as { loadAverage: { start: number[]; end: number[] } };
  md.push(
    `| ${name} | ${pct(s.strictP)} | ${pct(s.strictR)} | ${pct(s.strictF1)} | ${pct(s.kbertF1)} | ${pct(s.devStrictF1)} | ${(s.trainSeconds as number).toFixed(0)} (${(s.trainCpuSeconds as number).toFixed(0)}) | ${d.loadAverage.start[0]} → ${d.loadAverage.end[0]} |`,
  );
  const o = s.officialTest as Record<string, number> | undefined;
  if (o) md.push(`| ${name}, official MSRA test (${(details[name] as { data: { officialTest: { sentences: number } } }).data.officialTest.sentences} sentences) | ${pct(o.strictP)} | ${pct(o.strictR)} | ${pct(o.strictF1)} | ${pct(o.kbertF1)} | | | |`);
}
md.push(
  '',
  'Training seconds are wall-clock seconds of CRF.fit (CPU seconds in brackets) on a machine shared with other jobs: they grow with the load.',
  'MSRA: as in our experiments, train = dh_msra\'s training part minus the sentences overlapping K-BERT\'s dev/test, which K-BERT drew from that same training part (the same news documents); the official MSRA test set is a separate collection and scores lower.',
);
for (const [name, s] of Object.entries(orderedSummary)) {
  const perType = s.perType as Record<string, number>;
  const types = Object.keys(perType);
  const ours = ourModels(name as NamedCorpus);
  md.push('', `## ${name}: per type (strict F1 %, test), beside our models`, '', `| model | strict F1 | K-BERT-metric F1 | ${types.join(' | ')} |`, `|---|---|---|${types.map(() => '---|').join('')}`);
  md.push(`| CRF | ${pct(s.strictF1)} | ${pct(s.kbertF1)} | ${types.map((t) => pct(perType[t])).join(' | ')} |`);
  for (const m of ours?.models ?? []) {
    md.push(`| ${m.label} (${m.runs === 1 ? '1 run' : `mean of ${m.runs} runs`}) | ${pct(m.strictF1)} | ${pct(m.kbertMetricF1)} | ${types.map((t) => pct(m.perTypeF1?.[t])).join(' | ')} |`);
  }
  if (ours) md.push('', `Our models: benchmarks/results/${name}.json (\`${ours.command}\`, ${ours.date}).`);
}
md.push('');
writeFileSync(path.join(RESULTS, 'crf.md'), md.join('\n'));
process.stderr.write(md.join('\n'));
