/**
 * `rmbert features`: writes the knowledge-injected, tokenised NER examples of a corpus for the PyTorch
 * trainer (python/rmbert_train/features.py reads them), built exactly as `rmbert finetune` and
 * `rmbert eval` build them (createInjector + prepareExamples), so that the TypeScript knowledge layer
 * stays the one implementation of the sentence tree.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { writeAdditiveMask } from '../../domain/index.ts';
import { ConfigError } from '../../errors/index.ts';
import { resolveTreeOptions } from '../../knowledge/index.ts';
import type { InjectMode } from '../../knowledge/index.ts';
import { BertTokenizer } from '../../model/tokenizer.ts';
import { bioLabels, defaultDataDir, loadCorpus } from '../../train/datasets.ts';
import type { NamedCorpus, NerSentence, SplitName } from '../../train/datasets.ts';
import { createInjector, prepareExamples } from '../../train/evaluate.ts';
import type { InjectorSetup, KnowledgeSetup, PreparedSet } from '../../train/evaluate.ts';
import { collectTerms, dropTerms, termsToSpo } from '../../train/terms.ts';
import { CORPUS_DEFAULTS } from './finetune.ts';

export const summary = 'write the knowledge-injected NER examples (sentence trees, labels, visibility) for the PyTorch trainer';

export const FEATURES_FORMAT = 'rmbert-features/1';
const SPLITS: readonly SplitName[] = ['train', 'dev', 'test'];
/** The sentence tree's own defaults, which are also `rmbert finetune`'s (--max-entities 2, --max-length 256, relation+object). */
const TREE_DEFAULTS = resolveTreeOptions();

const HELP = `usage: rmbert features --corpus medical|msra [options]

Writes the NER examples of K-BERT's splits as fine-tuning and evaluation build them: knowledge from the
graph injected into every sentence (sentence tree: tokens, soft positions, visibility), long sentences
split into windows, BIO label ids aligned to the tokens. One folder per split, DIR/<split>/, of
little-endian raw arrays (numpy.fromfile reads them; python/rmbert_train/features.py loads a split):
  meta.json               format, corpus, split, labels (index = label id), knowledge settings, graph
                          version, vocabSha256, padId/clsId/sepId, examples, sentences, tokens, stats
  offsets.i32             [examples + 1] start of each example in the token arrays below
  token_ids.i32  soft_positions.i32  segment_ids.i32
  label_ids.i32           -1 for tokens the loss ignores (injected, [CLS], [SEP])
  char_start.i32  char_end.i32   UTF-16 offsets [start, end) into the sentence text; -1 for injected
                          and special tokens
  sentence.i32            [examples] the sentence each example (window) belongs to
  visibility.u8           per example its L x L visibility (1 visible), row-major, bit-packed as
                          numpy.packbits does (element 0 = bit 0x80 of byte 0), padded to a whole byte
  visibility_offsets.i64  [examples + 1] byte offset of each example's bits
  sentences.jsonl         per sentence {"text", "labels": one BIO tag per character} (+ "repaired":
                          indices of I- tags the reader changed to B-, when there are any)

  --corpus NAME         medical (K-BERT's CCKS 2017 split) or msra (dh_msra train minus K-BERT dev/test,
                        K-BERT's dev and test)
  --splits LIST         comma-separated subset of train,dev,test (default all three)
  --out DIR             output folder (default .cache/features/<corpus>-<knowledge tag>, the tag being
                        kg or nokg plus -object, -e<N>, -len<N>, -nopos, -nomask, -<graph name> for
                        non-default settings)
  --data-dir DIR        shared data folder (default ../shared/data)
knowledge (defaults as in \`rmbert finetune\`):
  --kg FILE             .spo graph (default: data/kg/Medical.spo for medical,
                        ../shared/data/kbert-kgs/HowNet.spo for msra)
  --no-knowledge        no knowledge injection (ablation -KG; the BERT baseline)
  --no-soft-positions   hard positions as position ids (ablation -POS)
  --no-visibility       every token sees every token (ablation -MASK)
  --inject MODE         relation+object (default) or object
  --max-entities N      branches per matched name (default ${TREE_DEFAULTS.maxEntities})
  --max-length N        tokens per example, branches and [CLS]/[SEP] included (default ${TREE_DEFAULTS.maxLength});
                        longer sentences lose branches first, then are split into windows
  --extra-kg FILE       another .spo graph loaded beside --kg (repeatable), e.g. the CMeKG typed view
                        that scripts/kg/cmekg_to_spo.py writes
  --terms               also inject the TRAINING split's entity list as a term list (src/train/terms.ts:
                        surface, 词表, type), as a hospital's own term list would be
  --terms-drop F        fraction of the term list's surfaces dropped at random in the train split, so the
                        model does not trust the list blindly (default 0.3; dev and test see the whole list)
  --terms-variants K    write K train splits with different drops (train, train-1, ..., train-<K-1>);
                        python/rmbert_train/finetune.py uses one per epoch in turn (default 1)
  --limit N             only the first N sentences of each split (for tests and quick looks)
  -h, --help            this text
`;

