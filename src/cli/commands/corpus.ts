/**
 * `rmbert corpus`: writes the tokenised masked-LM corpora for the PyTorch trainer (python/rmbert_train),
 * so that the one tokenizer (src/model/tokenizer.ts) and the one corpus definition (src/train/corpus.ts)
 * feed both training paths.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../errors/index.ts';
import { BertTokenizer } from '../../model/tokenizer.ts';
import { buildPretrainCorpus, packSentences } from '../../train/corpus.ts';
import { defaultDataDir, loadCorpus, MSRA_TRAIN_SENTENCES, readMsraZip } from '../../train/datasets.ts';

export const summary = 'write the tokenised pretraining corpora (general, medical training split, held-out) for the PyTorch trainer';

/** The held-out MLM set: the first sentences of MSRA's official test part (never in any training corpus). */
export const HELD_OUT_SENTENCES = 300;

const HELP = `usage: rmbert corpus [--out DIR] [--seq-len N] [--seed N] [--data DIR]

Writes into --out (default .cache/corpus):
  general.i32 + general.json     the general-domain corpus of \`rmbert pretrain\` (src/train/corpus.ts),
                                 packed into sequences of --seq-len token ids ([CLS] ... [SEP])
  medical-train.i32 + .json      the medical NER TRAINING split's text only (never dev or test), packed
                                 the same way, for the task-adaptive phase
  heldout.i32 + heldout.json     the first ${HELD_OUT_SENTENCES} sentences of MSRA's test part, one per row,
                                 padded; the held-out set for MLM loss and top-1 accuracy
  vocab-used.json                sorted token ids that occur in general or medical-train (specials included)
Each .i32 file is little-endian int32, row-major [rows, seqLen]; its .json says rows, seqLen, tokens and
the tokenizer's special ids.

  --out DIR       output folder (default .cache/corpus)
  --seq-len N     tokens per sequence (default 128)
  --seed N        document shuffle seed (default 1)
  --data DIR      shared data folder (default ../shared/data)
  -h, --help      this text
`;

function writeRows(dir: string, name: string, rows: Int32Array, meta: Record<string, unknown>): void {
  writeFileSync(path.join(dir, `${name}.i32`), Buffer.from(rows.buffer, rows.byteOffset, rows.byteLength));
  writeFileSync(path.join(dir, `${name}.json`), `${JSON.stringify(meta, null, 2)}\n`);
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      out: { type: 'string' },
      'seq-len': { type: 'string' },
      seed: { type: 'string' },
      data: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const seqLen = Number(values['seq-len'] ?? 128);
  const seed = Number(values.seed ?? 1);
  const problems: string[] = [];
  if (!Number.isInteger(seqLen) || seqLen < 8 || seqLen > 512) problems.push(`--seq-len must be an integer in [8, 512] (got "${values['seq-len']}")`);
  if (!Number.isInteger(seed) || seed < 0) problems.push(`--seed must be a non-negative integer (got "${values.seed}")`);
  if (problems.length) throw new ConfigError(problems);
  const dataDir = path.resolve(values.data ?? defaultDataDir());
  const outDir = path.resolve(values.out ?? '.cache/corpus');
  mkdirSync(outDir, { recursive: true });
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const tokenizer = await BertTokenizer.load();
  const specials = { cls: tokenizer.clsId, sep: tokenizer.sepId, pad: tokenizer.padId, mask: tokenizer.maskId, unk: tokenizer.unkId };
  const common = { seqLen, specials, vocabSize: tokenizer.vocabSize, vocabSha256: tokenizer.vocabSha256 };

  const general = buildPretrainCorpus({ dataDir, tokenizer, seqLen, seed, cacheDir: path.resolve('.cache'), log });
  writeRows(outDir, 'general', general.sequences, {
    ...common,
    rows: general.numSequences,
    tokens: general.tokens,
    chars: general.chars,
    sources: general.sources,
    key: general.key,
  });
  log(`general: ${general.numSequences} sequences, ${general.tokens} tokens`);

  const medicalTrain = loadCorpus('medical', dataDir).train;
  const medical = packSentences([medicalTrain.sentences.map((s) => s.text)], tokenizer, seqLen);
  writeRows(outDir, 'medical-train', medical.sequences, {
    ...common,
    rows: medical.numSequences,
    tokens: medical.tokens,
    source: `${medicalTrain.source} (${medicalTrain.sentences.length} sentences; the training split only)`,
  });
  log(`medical-train: ${medical.numSequences} sequences, ${medical.tokens} tokens`);

  const msraTest = readMsraZip(path.join(dataDir, 'msra-dh', 'dh_msra.zip')).test.sentences.slice(0, HELD_OUT_SENTENCES);
  const heldOut = new Int32Array(msraTest.length * seqLen).fill(tokenizer.padId);
  let heldOutTokens = 0;
  msraTest.forEach((sentence, row) => {
    const ids = tokenizer.tokenize(sentence.text).map((t) => t.id).slice(0, seqLen - 2);
    heldOut.set([tokenizer.clsId, ...ids, tokenizer.sepId], row * seqLen);
    heldOutTokens += ids.length + 2;
  });
  writeRows(outDir, 'heldout', heldOut, {
    ...common,
    rows: msraTest.length,
    tokens: heldOutTokens,
    source: `dh_msra.txt sentences [${MSRA_TRAIN_SENTENCES}, ${MSRA_TRAIN_SENTENCES + msraTest.length}) (MSRA's test part)`,
  });

  const used = new Set<number>([...general.vocabUsed, ...medical.vocabUsed]);
  writeFileSync(path.join(outDir, 'vocab-used.json'), `${JSON.stringify([...used].sort((a, b) => a - b))}\n`);
  log(`vocabulary used: ${used.size} of ${tokenizer.vocabSize} ids; written to ${outDir}`);
  return 0;
}
