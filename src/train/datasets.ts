/**
 * NER dataset readers: K-BERT TSV, MSRA IOB2 (dh_msra.zip), CCKS 2017 raw records (data_origin.zip).
 *
 * Every reader validates what it reads and throws a SchemaError naming the file, the line and what is
 * wrong. One defect is repaired instead of refused, because the published splits contain it: an I-X
 * tag that does not continue an X entity (K-BERT cut some records mid-entity, so a sentence can start
 * with I-X). It is rewritten to B-X, counted in `stats.repairedOrphans`, listed in the sentence's
 * `repaired` indices and reported as a warning; `originalLabels()` gives the tags back as in the file
 * (K-BERT's scorer, which we replicate, sees those).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import AdmZip from 'adm-zip';
import { SchemaError } from '../errors/index.ts';

export interface NerSentence {
  /** Characters (tokens) as in the file. */
  chars: string[];
  /** The characters joined. */
  text: string;
  /** One BIO tag per character, after repair (valid BIO). */
  labels: string[];
  /** Indices whose tag was an orphan I-X in the file and is B-X here. */
  repaired: number[];
}

export interface DatasetStats {
  sentences: number;
  chars: number;
  /** Entities per type after repair (what training and the strict metric see). */
  entities: Record<string, number>;
  totalEntities: number;
  /** B- tags per type as in the file (the paper's table 1 counts these). */
  beginTags: Record<string, number>;
  totalBeginTags: number;
  repairedOrphans: number;
}

export interface NerDataset {
  name: string;
  /** Where it was read from (file, or zip!entry). */
  source: string;
  sentences: NerSentence[];
  stats: DatasetStats;
  /** Human-readable notes on repairs; empty when the file was clean. */
  warnings: string[];
}

export interface ReadOptions {
  /** Allowed entity types (without B-/I-). A tag of another type is refused. */
  types?: readonly string[];
  name?: string;
}

/** CCKS 2017 CNER entity types as K-BERT names them, with the Chinese names of the paper's tables. */
export const MEDICAL_TYPES = ['BodyPart', 'Symptom', 'Disease', 'Examine', 'Cure'] as const;
export const MEDICAL_TYPE_NAMES_ZH: Record<string, string> = {
  BodyPart: '身体部位',
  Symptom: '疾病症状',
  Disease: '疾病实体',
  Examine: '医学检查',
  Cure: '治疗方式',
};
/** CCKS 2017 annotation categories -> type names used in the tag set. */
export const CCKS_CATEGORY_TO_TYPE: Record<string, string> = {
  身体部位: 'BodyPart',
  症状和体征: 'Symptom',
  疾病和诊断: 'Disease',
  检查和检验: 'Examine',
  治疗: 'Cure',
};
export const MSRA_TYPES = ['PER', 'ORG', 'LOC'] as const;
/** dh_msra.txt: sentences [0, 50658) are the MSRA training set, the rest the official test set. */
export const MSRA_TRAIN_SENTENCES = 50_658;
export const MSRA_TEST_SENTENCES = 4_631;

/** The BIO label list for a set of types: "O" first, then B-/I- per type in the given order. */
export function bioLabels(types: readonly string[]): string[] {
  const out = ['O'];
  for (const t of types) out.push(`B-${t}`, `I-${t}`);
  return out;
}

/** Tags as they were in the file (orphan I- restored). */
export function originalLabels(s: NerSentence): string[] {
  if (s.repaired.length === 0) return s.labels;
  const out = s.labels.slice();
  for (const i of s.repaired) out[i] = `I-${out[i].slice(2)}`;
  return out;
}

const TAG_PATTERN = /^(?:O|[BI]-[^\s]+)$/;

/**
 * Checks and repairs one tag sequence. Returns the repaired labels and the indices repaired;
 * throws (via `fail`) on a malformed tag or an unknown type.
 */
