/**
 * The general-domain Chinese pretraining corpus: which texts, how they are cleaned, deduplicated,
 * tokenised and packed into fixed-length sequences for masked-LM pretraining.
 *
 * Sources (under the shared data folder): zh-corpus-uer (CLUECorpusSmall sample, the Chinese column of
 * news-commentary, CMRC 2018 contexts, C3 passages, SMP2020-EWECT posts), zh-corpus-kbert-cls (review
 * text), zh-corpus-sophonplus (review columns, the shopping reviews from their zip) and the MSRA NER
 * training part (sentences [0, 50658) of dh_msra.txt) minus every sentence that shares text with K-BERT's
 * MSRA dev or test set (K-BERT drew those from the training part; see loadCorpus). Medical text
 * (kbert-medical-ner, ccks2017) and the MSRA test part are never read: the medical set is the downstream
 * evaluation domain, and MSRA's test sentences are an evaluation set.
 *
 * Packing: documents are split into sentences, sentences deduplicated across all sources, documents
 * shuffled with a seed, then the token stream (documents separated by [SEP]) is cut into windows of
 * seqLen - 2 tokens, each wrapped as [CLS] window [SEP]. No padding except in the last sequence, so no
 * compute is spent on pad tokens.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import AdmZip from 'adm-zip';
import { mulberry32, shuffleInPlace } from '../domain/random.ts';
import { SchemaError } from '../errors/index.ts';
import type { BertTokenizer } from '../model/tokenizer.ts';
import { loadCorpus } from './datasets.ts';

/** Sentences [0, MSRA_TRAIN_SENTENCES) of dh_msra.txt are MSRA's training set; the rest is its test set. */
export const MSRA_TRAIN_SENTENCES = 50658;

export interface CorpusDocument {
  source: string;
  text: string;
}

export interface CorpusSourceStats {
  source: string;
  documents: number;
  chars: number;
}

export interface PretrainCorpus {
  seqLen: number;
  /** Row-major [numSequences, seqLen] token ids, padded with padId after the final [SEP] of the last row. */
  sequences: Int32Array;
  numSequences: number;
  /** Tokens that are not padding, [CLS] and [SEP] included. */
  tokens: number;
  /** Characters of the deduplicated text that was tokenised. */
  chars: number;
  sources: CorpusSourceStats[];
  /** Sorted distinct token ids that occur in the corpus (specials included). */
  vocabUsed: Int32Array;
  /** Cache key: a hash of the options, the data files' sizes and the tokenizer vocabulary. */
  key: string;
}

export interface BuildCorpusOptions {
  dataDir: string;
  tokenizer: BertTokenizer;
  seqLen: number;
  seed: number;
  /** Folder for the cached token ids; null disables the cache. */
  cacheDir: string | null;
  /** Only for tests: stop after this many documents per source. */
  maxDocumentsPerSource?: number;
  log?: (line: string) => void;
}

/** Minimal RFC 4180 CSV parser (quoted fields, doubled quotes, newlines inside quotes). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else field += c;
    } else if (c === '"' && field.length === 0) quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field.length > 0 || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

function column(rows: string[][], name: string, file: string): string[] {
  const idx = rows[0]?.indexOf(name) ?? -1;
  if (idx < 0) throw new SchemaError(`${file}: no column "${name}" in header [${rows[0]?.join(', ')}]`);
  return rows.slice(1).map((r) => r[idx] ?? '').filter((s) => s.trim().length > 0);
}

function tsvColumn(file: string, name: string): string[] {
  const lines = readFileSync(file, 'utf8').split(/\r?\n/);
  const header = lines[0].split('\t');
  const idx = header.indexOf(name);
  if (idx < 0) throw new SchemaError(`${file}: no column "${name}" in header [${header.join(', ')}]`);
  return lines
    .slice(1)
    .map((l) => l.split('\t')[idx] ?? '')
    .filter((s) => s.trim().length > 0);
}

function zipEntryText(zipFile: string, entryName: string): string {
  const zip = new AdmZip(zipFile);
  const entry = zip.getEntry(entryName);
  if (!entry) throw new SchemaError(`${zipFile}: no entry ${entryName}`);
  return entry.getData().toString('utf8');
}

/** The MSRA training sentences (first MSRA_TRAIN_SENTENCES of dh_msra.txt), characters joined. */
export function readMsraTrainSentences(zipFile: string): string[] {
  const text = zipEntryText(zipFile, 'dh_msra.txt');
  const sentences: string[] = [];
  let current = '';
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') {
      if (current) sentences.push(current);
      current = '';
      if (sentences.length === MSRA_TRAIN_SENTENCES) return sentences;
      continue;
    }
    const tab = line.indexOf('\t');
    current += tab >= 0 ? line.slice(0, tab) : line;
  }
  if (current && sentences.length < MSRA_TRAIN_SENTENCES) sentences.push(current);
  if (sentences.length !== MSRA_TRAIN_SENTENCES) {
    throw new SchemaError(`${zipFile}: expected at least ${MSRA_TRAIN_SENTENCES} sentences, found ${sentences.length}`);
  }
  return sentences;
}

