/**
 * Tokenizer and safetensors benchmark: `node --import tsx benchmarks/tokenizer.ts`
 *
 * 1. BertTokenizer.tokenize throughput (characters and tokens per second, one core) on three kinds of
 *    text: the medical NER sentences (Chinese clinical notes, spaces removed), the CLUE corpus sample
 *    (general Chinese with some Latin and digits) and the English side of the news-commentary sample
 *    (WordPiece-heavy). Warm-up, then 5 interleaved rounds; medians.
 * 2. safetensors: decoding fp16 and fp32 weights of a bert-base-sized tensor set (102M values) and
 *    encoding them to fp16.
 *
 * Writes benchmarks/results/tokenizer.json and tokenizer.md.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BertTokenizer } from '../src/model/tokenizer.ts';
import { readSafetensors, writeSafetensors } from '../src/model/safetensors.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHARED = path.resolve(ROOT, '../shared/data');
const ROUNDS = 5;

function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' ');
  return `2 cores (${os.cpus().length} visible), ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; single-threaded; load average at start ${load}`;
}

const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

function corpora(): Record<string, string[]> {
  const medical = ['train.tsv', 'dev.tsv', 'test.tsv'].flatMap((f) =>
    readFileSync(path.join(SHARED, 'kbert-medical-ner', f), 'utf8')
      .split('\n')
      .slice(1)
      .filter((l) => l)
      .map((l) => l.split('\t')[0].split(' ').join('')),
  );
  const clue = readFileSync(path.join(SHARED, 'zh-corpus-uer/corpora/CLUECorpusSmall_sampled.txt'), 'utf8').split('\n').filter((l) => l);
  const english = readFileSync(path.join(SHARED, 'zh-corpus-uer/corpora/news-commentary-v13-en-zh_sampled.txt'), 'utf8')
    .split('\n')
    .map((l) => l.split('\t')[0])
    .filter((l) => l);
  return { 'medical (zh clinical)': medical, 'CLUE (general zh)': clue, 'news commentary (en)': english };
}

function main(): void {
  const command = 'node --import tsx benchmarks/tokenizer.ts';
  const tokenizer = BertTokenizer.loadSync();
  const sets = corpora();
  const tokenizerDetails: Record<string, { sentences: number; chars: number; tokens: number; msPerRound: number[] }> = {};
  for (const [name, lines] of Object.entries(sets)) {
    for (const l of lines) tokenizer.tokenize(l); // warm-up (JIT, per-character caches)
    tokenizerDetails[name] = { sentences: lines.length, chars: lines.reduce((a, l) => a + l.length, 0), tokens: 0, msPerRound: [] };
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, lines] of Object.entries(sets)) {
      const t0 = performance.now();
      let tokens = 0;
      for (const l of lines) tokens += tokenizer.tokenize(l).length;
      tokenizerDetails[name].msPerRound.push(performance.now() - t0);
      tokenizerDetails[name].tokens = tokens;
    }
  }
  const summary: Record<string, number> = {};
  const rows: string[] = [];
  for (const [name, d] of Object.entries(tokenizerDetails)) {
    const ms = median(d.msPerRound);
    const mchars = d.chars / ms / 1000;
    const mtokens = d.tokens / ms / 1000;
    summary[`tokenize ${name}: M chars/s`] = Number(mchars.toFixed(2));
    summary[`tokenize ${name}: M tokens/s`] = Number(mtokens.toFixed(2));
    rows.push(`| tokenize, ${name} | ${d.sentences} texts, ${d.chars} chars, ${d.tokens} tokens | ${mchars.toFixed(2)} M chars/s | ${mtokens.toFixed(2)} M tokens/s |`);
  }

  // safetensors: a bert-base-sized set of tensors (~102M values), deterministic content.
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  const shapes: Array<[string, number[]]> = [['word', [21128, 768]], ['pos', [512, 768]]];
  for (let i = 0; i < 12; i++) {
    for (const m of ['q', 'k', 'v', 'o']) shapes.push([`l${i}.${m}`, [768, 768]]);
    shapes.push([`l${i}.in`, [3072, 768]], [`l${i}.out`, [768, 3072]]);
  }
  let values = 0;
  for (const [name, shape] of shapes) {
    const data = new Float32Array(shape[0] * shape[1]);
    for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37) * 0.05;
    tensors.set(name, { shape, data });
    values += data.length;
  }
  const time = (f: () => unknown): number => {
    const t0 = performance.now();
    f();
    return performance.now() - t0;
  };
  let f16: Uint8Array = new Uint8Array(0);
  let f32: Uint8Array = new Uint8Array(0);
  const encode16: number[] = [];
  const decode16: number[] = [];
  const decode32: number[] = [];
  for (let r = 0; r < 3; r++) {
    encode16.push(time(() => (f16 = writeSafetensors(tensors, { dtype: 'F16' }))));
    f32 = writeSafetensors(tensors, { dtype: 'F32' });
    decode16.push(time(() => readSafetensors(f16)));
    decode32.push(time(() => readSafetensors(f32)));
  }
  const mv = values / 1e6;
  const st = {
    values,
    'encode fp16 M values/s': Number((mv / (median(encode16) / 1000)).toFixed(0)),
    'decode fp16 M values/s': Number((mv / (median(decode16) / 1000)).toFixed(0)),
    'decode fp32 M values/s': Number((mv / (median(decode32) / 1000)).toFixed(0)),
  };
  summary['safetensors encode fp16: M values/s'] = st['encode fp16 M values/s'];
  summary['safetensors decode fp16: M values/s'] = st['decode fp16 M values/s'];
  summary['safetensors decode fp32: M values/s'] = st['decode fp32 M values/s'];
  rows.push(`| safetensors write fp16 | ${mv.toFixed(0)}M values | ${st['encode fp16 M values/s']} M values/s | ${median(encode16).toFixed(0)} ms |`);
  rows.push(`| safetensors read fp16 | ${mv.toFixed(0)}M values | ${st['decode fp16 M values/s']} M values/s | ${median(decode16).toFixed(0)} ms |`);
  rows.push(`| safetensors read fp32 | ${mv.toFixed(0)}M values | ${st['decode fp32 M values/s']} M values/s | ${median(decode32).toFixed(0)} ms |`);

  const result = { command, machine: machine(), date: new Date().toISOString(), summary, details: { tokenizer: tokenizerDetails, safetensors: st } };
  const outDir = path.join(ROOT, 'benchmarks/results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'tokenizer.json'), `${JSON.stringify(result, null, 2)}\n`);
  const md = [
    '# Tokenizer and safetensors',
    '',
    `Command: \`${command}\`. Machine: ${result.machine}. Date: ${result.date}. Medians of ${ROUNDS} interleaved rounds (3 for safetensors).`,
    '',
    '| what | input | rate | |',
    '|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
  writeFileSync(path.join(outDir, 'tokenizer.md'), md);
  console.log(md);
}

main();