function integer(raw: string | undefined, name: string, fallback: number, min: number, problems: string[]): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    problems.push(`--${name} must be an integer >= ${min} (got "${raw}")`);
    return fallback;
  }
  return n;
}

/** The default output folder's suffix: which knowledge the examples carry. */
export function knowledgeTag(k: KnowledgeSetup, defaultKg: string): string {
  const parts = [k.enabled ? 'kg' : 'nokg'];
  if (k.enabled) {
    if (k.kgFile && path.resolve(k.kgFile) !== path.resolve(defaultKg)) parts.push(path.basename(k.kgFile, '.spo').toLowerCase());
    if (k.inject !== TREE_DEFAULTS.inject) parts.push('object');
    if (k.maxEntities !== TREE_DEFAULTS.maxEntities) parts.push(`e${k.maxEntities}`);
  }
  if (k.maxLength !== TREE_DEFAULTS.maxLength) parts.push(`len${k.maxLength}`);
  if (!k.softPositions) parts.push('nopos');
  if (!k.visibilityMatrix) parts.push('nomask');
  return parts.join('-');
}

export interface SplitInfo {
  corpus: NamedCorpus;
  split: SplitName;
  labels: readonly string[];
  knowledge: KnowledgeSetup;
  kgVersion: string | null;
  triples: number;
  /** The training split's term list injected beside the graph (src/train/terms.ts), when it is. */
  terms?: { surfaces: number; kept: number; dropFraction: number; seed: number | null } | null;
  tokenizer: Pick<BertTokenizer, 'vocabSha256' | 'padId' | 'clsId' | 'sepId'>;
}

export interface WrittenSplit {
  dir: string;
  examples: number;
  tokens: number;
  bytes: number;
}