function checkTags(
  tags: string[],
  allowed: ReadonlySet<string> | undefined,
  fail: (what: string) => never,
): { labels: string[]; repaired: number[] } {
  const labels = tags.slice();
  const repaired: number[] = [];
  let currentType: string | null = null;
  for (let i = 0; i < labels.length; i++) {
    const tag = labels[i];
    if (!TAG_PATTERN.test(tag)) fail(`tag ${i + 1} "${tag}" is not O, B-TYPE or I-TYPE`);
    if (tag === 'O') {
      currentType = null;
      continue;
    }
    const type = tag.slice(2);
    if (allowed && !allowed.has(type)) {
      fail(`tag ${i + 1} "${tag}" has unknown type "${type}" (expected one of ${[...allowed].join(', ')})`);
    }
    if (tag[0] === 'I' && currentType !== type) {
      labels[i] = `B-${type}`;
      repaired.push(i);
    }
    currentType = type;
  }
  return { labels, repaired };
}

function makeSentence(chars: string[], tags: string[], allowed: ReadonlySet<string> | undefined, fail: (what: string) => never): NerSentence {
  if (chars.length === 0) fail('empty sentence');
  if (chars.length !== tags.length) fail(`${chars.length} characters but ${tags.length} tags`);
  for (let i = 0; i < chars.length; i++) if (chars[i] === '') fail(`character ${i + 1} is empty (two separators in a row)`);
  const { labels, repaired } = checkTags(tags, allowed, fail);
  return { chars, text: chars.join(''), labels, repaired };
}

/** Entity counts and repair counts over sentences. */
export function computeStats(sentences: readonly NerSentence[]): DatasetStats {
  const entities: Record<string, number> = {};
  const beginTags: Record<string, number> = {};
  let chars = 0;
  let repairedOrphans = 0;
  for (const s of sentences) {
    chars += s.chars.length;
    repairedOrphans += s.repaired.length;
    const repairedSet = s.repaired.length ? new Set(s.repaired) : null;
    for (let i = 0; i < s.labels.length; i++) {
      const tag = s.labels[i];
      if (tag[0] !== 'B') continue;
      const type = tag.slice(2);
      entities[type] = (entities[type] ?? 0) + 1;
      if (!repairedSet?.has(i)) beginTags[type] = (beginTags[type] ?? 0) + 1;
    }
  }
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
  return {
    sentences: sentences.length,
    chars,
    entities,
    totalEntities: sum(entities),
    beginTags,
    totalBeginTags: sum(beginTags),
    repairedOrphans,
  };
}

function finish(name: string, source: string, sentences: NerSentence[], repairNotes: string[]): NerDataset {
  const stats = computeStats(sentences);
  const warnings: string[] = [];
  if (stats.repairedOrphans > 0) {
    const shown = repairNotes.length ? ` (${repairNotes.slice(0, 5).join('; ')}${repairNotes.length > 5 ? '; ...' : ''})` : '';
    warnings.push(`${source}: ${stats.repairedOrphans} I- tag(s) without a preceding B- of the same type were repaired to B-${shown}`);
  }
  return { name, source, sentences, stats, warnings };
}

function typeSet(types: readonly string[] | undefined): ReadonlySet<string> | undefined {
  return types ? new Set(types) : undefined;
}

/** Parses K-BERT's NER TSV text (header `text_a<TAB>label`). `source` names the file in errors. */
export function parseKbertTsv(content: string, source: string, options: ReadOptions = {}): NerDataset {
  const allowed = typeSet(options.types);
  const lines = content.split('\n');
  const header = lines[0]?.replace(/\r$/, '').replace(/^\uFEFF/, '');
  if (header !== 'text_a\tlabel') {
    throw new SchemaError(`${source}:1: expected the header "text_a<TAB>label", found ${JSON.stringify(header?.slice(0, 60) ?? '')}`);
  }
  const sentences: NerSentence[] = [];
  const notes: string[] = [];
  for (let n = 1; n < lines.length; n++) {
    const line = lines[n].replace(/\r$/, '');
    const lineNo = n + 1;
    const fail = (what: string): never => {
      throw new SchemaError(`${source}:${lineNo}: ${what}`);
    };
    if (line === '') {
      // A trailing newline leaves one empty last line; an empty line elsewhere is an empty sentence.
      if (n === lines.length - 1) continue;
      fail('empty line (empty sentence)');
    }
    const fields = line.split('\t');
    if (fields.length !== 2) fail(`expected 2 tab-separated fields (text_a, label), found ${fields.length}`);
    const s = makeSentence(fields[0].split(' '), fields[1].split(' '), allowed, fail);
    for (const i of s.repaired) notes.push(`line ${lineNo} tag ${i + 1} ${s.labels[i].replace(/^B/, 'I')}`);
    sentences.push(s);
  }
  if (sentences.length === 0) throw new SchemaError(`${source}: no sentences after the header`);
  return finish(options.name ?? path.basename(source, '.tsv'), source, sentences, notes);
}

