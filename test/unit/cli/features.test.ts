import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isVisible } from '../../../src/domain/index.ts';
import { ConfigError } from '../../../src/errors/index.ts';
import { BertTokenizer } from '../../../src/model/tokenizer.ts';
import { FEATURES_FORMAT, knowledgeTag, run } from '../../../src/cli/commands/features.ts';
import { CORPUS_DEFAULTS } from '../../../src/cli/commands/finetune.ts';
import { bioLabels, loadCorpus } from '../../../src/train/datasets.ts';
import { createInjector, prepareExamples } from '../../../src/train/evaluate.ts';
import type { KnowledgeSetup } from '../../../src/train/evaluate.ts';
import { SHARED_DATA } from '../../helpers/paths.ts';

const LIMIT = 40;

interface Split {
  meta: any;
  offsets: Int32Array;
  tokenIds: Int32Array;
  softPositions: Int32Array;
  segmentIds: Int32Array;
  labelIds: Int32Array;
  charStart: Int32Array;
  charEnd: Int32Array;
  sentence: Int32Array;
  visibility: Uint8Array;
  visOffsets: BigInt64Array;
  sentences: Array<{ text: string; labels: string[] }>;
}

async function readSplit(dir: string): Promise<Split> {
  const i32 = async (name: string) => {
    const b = await readFile(path.join(dir, name));
    return new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  };
  const raw = await readFile(path.join(dir, 'visibility_offsets.i64'));
  return {
    meta: JSON.parse(await readFile(path.join(dir, 'meta.json'), 'utf8')),
    offsets: await i32('offsets.i32'),
    tokenIds: await i32('token_ids.i32'),
    softPositions: await i32('soft_positions.i32'),
    segmentIds: await i32('segment_ids.i32'),
    labelIds: await i32('label_ids.i32'),
    charStart: await i32('char_start.i32'),
    charEnd: await i32('char_end.i32'),
    sentence: await i32('sentence.i32'),
    visibility: new Uint8Array(await readFile(path.join(dir, 'visibility.u8'))),
    visOffsets: new BigInt64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)),
    sentences: (await readFile(path.join(dir, 'sentences.jsonl'), 'utf8'))
      .split('\n')
      .filter((l) => l)
      .map((l) => JSON.parse(l)),
  };
}

/** Runs `rmbert features` in this process with its stderr summary silenced. */
async function features(args: string[]): Promise<number> {
  const write = process.stderr.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    return await run(args);
  } finally {
    process.stderr.write = write;
  }
}

const KNOWLEDGE: KnowledgeSetup = {
  enabled: true,
  kgFile: CORPUS_DEFAULTS.medical.kg,
  inject: 'relation+object',
  maxEntities: 2,
  maxLength: 256,
  softPositions: true,
  visibilityMatrix: true,
};

async function expected(knowledge: KnowledgeSetup, split: 'dev' | 'train', limit: number) {
  const corpus = loadCorpus('medical', SHARED_DATA);
  const labels = bioLabels(corpus.types);
  const tokenizer = await BertTokenizer.load();
  const setup = await createInjector(tokenizer, knowledge);
  return { labels, tokenizer, setup, prepared: await prepareExamples(corpus[split].sentences.slice(0, limit), setup.injector, labels) };
}