function bytesOf(a: Int32Array | Uint8Array | BigInt64Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Writes one prepared split into `dir` (created; meta.json is written last, so its presence marks a complete split). */
export function writeFeatureSplit(dir: string, prepared: PreparedSet, info: SplitInfo): WrittenSplit {
  if (os.endianness() !== 'LE') throw new ConfigError(['rmbert features writes little-endian arrays and this machine is big-endian']);
  mkdirSync(dir, { recursive: true });
  rmSync(path.join(dir, 'meta.json'), { force: true });
  const { examples } = prepared;
  const N = examples.length;
  let total = 0;
  let maxTokens = 0;
  let visBytes = 0;
  for (const ex of examples) {
    const L = ex.tree.tokenIds.length;
    total += L;
    maxTokens = Math.max(maxTokens, L);
    visBytes += Math.ceil((L * L) / 8);
  }
  const offsets = new Int32Array(N + 1);
  const tokenIds = new Int32Array(total);
  const softPositions = new Int32Array(total);
  const segmentIds = new Int32Array(total);
  const labelIds = new Int32Array(total);
  const charStart = new Int32Array(total);
  const charEnd = new Int32Array(total);
  const sentence = new Int32Array(N);
  const visibility = new Uint8Array(visBytes);
  const visOffsets = new BigInt64Array(N + 1);
  const scratch = new Float32Array(maxTokens * maxTokens);

  let at = 0;
  let byte = 0;
  examples.forEach((ex, n) => {
    const t = ex.tree;
    const L = t.tokenIds.length;
    offsets[n] = at;
    tokenIds.set(t.tokenIds, at);
    softPositions.set(t.softPositions, at);
    segmentIds.set(t.segmentIds, at);
    labelIds.set(ex.labelIds, at);
    charStart.set(t.charStart, at);
    charEnd.set(t.charEnd, at);
    sentence[n] = ex.sentence;
    at += L;
    // The mask the tfjs model gets (0 = visible), bit-packed: element k -> bit 0x80 >> (k % 8) of byte k / 8.
    visOffsets[n] = BigInt(byte);
    writeAdditiveMask(t, scratch, 0, L, L);
    for (let k = 0; k < L * L; k++) if (scratch[k] === 0) visibility[byte + (k >> 3)] |= 0x80 >> (k & 7);
    byte += Math.ceil((L * L) / 8);
  });
  offsets[N] = at;
  visOffsets[N] = BigInt(byte);

  const files: Array<[string, Buffer | string]> = [
    ['offsets.i32', bytesOf(offsets)],
    ['token_ids.i32', bytesOf(tokenIds)],
    ['soft_positions.i32', bytesOf(softPositions)],
    ['segment_ids.i32', bytesOf(segmentIds)],
    ['label_ids.i32', bytesOf(labelIds)],
    ['char_start.i32', bytesOf(charStart)],
    ['char_end.i32', bytesOf(charEnd)],
    ['sentence.i32', bytesOf(sentence)],
    ['visibility.u8', bytesOf(visibility)],
    ['visibility_offsets.i64', bytesOf(visOffsets)],
    ['sentences.jsonl', prepared.sentences.map(sentenceLine).join('')],
  ];
  const k = info.knowledge;
  const meta = {
    format: FEATURES_FORMAT,
    corpus: info.corpus,
    split: info.split,
    labels: info.labels,
    knowledge: {
      enabled: k.enabled,
      inject: k.inject,
      maxEntities: k.maxEntities,
      maxLength: k.maxLength,
      softPositions: k.softPositions,
      visibilityMatrix: k.visibilityMatrix,
      kgFile: k.enabled && k.kgFile ? path.basename(k.kgFile) : null,
      ...(k.extraKgFiles?.length ? { extraKgFiles: k.extraKgFiles.map((f) => path.basename(f)) } : {}),
      kgVersion: info.kgVersion,
      triples: info.triples,
      terms: info.terms ?? null,
    },
    vocabSha256: info.tokenizer.vocabSha256,
    padId: info.tokenizer.padId,
    clsId: info.tokenizer.clsId,
    sepId: info.tokenizer.sepId,
    examples: N,
    sentences: prepared.sentences.length,
    tokens: total,
    maxTokens,
    visibilityBytes: byte,
    /** char_start/char_end count UTF-16 code units; true when every labelled character is one unit (offsets index `labels`). */
    charsAreCodeUnits: prepared.sentences.every((s) => s.text.length === s.chars.length),
    stats: prepared.stats,
  };
  let bytes = 0;
  for (const [name, content] of files) {
    writeFileSync(path.join(dir, name), content);
    bytes += typeof content === 'string' ? Buffer.byteLength(content) : content.byteLength;
  }
  const metaText = `${JSON.stringify(meta, null, 1)}\n`;
  writeFileSync(path.join(dir, 'meta.json'), metaText);
  bytes += Buffer.byteLength(metaText);
  return { dir, examples: N, tokens: total, bytes };
}

function sentenceLine(s: NerSentence): string {
  const line: { text: string; labels: string[]; repaired?: number[] } = { text: s.text, labels: s.labels };
  if (s.repaired.length) line.repaired = s.repaired;
  return `${JSON.stringify(line)}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      corpus: { type: 'string' },
      splits: { type: 'string' },
      out: { type: 'string' },
      'data-dir': { type: 'string' },
      kg: { type: 'string' },
      'no-knowledge': { type: 'boolean' },
      'no-soft-positions': { type: 'boolean' },
      'no-visibility': { type: 'boolean' },
      inject: { type: 'string' },
      'max-entities': { type: 'string' },
      'max-length': { type: 'string' },
      limit: { type: 'string' },
      terms: { type: 'boolean' },
      'extra-kg': { type: 'string', multiple: true },
      'terms-drop': { type: 'string' },
      'terms-variants': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const problems: string[] = [];
  if (values.corpus !== 'medical' && values.corpus !== 'msra') problems.push('--corpus must be medical or msra');
  const corpusName: NamedCorpus = values.corpus === 'msra' ? 'msra' : 'medical';
  const splits = (values.splits ?? SPLITS.join(',')).split(',').map((s) => s.trim());
  for (const s of splits) if (!SPLITS.includes(s as SplitName)) problems.push(`--splits: "${s}" is not one of ${SPLITS.join(', ')}`);
  if (new Set(splits).size !== splits.length) problems.push('--splits names a split twice');
  const inject = (values.inject ?? TREE_DEFAULTS.inject) as InjectMode;
  if (inject !== 'relation+object' && inject !== 'object') problems.push(`--inject must be relation+object or object (got "${values.inject}")`);
  const defaultKg = CORPUS_DEFAULTS[corpusName].kg;
  const knowledge: KnowledgeSetup = {
    enabled: !values['no-knowledge'],
    kgFile: path.resolve(values.kg ?? defaultKg),
    inject,
    maxEntities: integer(values['max-entities'], 'max-entities', TREE_DEFAULTS.maxEntities, 0, problems),
    maxLength: integer(values['max-length'], 'max-length', TREE_DEFAULTS.maxLength, 8, problems),
    softPositions: !values['no-soft-positions'],
    visibilityMatrix: !values['no-visibility'],
  };
  if (knowledge.enabled && !existsSync(knowledge.kgFile!)) problems.push(`knowledge graph file ${knowledge.kgFile} not found (give --kg FILE or --no-knowledge)`);
  const extraKg = (values['extra-kg'] ?? []).map((f) => path.resolve(f));
  for (const f of extraKg) if (!existsSync(f)) problems.push(`--extra-kg ${f} not found`);
  if (extraKg.length && !knowledge.enabled) problems.push('--extra-kg needs knowledge injection (drop --no-knowledge)');
  if (extraKg.length) knowledge.extraKgFiles = extraKg;
  const limit = values.limit === undefined ? Infinity : integer(values.limit, 'limit', 0, 1, problems);
  const termsDrop = Number(values['terms-drop'] ?? 0.3);
  if (!(termsDrop >= 0 && termsDrop < 1)) problems.push(`--terms-drop must be a number in [0, 1) (got "${values['terms-drop']}")`);
  const termsVariants = integer(values['terms-variants'], 'terms-variants', 1, 1, problems);
  if (values.terms && !knowledge.enabled) problems.push('--terms needs knowledge injection (drop --no-knowledge)');
  const dataDir = path.resolve(values['data-dir'] ?? defaultDataDir());
  if (!existsSync(dataDir)) problems.push(`--data-dir: ${dataDir} does not exist`);
  if (problems.length) throw new ConfigError(problems);

  const tag = `${knowledgeTag(knowledge, defaultKg)}${extraKg.map((f) => `-${path.basename(f, '.spo').toLowerCase()}`).join('')}${values.terms ? `-terms${Math.round(termsDrop * 100)}` : ''}`;
  const outDir = path.resolve(values.out ?? path.join('.cache', 'features', `${corpusName}-${tag}`));
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const started = performance.now();
  const tokenizer = await BertTokenizer.load();
  const corpus = loadCorpus(corpusName, dataDir);
  const labels = bioLabels(corpus.types);
  // The term list: the whole list for dev and test, seeded drops of it for each train variant.
  const terms = values.terms ? collectTerms(corpus.train.sentences, corpus.types) : null;
  const termDir = terms ? mkdtempSync(path.join(os.tmpdir(), 'rmbert-terms-')) : null;
  const termFile = (name: string, list: ReadonlyMap<string, string>): string => {
    const file = path.join(termDir!, `${name}.spo`);
    writeFileSync(file, termsToSpo(list));
    return file;
  };
  if (terms) log(`term list: ${terms.size} surfaces from the training split; train drops ${Math.round(termsDrop * 100)} % of them (${termsVariants} variant(s))`);
  interface Job {
    split: SplitName;
    dir: string;
    /** Injector cache key: train variants differ, dev and test share the whole list. */
    key: string;
    termList: ReadonlyMap<string, string> | null;
    termSeed: number | null;
  }
  const jobs: Job[] = [];
  for (const split of splits as SplitName[]) {
    if (split === 'train' && terms) {
      for (let v = 0; v < termsVariants; v++) {
        const dir = v === 0 ? 'train' : `train-${v}`;
        jobs.push({ split, dir, key: dir, termList: dropTerms(terms, termsDrop, 1000 + v), termSeed: 1000 + v });
      }
    } else jobs.push({ split, dir: split, key: 'whole', termList: terms, termSeed: null });
  }
  const setups = new Map<string, InjectorSetup>();
  for (const { split, dir, key, termList, termSeed } of jobs) {
    let setup = setups.get(key);
    if (!setup) {
      setup = await createInjector(tokenizer, termList ? { ...knowledge, extraKgFiles: [...extraKg, termFile(key, termList)] } : knowledge);
      setups.set(key, setup);
      if (knowledge.enabled) log(`knowledge for ${dir}: ${setup.triples} triples, version ${setup.kgVersion?.slice(0, 12)}`);
    }
    const dataset = corpus[split];
    for (const w of dataset.warnings) log(`warning: ${w}`);
    const sentences = Number.isFinite(limit) ? dataset.sentences.slice(0, limit) : dataset.sentences;
    const prepared = await prepareExamples(sentences, setup.injector, labels);
    const written = writeFeatureSplit(path.join(outDir, dir), prepared, {
      corpus: corpusName,
      split,
      labels,
      knowledge,
      kgVersion: setup.kgVersion ?? null,
      triples: setup.triples,
      tokenizer,
      terms: terms ? { surfaces: terms.size, kept: termList!.size, dropFraction: split === 'train' ? termsDrop : 0, seed: termSeed } : null,
    });
    const st = prepared.stats;
    log(
      `${split}: ${st.sentences} sentences, ${st.windows} windows, ${st.tokens} tokens (${st.injectedTokens} injected, ` +
        `${st.droppedBranches} branches dropped), ${st.sentencesWithKnowledge} sentences with knowledge, ` +
        `max ${st.maxTokens} tokens -> ${written.dir} (${(written.bytes / 1e6).toFixed(1)} MB)`,
    );
  }
  if (termDir) rmSync(termDir, { recursive: true, force: true });
  log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return 0;
}