/** Every pretraining document, by source, in file order. */
export function readCorpusDocuments(dataDir: string, maxPerSource = Infinity): CorpusDocument[] {
  const docs: CorpusDocument[] = [];
  const add = (source: string, texts: Iterable<string>) => {
    let n = 0;
    for (const t of texts) {
      if (n++ >= maxPerSource) break;
      const text = t.trim();
      if (text) docs.push({ source, text });
    }
  };
  const p = (...parts: string[]) => path.join(dataDir, ...parts);
  const need = (file: string) => {
    if (!existsSync(file)) throw new SchemaError(`pretraining corpus file missing: ${file} (is --data pointing at the shared data folder?)`);
    return file;
  };

  add('uer/CLUECorpusSmall', readFileSync(need(p('zh-corpus-uer/corpora/CLUECorpusSmall_sampled.txt')), 'utf8').split(/\r?\n/));
  add(
    'uer/news-commentary-zh',
    readFileSync(need(p('zh-corpus-uer/corpora/news-commentary-v13-en-zh_sampled.txt')), 'utf8')
      .split(/\r?\n/)
      .map((l) => l.split('\t')[1] ?? ''),
  );
  for (const split of ['dev', 'test']) {
    const json = JSON.parse(readFileSync(need(p(`zh-corpus-uer/datasets/cmrc2018/${split}.json`)), 'utf8')) as {
      data: { paragraphs: { context: string }[] }[];
    };
    add(`uer/cmrc2018-${split}`, json.data.flatMap((d) => d.paragraphs.map((x) => x.context)));
  }
  for (const split of ['dev', 'test']) {
    const json = JSON.parse(readFileSync(need(p(`zh-corpus-uer/datasets/c3/${split}.json`)), 'utf8')) as [string[], unknown, string][];
    add(`uer/c3-${split}`, json.map((item) => item[0].join('\n')));
  }
  for (const sub of ['usual', 'virus']) {
    for (const split of ['train', 'dev', 'test']) {
      add(`uer/smp2020-${sub}-${split}`, tsvColumn(need(p(`zh-corpus-uer/datasets/smp2020-ewect/${sub}/${split}.tsv`)), 'text_a'));
    }
  }
  for (const set of ['book_review', 'chnsenticorp']) {
    for (const split of ['train', 'dev', 'test']) {
      add(`kbert-cls/${set}-${split}`, tsvColumn(need(p(`zh-corpus-kbert-cls/${set}/${split}.tsv`)), 'text_a'));
    }
  }
  for (const file of ['waimai_10k.csv', 'ChnSentiCorp_htl_all.csv']) {
    const f = need(p('zh-corpus-sophonplus', file));
    add(`sophonplus/${file}`, column(parseCsv(readFileSync(f, 'utf8')), 'review', f));
  }
  const shopping = need(p('zh-corpus-sophonplus/online_shopping_10_cats.zip'));
  add('sophonplus/online_shopping_10_cats', column(parseCsv(zipEntryText(shopping, 'online_shopping_10_cats.csv')), 'review', shopping));
  need(p('msra-dh/dh_msra.zip'));
  add('msra/train', loadCorpus('msra', dataDir).train.sentences.map((sentence) => sentence.text));
  return docs;
}

const SENTENCE_END = /[^。！？!?；;\n]*[。！？!?；;]+[”’」』"')）]*|[^。！？!?；;\n]+/g;

/** Splits text into sentences after Chinese and ASCII sentence-final punctuation and newlines. */
export function splitSentences(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(SENTENCE_END)) {
    const s = m[0].trim();
    if (s) out.push(s);
  }
  return out;
}

function dataFingerprint(dataDir: string): string {
  const h = createHash('sha256');
  for (const dir of ['zh-corpus-uer', 'zh-corpus-kbert-cls', 'zh-corpus-sophonplus', 'msra-dh']) {
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
        const f = path.join(d, e.name);
        if (e.isDirectory()) walk(f);
        else h.update(`${path.relative(dataDir, f)}:${readFileSync(f).length}\n`);
      }
    };
    const root = path.join(dataDir, dir);
    if (existsSync(root)) walk(root);
  }
  return h.digest('hex');
}