test('rmbert features: the files hold exactly the trees, labels and visibility of prepareExamples', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-features-'));
  try {
    // A small maxLength makes some of these sentences drop branches or split into windows.
    const knowledge = { ...KNOWLEDGE, maxLength: 48 };
    assert.equal(await features(['--corpus', 'medical', '--splits', 'dev', '--limit', String(LIMIT), '--max-length', '48', '--out', dir, '--data-dir', SHARED_DATA]), 0);
    const got = await readSplit(path.join(dir, 'dev'));
    const { labels, tokenizer, setup, prepared } = await expected(knowledge, 'dev', LIMIT);
    const { examples } = prepared;

    assert.equal(got.meta.format, FEATURES_FORMAT);
    assert.equal(got.meta.corpus, 'medical');
    assert.equal(got.meta.split, 'dev');
    assert.deepEqual(got.meta.labels, labels);
    assert.deepEqual(got.meta.knowledge, {
      enabled: true,
      inject: 'relation+object',
      maxEntities: 2,
      maxLength: 48,
      softPositions: true,
      visibilityMatrix: true,
      kgFile: 'Medical.spo',
      kgVersion: setup.kgVersion,
      triples: setup.triples,
      terms: null,
    });
    assert.equal(got.meta.vocabSha256, tokenizer.vocabSha256);
    assert.deepEqual([got.meta.padId, got.meta.clsId, got.meta.sepId], [tokenizer.padId, tokenizer.clsId, tokenizer.sepId]);
    assert.deepEqual(got.meta.stats, prepared.stats);
    assert.equal(got.meta.sentences, LIMIT);
    assert.equal(got.meta.examples, examples.length);
    assert.ok(examples.length > LIMIT, 'max-length 48 splits some sentences into windows');
    assert.equal(got.offsets.length, examples.length + 1);
    assert.equal(got.sentence.length, examples.length);
    assert.equal(got.tokenIds.length, got.meta.tokens);
    assert.equal(got.visOffsets.length, examples.length + 1);
    assert.equal(got.visibility.length, Number(got.visOffsets[examples.length]));

    let withKnowledge = 0;
    let hidden = 0;
    examples.forEach((ex, n) => {
      const t = ex.tree;
      const L = t.tokenIds.length;
      const from = got.offsets[n];
      assert.equal(got.offsets[n + 1] - from, L, `example ${n} length`);
      const slice = (a: Int32Array) => Array.from(a.subarray(from, from + L));
      assert.deepEqual(slice(got.tokenIds), Array.from(t.tokenIds), `example ${n} token ids`);
      assert.deepEqual(slice(got.softPositions), Array.from(t.softPositions), `example ${n} soft positions`);
      assert.deepEqual(slice(got.segmentIds), Array.from(t.segmentIds), `example ${n} segment ids`);
      assert.deepEqual(slice(got.labelIds), Array.from(ex.labelIds), `example ${n} label ids`);
      assert.deepEqual(slice(got.charStart), Array.from(t.charStart), `example ${n} char start`);
      assert.deepEqual(slice(got.charEnd), Array.from(t.charEnd), `example ${n} char end`);
      assert.equal(got.sentence[n], ex.sentence);
      if (t.injectedTokens > 0) withKnowledge++;
      const base = Number(got.visOffsets[n]);
      assert.equal(Number(got.visOffsets[n + 1]) - base, Math.ceil((L * L) / 8));
      for (let i = 0; i < L; i++) {
        for (let j = 0; j < L; j++) {
          const k = i * L + j;
          const bit = (got.visibility[base + (k >> 3)] >> (7 - (k & 7))) & 1;
          const want = isVisible(t, i, j);
          if (!want) hidden++;
          if (bit !== (want ? 1 : 0)) assert.fail(`example ${n}: visibility bit (${i}, ${j}) is ${bit}, isVisible says ${want}`);
        }
      }
      // Padding bits of the last byte stay 0.
      for (let k = L * L; k < Math.ceil((L * L) / 8) * 8; k++) assert.equal((got.visibility[base + (k >> 3)] >> (7 - (k & 7))) & 1, 0);
    });
    assert.ok(withKnowledge > 0, 'at least one example has injected tokens');
    assert.ok(hidden > 0, 'some pairs are not visible');

    // sentences.jsonl: the dataset's text and tags; each labelled token's id is its first character's tag.
    const sentences = loadCorpus('medical', SHARED_DATA).dev.sentences.slice(0, LIMIT);
    assert.deepEqual(
      got.sentences.map((s) => [s.text, s.labels]),
      sentences.map((s) => [s.text, s.labels]),
    );
    for (let h = 0; h < got.tokenIds.length; h++) {
      if (got.labelIds[h] < 0) continue;
      let n = 0;
      while (got.offsets[n + 1] <= h) n++;
      assert.equal(labels[got.labelIds[h]], got.sentences[got.sentence[n]].labels[got.charStart[h]]);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('rmbert features: ablations -MASK, -POS and -KG reach the files', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-features-'));
  try {
    const args = ['--corpus', 'medical', '--splits', 'train', '--limit', '12', '--data-dir', SHARED_DATA];
    assert.equal(await features([...args, '--no-visibility', '--no-soft-positions', '--out', path.join(dir, 'a')]), 0);
    const a = await readSplit(path.join(dir, 'a', 'train'));
    assert.equal(a.meta.knowledge.visibilityMatrix, false);
    assert.equal(a.meta.knowledge.softPositions, false);
    assert.ok(a.meta.stats.injectedTokens > 0);
    for (let n = 0; n + 1 < a.offsets.length; n++) {
      const L = a.offsets[n + 1] - a.offsets[n];
      const base = Number(a.visOffsets[n]);
      for (let k = 0; k < L * L; k++) assert.equal((a.visibility[base + (k >> 3)] >> (7 - (k & 7))) & 1, 1, `-MASK: every pair visible (example ${n})`);
      for (let i = 0; i < L; i++) assert.equal(a.softPositions[a.offsets[n] + i], i, '-POS: hard positions');
    }

    assert.equal(await features([...args, '--no-knowledge', '--out', path.join(dir, 'b')]), 0);
    const b = await readSplit(path.join(dir, 'b', 'train'));
    const { prepared } = await expected({ ...KNOWLEDGE, enabled: false }, 'train', 12);
    assert.equal(b.meta.knowledge.enabled, false);
    assert.equal(b.meta.knowledge.kgFile, null);
    assert.equal(b.meta.stats.injectedTokens, 0);
    assert.deepEqual(Array.from(b.tokenIds), prepared.examples.flatMap((e) => Array.from(e.tree.tokenIds)));
    for (let n = 0; n + 1 < b.offsets.length; n++) {
      const L = b.offsets[n + 1] - b.offsets[n];
      const base = Number(b.visOffsets[n]);
      for (let k = 0; k < L * L; k++) assert.equal((b.visibility[base + (k >> 3)] >> (7 - (k & 7))) & 1, 1, `-KG: every pair visible (example ${n})`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('rmbert features: bad options are refused with a ConfigError; the default folder names the knowledge', async () => {
  const refused = async (args: string[], pattern: RegExp) =>
    assert.rejects(features(args), (e: unknown) => e instanceof ConfigError && pattern.test(e.message), `${args.join(' ')} -> ${pattern}`);
  await refused(['--corpus', 'ccks'], /--corpus must be medical or msra/);
  await refused(['--corpus', 'medical', '--splits', 'train,val'], /"val" is not one of train, dev, test/);
  await refused(['--corpus', 'medical', '--inject', 'subject'], /--inject must be/);
  await refused(['--corpus', 'medical', '--max-length', '4'], /--max-length must be an integer >= 8/);
  await refused(['--corpus', 'medical', '--kg', '/nonexistent/x.spo'], /x\.spo not found/);
  const def = CORPUS_DEFAULTS.medical.kg;
  assert.equal(knowledgeTag(KNOWLEDGE, def), 'kg');
  assert.equal(knowledgeTag({ ...KNOWLEDGE, enabled: false }, def), 'nokg');
  assert.equal(knowledgeTag({ ...KNOWLEDGE, inject: 'object', visibilityMatrix: false, softPositions: false }, def), 'kg-object-nopos-nomask');
  assert.equal(knowledgeTag({ ...KNOWLEDGE, kgFile: '/x/HowNet.spo', maxEntities: 1, maxLength: 128 }, def), 'kg-hownet-e1-len128');
});

test('rmbert features --terms: the training entity list is injected, dropped differently per train variant, whole for dev', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-features-'));
  try {
    const args = ['--corpus', 'medical', '--splits', 'train,dev', '--limit', '40', '--data-dir', SHARED_DATA, '--terms', '--terms-drop', '0.5', '--terms-variants', '2'];
    assert.equal(await features([...args, '--out', dir]), 0);
    const [t0, t1, dev] = await Promise.all(['train', 'train-1', 'dev'].map((d) => readSplit(path.join(dir, d))));
    const whole = dev.meta.knowledge.terms;
    assert.ok(whole.surfaces > 1000, `surfaces ${whole.surfaces}`);
    assert.equal(whole.kept, whole.surfaces);
    assert.equal(whole.dropFraction, 0);
    for (const t of [t0, t1]) {
      assert.equal(t.meta.knowledge.terms.dropFraction, 0.5);
      assert.ok(Math.abs(t.meta.knowledge.terms.kept / whole.surfaces - 0.5) < 0.05, `kept ${t.meta.knowledge.terms.kept}`);
    }
    assert.notEqual(t0.meta.knowledge.terms.seed, t1.meta.knowledge.terms.seed);
    // The same sentences see different knowledge in the two variants, and the term relation 词表 is injected.
    assert.notDeepEqual(Array.from(t0.tokenIds), Array.from(t1.tokenIds));
    const tokenizer = await BertTokenizer.load();
    const termIds = tokenizer.tokenize('词表').map((x) => x.id);
    const hasTerm = (ids: Int32Array) => ids.some((id, i) => id === termIds[0] && ids[i + 1] === termIds[1]);
    assert.ok(hasTerm(dev.tokenIds), 'dev examples carry 词表 branches');
    // Without --terms the injected tokens are fewer.
    assert.equal(await features(['--corpus', 'medical', '--splits', 'dev', '--limit', '40', '--data-dir', SHARED_DATA, '--out', path.join(dir, 'plain')]), 0);
    const plain = await readSplit(path.join(dir, 'plain', 'dev'));
    assert.ok(plain.meta.stats.injectedTokens < dev.meta.stats.injectedTokens);
    assert.ok(!hasTerm(plain.tokenIds));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