export function readKbertTsv(file: string, options: ReadOptions = {}): NerDataset {
  return parseKbertTsv(readText(file), file, options);
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new SchemaError(`cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
}

function openZip(file: string): AdmZip {
  try {
    return new AdmZip(file);
  } catch (error) {
    throw new SchemaError(`cannot open zip ${file}: ${(error as Error).message}`, { cause: error });
  }
}

/** Parses IOB2 `char<TAB>tag` lines with blank lines between sentences. */
export function parseIob2(content: string, source: string, options: ReadOptions = {}): NerDataset {
  const allowed = typeSet(options.types);
  const sentences: NerSentence[] = [];
  const notes: string[] = [];
  let chars: string[] = [];
  let tags: string[] = [];
  let startLine = 1;
  const lines = content.split('\n');
  const flush = (endLine: number) => {
    if (chars.length === 0) return;
    const fail = (what: string): never => {
      throw new SchemaError(`${source}:${startLine}-${endLine}: sentence ${sentences.length + 1}: ${what}`);
    };
    const s = makeSentence(chars, tags, allowed, fail);
    for (const i of s.repaired) notes.push(`line ${startLine + i} ${s.labels[i].replace(/^B/, 'I')}`);
    sentences.push(s);
    chars = [];
    tags = [];
  };
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n].replace(/\r$/, '');
    if (line.trim() === '') {
      flush(n);
      continue;
    }
    if (chars.length === 0) startLine = n + 1;
    const fields = line.split('\t');
    if (fields.length !== 2) {
      throw new SchemaError(`${source}:${n + 1}: expected "char<TAB>tag", found ${fields.length} field(s): ${JSON.stringify(line.slice(0, 40))}`);
    }
    if (fields[0] === '') throw new SchemaError(`${source}:${n + 1}: empty character`);
    chars.push(fields[0]);
    tags.push(fields[1]);
  }
  flush(lines.length);
  if (sentences.length === 0) throw new SchemaError(`${source}: no sentences`);
  return finish(options.name ?? path.basename(source), source, sentences, notes);
}

export interface MsraSplits {
  train: NerDataset;
  test: NerDataset;
}

/**
 * MSRA NER from dh_msra.zip: train = the first 50,658 sentences, test = the last 4,631. A file with
 * another sentence count is refused: the split points would no longer mean what they say.
 */
export function readMsraZip(zipFile: string): MsraSplits {
  const zip = openZip(zipFile);
  const entry = zip.getEntries().find((e) => path.basename(e.entryName) === 'dh_msra.txt');
  if (!entry) throw new SchemaError(`${zipFile}: no dh_msra.txt inside the zip`);
  const source = `${zipFile}!${entry.entryName}`;
  const all = parseIob2(entry.getData().toString('utf8'), source, { types: MSRA_TYPES, name: 'msra' });
  const expected = MSRA_TRAIN_SENTENCES + MSRA_TEST_SENTENCES;
  if (all.sentences.length !== expected) {
    throw new SchemaError(`${source}: expected ${expected} sentences (train ${MSRA_TRAIN_SENTENCES} + test ${MSRA_TEST_SENTENCES}), found ${all.sentences.length}`);
  }
  const train = all.sentences.slice(0, MSRA_TRAIN_SENTENCES);
  const test = all.sentences.slice(MSRA_TRAIN_SENTENCES);
  return { train: finish('msra-train', source, train, []), test: finish('msra-test', source, test, []) };
}

export interface CcksEntity {
  mention: string;
  /** Offsets into `text`, end exclusive (the file's end is inclusive). */
  start: number;
  end: number;
  category: string;
  type: string;
}

export interface CcksRecord {
  /** Path of the text inside the zip, e.g. data_origin/一般项目/一般项目-1.txtoriginal.txt */
  name: string;
  section: string;
  text: string;
  entities: CcksEntity[];
}

/**
 * CCKS 2017 CNER raw records: `*.txtoriginal.txt` (text) with `*.txt` annotations
 * `mention<TAB>start<TAB>end<TAB>category`, 0-based, end inclusive. Refuses a mention that is not the
 * text at its offsets, overlapping annotations, unknown categories and records without a partner file.
 */
export function readCcks2017Zip(zipFile: string): CcksRecord[] {
  const zip = openZip(zipFile);
  const entries = new Map(zip.getEntries().map((e) => [e.entryName, e]));
  const records: CcksRecord[] = [];
  const textNames = [...entries.keys()].filter((n) => n.endsWith('.txtoriginal.txt')).sort();
  if (textNames.length === 0) throw new SchemaError(`${zipFile}: no *.txtoriginal.txt records inside the zip`);
  for (const name of textNames) {
    const annName = name.replace(/\.txtoriginal\.txt$/, '.txt');
    const annEntry = entries.get(annName);
    if (!annEntry) throw new SchemaError(`${zipFile}!${name}: no annotation file ${annName}`);
    const text = entries.get(name)!.getData().toString('utf8');
    const source = `${zipFile}!${annName}`;
    const entities: CcksEntity[] = [];
    const lines = annEntry.getData().toString('utf8').split('\n');
    for (let n = 0; n < lines.length; n++) {
      const line = lines[n].replace(/\r$/, '');
      if (line.trim() === '') continue;
      const fail = (what: string): never => {
        throw new SchemaError(`${source}:${n + 1}: ${what}`);
      };
      const fields = line.split('\t');
      if (fields.length !== 4) fail(`expected mention<TAB>start<TAB>end<TAB>category, found ${fields.length} field(s)`);
      const [mention, startText, endText, category] = fields;
      if (!/^\d+$/.test(startText) || !/^\d+$/.test(endText)) fail(`start/end must be integers, found "${startText}", "${endText}"`);
      const start = Number(startText);
      const end = Number(endText) + 1;
      if (end <= start || end > text.length) fail(`offsets [${startText}, ${endText}] are outside the text (length ${text.length}) or reversed`);
      if (text.slice(start, end) !== mention) fail(`mention "${mention}" is not the text at [${startText}, ${endText}]: "${text.slice(start, end)}"`);
      const type = CCKS_CATEGORY_TO_TYPE[category];
      if (!type) fail(`unknown category "${category}" (expected one of ${Object.keys(CCKS_CATEGORY_TO_TYPE).join(', ')})`);
      entities.push({ mention, start, end, category, type });
    }
    entities.sort((a, b) => a.start - b.start);
    for (let i = 1; i < entities.length; i++) {
      if (entities[i].start < entities[i - 1].end) {
        throw new SchemaError(`${source}: annotations "${entities[i - 1].mention}" and "${entities[i].mention}" overlap`);
      }
    }
    records.push({ name, section: path.basename(path.dirname(name)), text, entities });
  }
  return records;
}

/** A CCKS record as one tagged sentence (trailing whitespace dropped; it never holds an entity). */
export function ccksRecordToSentence(record: CcksRecord): NerSentence {
  const text = record.text.replace(/\s+$/, '');
  const chars = Array.from({ length: text.length }, (_, i) => text[i]);
  const labels = new Array<string>(chars.length).fill('O');
  for (const e of record.entities) {
    labels[e.start] = `B-${e.type}`;
    for (let i = e.start + 1; i < e.end; i++) labels[i] = `I-${e.type}`;
  }
  if (chars.length === 0) throw new SchemaError(`${record.name}: empty record`);
  return { chars, text, labels, repaired: [] };
}

/** Default location of the shared datasets: `../shared/data` beside the repository. */
export function defaultDataDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../shared/data');
}

export type NamedCorpus = 'medical' | 'msra';
export type SplitName = 'train' | 'dev' | 'test';

export interface CorpusSplits {
  corpus: NamedCorpus;
  types: readonly string[];
  train: NerDataset;
  dev: NerDataset;
  test: NerDataset;
}

/**
 * The evaluation corpora as the paper uses them.
 * medical: K-BERT's CCKS 2017 split (train / dev / test TSV).
 * msra: K-BERT's dev/test TSV; train = dh_msra's training part minus every sentence that appears in
 * K-BERT's dev or test (they were drawn from it), which rebuilds a K-BERT-like train set without leakage.
 */
export function loadCorpus(corpus: NamedCorpus, dataDir = defaultDataDir()): CorpusSplits {
  if (corpus === 'medical') {
    const dir = path.join(dataDir, 'kbert-medical-ner');
    const read = (split: SplitName) => readKbertTsv(path.join(dir, `${split}.tsv`), { types: MEDICAL_TYPES, name: `medical-${split}` });
    return { corpus, types: MEDICAL_TYPES, train: read('train'), dev: read('dev'), test: read('test') };
  }
  const dir = path.join(dataDir, 'kbert-msra-ner');
  const read = (split: SplitName) => readKbertTsv(path.join(dir, `${split}.tsv`), { types: MSRA_TYPES, name: `msra-${split}` });
  const dev = read('dev');
  const test = read('test');
  const full = readMsraZip(path.join(dataDir, 'msra-dh', 'dh_msra.zip')).train;
  const kept = withoutOverlap(full.sentences, [...dev.sentences, ...test.sentences]);
  const train = finish('msra-train', `${full.source} (minus K-BERT dev/test)`, kept, []);
  return { corpus, types: MSRA_TYPES, train, dev, test };
}

/** Length of the character windows that `withoutOverlap` compares. */
const OVERLAP_WINDOW = 16;

/**
 * The sentences of `pool` that share no text with `held`: neither equal to a held sentence, nor
 * sharing a window of 16 characters with one, nor (when shorter than 16 characters) inside one. K-BERT's MSRA dev/test re-cut some training sentences
 * at other boundaries, so equality alone would leave part of them in the training set.
 */
export function withoutOverlap(pool: readonly NerSentence[], held: readonly NerSentence[]): NerSentence[] {
  const exact = new Set<string>();
  const windows = new Set<string>();
  for (const s of held) {
    exact.add(s.text);
    for (let i = 0; i + OVERLAP_WINDOW <= s.text.length; i++) windows.add(s.text.slice(i, i + OVERLAP_WINDOW));
  }
  // A pool sentence shorter than the window can still sit inside a held sentence; joined with a separator
  // no sentence contains, one substring search per short sentence finds it.
  const heldText = held.map((s) => s.text).join('\u0000');
  return pool.filter((s) => {
    if (exact.has(s.text)) return false;
    if (s.text.length < OVERLAP_WINDOW) return !heldText.includes(s.text);
    for (let i = 0; i + OVERLAP_WINDOW <= s.text.length; i++) if (windows.has(s.text.slice(i, i + OVERLAP_WINDOW))) return false;
    return true;
  });
}

/** Deterministic subset: the first `n` sentences after a seeded shuffle (for budgeted runs). */
export function subsetSentences(sentences: readonly NerSentence[], n: number, seed: number): NerSentence[] {
  if (n >= sentences.length) return sentences.slice();
  const order = sentences.map((_, i) => i);
  const rand = xorshift(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order.slice(0, n).sort((a, b) => a - b).map((i) => sentences[i]);
}

/**
 * Removes `fraction` of the entities of one type from the training data (their tags become O), chosen
 * with a seeded shuffle over all of them: the entity-deletion experiment of paper fig. 8.
 */
export function deleteEntities(
  sentences: readonly NerSentence[],
  type: string,
  fraction: number,
  seed: number,
): { sentences: NerSentence[]; removed: number; kept: number } {
  const found: Array<[number, number]> = [];
  sentences.forEach((s, i) => s.labels.forEach((tag, j) => tag === `B-${type}` && found.push([i, j])));
  const rand = xorshift(seed);
  for (let i = found.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [found[i], found[j]] = [found[j], found[i]];
  }
  const removed = Math.floor(found.length * fraction);
  const out = sentences.map((s) => s);
  for (const [i, start] of found.slice(0, removed)) {
    const s = out[i] === sentences[i] ? { ...sentences[i], labels: sentences[i].labels.slice(), repaired: sentences[i].repaired.slice() } : out[i];
    let j = start;
    do {
      s.labels[j] = 'O';
      j++;
    } while (j < s.labels.length && s.labels[j] === `I-${type}`);
    s.repaired = s.repaired.filter((r) => s.labels[r] !== 'O');
    out[i] = s;
  }
  return { sentences: out, removed, kept: found.length - removed };
}

function xorshift(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 0x1_0000_0000;
  };
}