/** Builds (or loads from the cache) the packed pretraining corpus. */
export function buildPretrainCorpus(opts: BuildCorpusOptions): PretrainCorpus {
  const log = opts.log ?? (() => {});
  const { tokenizer, seqLen } = opts;
  if (seqLen < 8) throw new SchemaError(`sequence length ${seqLen} is too short (minimum 8)`);
  const key = createHash('sha256')
    .update(JSON.stringify({ v: 2, seqLen, seed: opts.seed, max: opts.maxDocumentsPerSource ?? null, vocab: tokenizer.vocabSha256 }))
    .update(dataFingerprint(opts.dataDir))
    .digest('hex')
    .slice(0, 16);
  const cacheBase = opts.cacheDir ? path.join(opts.cacheDir, `pretrain-corpus-${key}`) : null;
  if (cacheBase && existsSync(`${cacheBase}.json`) && existsSync(`${cacheBase}.bin`)) {
    const meta = JSON.parse(readFileSync(`${cacheBase}.json`, 'utf8')) as Omit<PretrainCorpus, 'sequences' | 'vocabUsed'> & { vocabUsed: number[] };
    const buf = readFileSync(`${cacheBase}.bin`);
    const sequences = new Int32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    log(`corpus: loaded ${meta.numSequences} sequences from ${cacheBase}.bin`);
    return { ...meta, sequences, vocabUsed: Int32Array.from(meta.vocabUsed) };
  }

  const docs = readCorpusDocuments(opts.dataDir, opts.maxDocumentsPerSource);
  const seen = new Set<string>();
  const stats = new Map<string, CorpusSourceStats>();
  const kept: string[][] = [];
  let chars = 0;
  for (const doc of docs) {
    const sentences: string[] = [];
    for (const s of splitSentences(doc.text)) {
      // Very short fragments ("好", "!") repeat across reviews by chance; keep them, dedupe the rest.
      if (s.length >= 8) {
        if (seen.has(s)) continue;
        seen.add(s);
      }
      sentences.push(s);
    }
    if (sentences.length === 0) continue;
    kept.push(sentences);
    const st = stats.get(doc.source) ?? { source: doc.source, documents: 0, chars: 0 };
    st.documents++;
    for (const s of sentences) {
      st.chars += s.length;
      chars += s.length;
    }
    stats.set(doc.source, st);
  }
  log(`corpus: ${docs.length} documents read, ${kept.length} kept after deduplication, ${chars} chars`);
  shuffleInPlace(kept, mulberry32(opts.seed));

  const packed = packSentences(kept, tokenizer, seqLen);
  const { sequences, numSequences, tokens, vocabUsed } = packed;
  const corpus: PretrainCorpus = {
    seqLen,
    sequences,
    numSequences,
    tokens,
    chars,
    sources: [...stats.values()],
    vocabUsed,
    key,
  };
  log(`corpus: ${tokens} tokens in ${numSequences} sequences of ${seqLen}; ${vocabUsed.length} distinct token ids`);
  if (cacheBase) {
    mkdirSync(path.dirname(cacheBase), { recursive: true });
    const { sequences: _s, vocabUsed: _v, ...meta } = corpus;
    writeFileSync(`${cacheBase}.bin.tmp`, Buffer.from(sequences.buffer, sequences.byteOffset, sequences.byteLength));
    renameSync(`${cacheBase}.bin.tmp`, `${cacheBase}.bin`);
    writeFileSync(`${cacheBase}.json.tmp`, JSON.stringify({ ...meta, vocabUsed: [...vocabUsed] }));
    renameSync(`${cacheBase}.json.tmp`, `${cacheBase}.json`);
  }
  return corpus;
}

export interface PackedSequences {
  sequences: Int32Array;
  numSequences: number;
  tokens: number;
  vocabUsed: Int32Array;
}

/**
 * Packs documents (each a list of sentences, in order) into rows of seqLen token ids: the token stream,
 * documents separated by [SEP], is cut into windows of seqLen - 2 tokens, each wrapped as [CLS] window
 * [SEP]; only the last row is padded.
 */
export function packSentences(documents: readonly (readonly string[])[], tokenizer: BertTokenizer, seqLen: number): PackedSequences {
  const body = seqLen - 2;
  const stream: number[] = [];
  for (const sentences of documents) {
    for (const s of sentences) for (const t of tokenizer.tokenize(s)) stream.push(t.id);
    stream.push(tokenizer.sepId);
  }
  const numSequences = Math.ceil(stream.length / body);
  const sequences = new Int32Array(numSequences * seqLen).fill(tokenizer.padId);
  let tokens = 0;
  for (let q = 0; q < numSequences; q++) {
    const row = q * seqLen;
    const window = stream.slice(q * body, (q + 1) * body);
    sequences[row] = tokenizer.clsId;
    sequences.set(window, row + 1);
    sequences[row + 1 + window.length] = tokenizer.sepId;
    tokens += window.length + 2;
  }
  const used = new Set<number>(stream);
  for (const id of [tokenizer.clsId, tokenizer.sepId, tokenizer.padId, tokenizer.maskId, tokenizer.unkId]) used.add(id);
  return { sequences, numSequences, tokens, vocabUsed: Int32Array.from([...used].sort((a, b) => a - b)) };
}
