import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import AdmZip from 'adm-zip';
import { BertTokenizer } from '../../../src/model/tokenizer.ts';
import {
  buildPretrainCorpus,
  MSRA_TRAIN_SENTENCES,
  parseCsv,
  readCorpusDocuments,
  readMsraTrainSentences,
  splitSentences,
} from '../../../src/train/corpus.ts';
import { mulberry32, shuffleInPlace } from '../../../src/domain/random.ts';
import { SHARED_DATA, sharedData } from '../../helpers/paths.ts';

let tokenizer: BertTokenizer;
const dirs: string[] = [];
before(async () => {
  tokenizer = await BertTokenizer.load();
});
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('text helpers', () => {
  it('parses CSV with quotes, doubled quotes, commas and newlines inside fields', () => {
    assert.deepEqual(parseCsv('label,review\n1,"a, ""b""\nc"\r\n0,plain\n'), [
      ['label', 'review'],
      ['1', 'a, "b"\nc'],
      ['0', 'plain'],
    ]);
  });

  it('splits sentences after Chinese and ASCII sentence ends, keeping closing quotes', () => {
    assert.deepEqual(splitSentences('他说：“好。”然后走了！真的?是\n新的一行'), ['他说：“好。”', '然后走了！', '真的?', '是', '新的一行']);
  });

  it('shuffles deterministically by seed', () => {
    const a = [1, 2, 3, 4, 5, 6, 7, 8];
    const b = [...a];
    shuffleInPlace(a, mulberry32(9));
    shuffleInPlace(b, mulberry32(9));
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual([...a].sort(), [1, 2, 3, 4, 5, 6, 7, 8]);
  });
});

describe('sources', () => {
  it('reads exactly the MSRA training sentences, never the test part', () => {
    const train = readMsraTrainSentences(sharedData('msra-dh', 'dh_msra.zip'));
    assert.equal(train.length, MSRA_TRAIN_SENTENCES);
    // Rebuild sentence 50657 (last train) and 50658 (first test) straight from the file.
    const text = new AdmZip(sharedData('msra-dh', 'dh_msra.zip')).getEntry('dh_msra.txt')!.getData().toString('utf8');
    const all = text.split(/\r?\n\s*\r?\n/).map((block) =>
      block
        .split(/\r?\n/)
        .filter((l) => l.trim())
        .map((l) => l.split('\t')[0])
        .join(''),
    ).filter((s) => s);
    assert.equal(train[MSRA_TRAIN_SENTENCES - 1], all[MSRA_TRAIN_SENTENCES - 1]);
    assert.equal(train[0], all[0]);
    assert.ok(all.length > MSRA_TRAIN_SENTENCES + 4000, 'the file has a test part after the training part');
  });

  it('reads every general-domain source and nothing medical', () => {
    const docs = readCorpusDocuments(SHARED_DATA, 3);
    const sources = new Set(docs.map((d) => d.source));
    for (const expected of [
      'uer/CLUECorpusSmall',
      'uer/news-commentary-zh',
      'uer/cmrc2018-dev',
      'uer/c3-test',
      'uer/smp2020-virus-train',
      'kbert-cls/book_review-train',
      'kbert-cls/chnsenticorp-dev',
      'sophonplus/waimai_10k.csv',
      'sophonplus/ChnSentiCorp_htl_all.csv',
      'sophonplus/online_shopping_10_cats',
      'msra/train',
    ]) {
      assert.ok(sources.has(expected), expected);
    }
    for (const s of sources) assert.doesNotMatch(s, /medic|ccks/i);
    // news-commentary: the Chinese column, not the English one.
    for (const d of docs.filter((x) => x.source === 'uer/news-commentary-zh')) assert.match(d.text, /[\u4e00-\u9fff]/);
    // Review columns, not labels.
    for (const d of docs.filter((x) => x.source.startsWith('sophonplus/'))) assert.ok(d.text.length > 1 && !/^[01]$/.test(d.text));
  });
});

describe('packed corpus', () => {
  it('packs [CLS] window [SEP] rows of seqLen, deterministic by seed, cached', () => {
    const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'rmbert-corpus-'));
    dirs.push(cacheDir);
    const opts = { dataDir: SHARED_DATA, tokenizer, seqLen: 32, seed: 4, cacheDir, maxDocumentsPerSource: 20 };
    const c = buildPretrainCorpus(opts);
    assert.ok(c.numSequences > 50);
    assert.equal(c.sequences.length, c.numSequences * 32);
    for (let q = 0; q < c.numSequences; q++) assert.equal(c.sequences[q * 32], tokenizer.clsId);
    for (let q = 0; q < c.numSequences - 1; q++) assert.equal(c.sequences[q * 32 + 31], tokenizer.sepId);
    // Only the last row may hold padding; the token count excludes it.
    let pads = 0;
    for (const id of c.sequences) if (id === tokenizer.padId) pads++;
    assert.equal(c.tokens, c.sequences.length - pads);
    assert.ok(pads < 32);
    assert.ok(c.chars > 10_000);
    assert.ok(c.vocabUsed.includes(tokenizer.maskId) && c.vocabUsed.length > 500);
    assert.equal(readdirSync(cacheDir).filter((f) => f.endsWith('.bin')).length, 1);

    const cached = buildPretrainCorpus(opts);
    assert.deepEqual(cached.sequences, c.sequences);
    assert.deepEqual(cached.vocabUsed, c.vocabUsed);
    const again = buildPretrainCorpus({ ...opts, cacheDir: null });
    assert.deepEqual(again.sequences, c.sequences);
    const otherSeed = buildPretrainCorpus({ ...opts, seed: 5, cacheDir: null });
    assert.equal(otherSeed.tokens, c.tokens);
    assert.notDeepEqual(otherSeed.sequences, c.sequences);
  });
});
