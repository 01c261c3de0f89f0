import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { BertTokenizer, DEFAULT_VOCAB_PATH, SHIPPED_VOCAB_SHA256 } from '../../../src/model/tokenizer.ts';
import { normalizeText } from '../../../src/domain/text.ts';
import { ConceptMatcher, SentenceTreeBuilder } from '../../../src/knowledge/index.ts';
import { SchemaError } from '../../../src/errors/index.ts';
import path from 'node:path';
import { REPO_ROOT, sharedData } from '../../helpers/paths.ts';
import type { Token } from '../../../src/domain/index.ts';

const tokenizer = BertTokenizer.loadSync();
const triples = (tokens: Token[]): Array<[string, number, number]> => tokens.map((t) => [t.text, t.start, t.end]);

/** Lower case + accent stripping as BERT does, for checking that a token's span normalises to it. */
const bertNormalize = (s: string): string =>
  normalizeText(s)
    .toLowerCase()
    .normalize('NFD')
    .replace(/[\p{Mn}\p{Cc}\p{Cf}]/gu, '');

/** Every token's id matches its text, spans are ordered and non-empty, and non-## tokens are their span normalised. */
function checkInvariants(text: string, tokens: Token[]): void {
  let previousEnd = 0;
  for (const t of tokens) {
    assert.equal(tokenizer.idOf(t.text), t.id, `id of ${t.text}`);
    assert.ok(t.start >= 0 && t.end > t.start && t.end <= text.length, `span of ${t.text}`);
    assert.ok(t.start >= previousEnd || t.text.startsWith('##'), `order at ${t.text}`);
    if (!t.text.startsWith('##') && t.id !== tokenizer.unkId) {
      const piece = bertNormalize(text.slice(t.start, t.end));
      assert.ok(piece === t.text || piece.startsWith(t.text), `"${text.slice(t.start, t.end)}" -> ${t.text}`);
    }
    previousEnd = Math.max(previousEnd, t.end);
  }
}

test('the shipped vocabulary is bert-base-chinese with the expected ids and hash', async () => {
  const loaded = await BertTokenizer.load();
  assert.equal(loaded.vocabSha256, SHIPPED_VOCAB_SHA256);
  assert.equal(createHash('sha256').update(readFileSync(DEFAULT_VOCAB_PATH)).digest('hex'), SHIPPED_VOCAB_SHA256);
  assert.equal(loaded.vocabSize, 21128);
  assert.deepEqual([loaded.padId, loaded.unkId, loaded.clsId, loaded.sepId, loaded.maskId], [0, 100, 101, 102, 103]);
  assert.equal(loaded.idOf('的'), 4638);
  assert.equal(loaded.tokenOf(4638), '的');
  assert.equal(loaded.tokenOf(103), '[MASK]');
  assert.equal(loaded.idOf('\u2028'), 343); // the vocabulary holds U+2028: lines are split on \n only
  assert.equal(loaded.idOf('no-such-token'), undefined);
  assert.equal(loaded.tokenOf(21128), undefined);
  // Same vocabulary as the shared copy it came from.
  assert.equal(BertTokenizer.loadSync(sharedData('bert-base-chinese-vocab', 'google_vocab.txt')).vocabSha256, SHIPPED_VOCAB_SHA256);
});

test('each CJK character is one token with its offset', () => {
  const text = '新冠肺炎可通过呼吸道飞沫传播';
  const tokens = tokenizer.tokenize(text);
  assert.equal(tokens.length, text.length);
  tokens.forEach((t, i) => {
    assert.deepEqual([t.text, t.start, t.end], [text[i], i, i + 1]);
  });
  checkInvariants(text, tokens);
});

test('Latin words and numbers go through WordPiece, punctuation splits, whitespace vanishes', () => {
  assert.deepEqual(triples(tokenizer.tokenize('CT示右肺12mm结节')), [
    ['ct', 0, 2],
    ['示', 2, 3],
    ['右', 3, 4],
    ['肺', 4, 5],
    ['12', 5, 7],
    ['##mm', 7, 9],
    ['结', 9, 10],
    ['节', 10, 11],
  ]);
  assert.deepEqual(triples(tokenizer.tokenize('COVID-19')), [
    ['co', 0, 2],
    ['##vi', 2, 4],
    ['##d', 4, 5],
    ['-', 5, 6],
    ['19', 6, 8],
  ]);
  assert.deepEqual(triples(tokenizer.tokenize('  体温 37.5℃\n\t')), [
    ['体', 2, 3],
    ['温', 3, 4],
    ['37', 5, 7],
    ['.', 7, 8],
    ['5℃', 8, 10], // ℃ is a symbol (So), not punctuation: BERT keeps it in the word, and the vocabulary has "5℃"
  ]);
  assert.deepEqual(tokenizer.tokenize('12mm').map((t) => t.id), [tokenizer.idOf('12'), tokenizer.idOf('##mm')]);
});

test('full-width forms and upper case fold to the same tokens as ASCII lower case, offsets on the original', () => {
  assert.deepEqual(triples(tokenizer.tokenize('ＣＴ')), [['ct', 0, 2]]);
  assert.deepEqual(
    tokenizer.tokenize('ＣＴ：１２ＭＭ').map((t) => t.id),
    tokenizer.tokenize('ct:12mm').map((t) => t.id),
  );
  // Ideographic space separates like a space.
  assert.deepEqual(triples(tokenizer.tokenize('男\u3000５６岁')), [
    ['男', 0, 1],
    ['56', 2, 4],
    ['岁', 4, 5],
  ]);
  const text = '患者，男，５６岁。ＣＴ示：右肺Ａ段';
  checkInvariants(text, tokenizer.tokenize(text));
});

test('accents are stripped without losing offsets; lone combining marks vanish', () => {
  assert.deepEqual(triples(tokenizer.tokenize('Café')), [['cafe', 0, 4]]);
  // Decomposed é: the combining mark stays inside the token's span.
  assert.deepEqual(triples(tokenizer.tokenize('cafe\u0301 x')), [
    ['cafe', 0, 5],
    ['x', 6, 7],
  ]);
  assert.deepEqual(triples(tokenizer.tokenize('\u0301a')), [['a', 1, 2]]);
  assert.deepEqual(tokenizer.tokenize('\u0301\u0302'), []);
});

test('control and format characters are dropped without splitting a word', () => {
  assert.deepEqual(triples(tokenizer.tokenize('\u200bab\u200bcd\u0007 ')), [
    ['abc', 1, 5],
    ['##d', 5, 7],
  ]);
  assert.deepEqual(triples(tokenizer.tokenize('\ufeff肺\u0000')), [['肺', 1, 2]]);
  // Form feed separates words (BERT would silently join them).
  assert.deepEqual(triples(tokenizer.tokenize('ab\fcd')), [
    ['ab', 0, 2],
    ['cd', 3, 5],
  ]);
});

test('unknown characters become [UNK]; surrogate pairs count as one character', () => {
  // U+20000 and U+2A6A5 are CJK extension B ideographs absent from the vocabulary; the emoji is in it.
  assert.deepEqual(triples(tokenizer.tokenize('𠀀𪚥😂')), [
    ['[UNK]', 0, 2],
    ['[UNK]', 2, 4],
    ['😂', 4, 6],
  ]);
  assert.deepEqual(triples(tokenizer.tokenize('a😂')), [
    ['a', 0, 1],
    ['##😂', 1, 3],
  ]);
  // A word with no full WordPiece cover is one [UNK] over the whole word.
  assert.deepEqual(triples(tokenizer.tokenize('ab🦠 x')), [
    ['[UNK]', 0, 4],
    ['x', 5, 6],
  ]);
  // Replacement character, private use and a lone surrogate: [UNK], never silently lost.
  assert.deepEqual(triples(tokenizer.tokenize('\ufffd肺\ue000\ud800')), [
    ['[UNK]', 0, 1],
    ['肺', 1, 2],
    ['[UNK]', 2, 4],
  ]);
  // A CJK compatibility ideograph is looked up by its NFD form (U+F900 -> U+8C48 豈).
  assert.deepEqual(
    tokenizer.tokenize('\uf900').map((t) => [t.id, t.start, t.end]),
    [[tokenizer.idOf('豈') ?? tokenizer.unkId, 0, 1]],
  );
});

test('a word over 100 characters is one [UNK]; empty and blank input give no tokens', () => {
  assert.deepEqual(triples(tokenizer.tokenize('x'.repeat(101))), [['[UNK]', 0, 101]]);
  assert.ok(tokenizer.tokenize('x'.repeat(100)).every((t) => t.id !== tokenizer.unkId));
  assert.deepEqual(tokenizer.tokenize(''), []);
  assert.deepEqual(tokenizer.tokenize(' \n\t\u3000'), []);
});

test('offsets map back on real clinical text', () => {
  const lines = readFileSync(sharedData('kbert-medical-ner', 'dev.tsv'), 'utf8').split('\n').slice(1, 200);
  let count = 0;
  for (const line of lines) {
    const text = line.split('\t')[0];
    const tokens = tokenizer.tokenize(text);
    checkInvariants(text, tokens);
    count += tokens.length;
  }
  assert.ok(count > 1000);
});

test('a custom vocabulary loads from bytes; missing special tokens are refused', () => {
  const vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'un', '##aff', '##able', 'a', '##b'].join('\n') + '\n';
  const small = BertTokenizer.fromVocabBytes(new TextEncoder().encode(vocab));
  assert.equal(small.vocabSize, 10);
  assert.deepEqual(triples(small.tokenize('unaffable ab abc')), [
    ['un', 0, 2],
    ['##aff', 2, 5],
    ['##able', 5, 9],
    ['a', 10, 11],
    ['##b', 11, 12],
    ['[UNK]', 13, 16],
  ]);
  assert.throws(() => BertTokenizer.fromVocabBytes(new TextEncoder().encode('[PAD]\n[UNK]\n')), SchemaError);
  assert.throws(() => BertTokenizer.loadSync('/nonexistent/vocab.txt'), /cannot read vocabulary/);
});

test("same ids as Hugging Face's reference BERT tokenizer, same offsets as its fast tokenizer (fixture)", () => {
  // test/fixtures/parity/tokenizer.json, made by scripts/parity/make_tokenizer_fixture.py from real text
  // (news commentary en-zh, CLUE corpus, clinical notes) and curated edge cases.
  const fixture = JSON.parse(readFileSync(path.join(REPO_ROOT, 'test', 'fixtures', 'parity', 'tokenizer.json'), 'utf8')) as {
    vocabSha256: string;
    cases: Array<{ text: string; ids: number[]; offsets?: number[][] }>;
  };
  assert.equal(fixture.vocabSha256, tokenizer.vocabSha256);
  assert.ok(fixture.cases.length > 250);
  let tokens = 0;
  for (const c of fixture.cases) {
    const got = tokenizer.tokenize(c.text);
    assert.deepEqual(got.map((t) => t.id), c.ids, JSON.stringify(c.text));
    tokens += got.length;
    if (!c.offsets) continue;
    got.forEach((t, i) => {
      const [start, end] = c.offsets![i];
      assert.equal(t.start, start, `${JSON.stringify(c.text)} token ${i} start`);
      // Our end may also cover the combining marks / format characters right after the token.
      assert.ok(t.end >= end && /^[\p{Mn}\p{Cc}\p{Cf}]*$/u.test(c.text.slice(end, t.end)), `${JSON.stringify(c.text)} token ${i} end ${t.end} vs ${end}`);
    });
  }
  assert.ok(tokens > 10000);
});

/** Hugging Face's ids on raw (unfolded) text: transformers 5.25.0, legacy BasicTokenizer(do_lower_case=True,
 * tokenize_chinese_chars=True) + WordpieceTokenizer on data/vocab/vocab.txt, the fast tokenizer agreeing. */
const HF_UNFOLDED: Array<[string, number[]]> = [
  ['患者，男，５６岁。ＣＴ示：右肺Ａ段', [2642, 5442, 8024, 4511, 8024, 8033, 9234, 2259, 511, 8053, 11766, 4850, 8038, 1381, 5511, 8051, 3667]],
  ['ＣＴ', [8053, 11766]],
  ['ｉＰｈｏｎｅ　ＸＳ', [8059, 10748, 21096, 9940, 11977, 10726, 8074, 10721]],
  ['AUC=0.93（95%CI:0.90-0.96）', [10677, 8177, 134, 121, 119, 8430, 8020, 8287, 110, 12364, 131, 121, 119, 8192, 118, 121, 119, 8378, 8021]],
  ['HBsAg（＋），CD4＋ T细胞', [150, 9071, 10814, 8020, 8023, 8021, 8024, 8405, 8159, 11267, 162, 5301, 5528]],
  ['血压１２０／８０ｍｍＨｇ；心率８０次／分！', [6117, 1327, 10351, 8569, 8027, 8036, 8569, 9295, 9295, 21096, 11197, 8039, 2552, 4372, 8036, 8569, 3613, 8027, 1146, 8013]],
  ['ａ＋ｂ＝ｃ～ｄ｜ｅ＄＾｀', [8051, 11267, 12641, 12092, 10675, 8694, 9835, 9815, 10726, 21073, 21092, 21094]],
  ['“引号”‘单引号’《书名》【括号】…—～', [100, 2471, 1384, 100, 100, 1296, 2471, 1384, 100, 517, 741, 1399, 518, 523, 2886, 1384, 524, 100, 100, 8080]],
  ['（左）肺；右肺：正常？', [8020, 2340, 8021, 5511, 8039, 1381, 5511, 8038, 3633, 2382, 8043]],
  ['Ｃａｆé', [8053, 10094, 21095, 8154]],
  ['，：；（）！？．／＠［］｛｝＿＂＃％＆＇＊－', [8024, 8038, 8039, 8020, 8021, 8013, 8043, 8026, 8027, 8044, 8045, 8047, 8077, 8079, 8049, 8014, 8015, 8017, 8018, 8019, 8022, 8025]],
  ['右侧ＣＴ检查', [1381, 904, 8053, 11766, 3466, 3389]],
];
const FULL_WIDTH = /[\uff01-\uff5e\u3000]/;

test("unfolded (foldFullWidth: false), full-width forms keep their own ids, as in Hugging Face's BertTokenizer", () => {
  const unfolded = BertTokenizer.loadSync(DEFAULT_VOCAB_PATH, { foldFullWidth: false });
  assert.equal(unfolded.foldFullWidth, false);
  assert.equal(tokenizer.foldFullWidth, true);
  for (const [text, ids] of HF_UNFOLDED) {
    const got = unfolded.tokenize(text);
    assert.deepEqual(got.map((t) => t.id), ids, text);
    let previousEnd = 0;
    for (const t of got) {
      assert.equal(unfolded.idOf(t.text), t.id);
      assert.ok(t.start >= previousEnd || t.text.startsWith('##'));
      previousEnd = Math.max(previousEnd, t.end);
    }
  }
  // "，" is 8024 unfolded, "," (117) folded; "Ａ" lower-cases to "ａ" (8051), not "a".
  assert.deepEqual(tokenizer.tokenize('，Ａ').map((t) => t.id), [117, tokenizer.idOf('a')]);
  assert.deepEqual(unfolded.tokenize('，Ａ').map((t) => t.text), ['，', 'ａ']);
  // "＋" is a math symbol, not punctuation: unfolded it stays inside the word, as in Hugging Face.
  assert.deepEqual(triples(unfolded.tokenize('CD4＋')), [['cd', 0, 2], ['##4', 2, 3], ['##＋', 3, 4]]);
  assert.deepEqual(triples(tokenizer.tokenize('CD4＋')), [['cd', 0, 2], ['##4', 2, 3], ['+', 3, 4]]);
  // Upper case, accents and the ideographic space are handled alike in both modes.
  assert.deepEqual(triples(unfolded.tokenize('Café\u3000ÉCOLE')), triples(tokenizer.tokenize('Café ÉCOLE')));
});

test('both modes give the same tokens on text without full-width forms (the fixture)', () => {
  const unfolded = tokenizer.withOptions({ foldFullWidth: false });
  const fixture = JSON.parse(readFileSync(path.join(REPO_ROOT, 'test', 'fixtures', 'parity', 'tokenizer.json'), 'utf8')) as {
    cases: Array<{ text: string; ids: number[] }>;
  };
  let plain = 0;
  let differ = 0;
  for (const c of fixture.cases) {
    const folded = tokenizer.tokenize(c.text);
    const raw = unfolded.tokenize(c.text);
    if (FULL_WIDTH.test(c.text)) {
      if (JSON.stringify(raw.map((t) => t.id)) !== JSON.stringify(c.ids)) differ++;
      continue;
    }
    plain++;
    assert.deepEqual(raw, folded, JSON.stringify(c.text));
  }
  // The fixture's script folds its texts before Hugging Face sees them: its ids are the folded ones, and
  // most of its texts with full-width forms (mostly "，") get other ids unfolded.
  assert.ok(plain > 100, `${plain} texts without full-width forms`);
  assert.ok(differ > 100, `${differ} texts whose unfolded ids differ from the fixture`);
});

test('withOptions gives this tokenizer or its sibling of the other mode, built once', async () => {
  const unfolded = tokenizer.withOptions({ foldFullWidth: false });
  assert.equal(tokenizer.withOptions({}), tokenizer);
  assert.equal(tokenizer.withOptions({ foldFullWidth: true }), tokenizer);
  assert.equal(tokenizer.withOptions({ foldFullWidth: false }), unfolded);
  assert.equal(unfolded.withOptions({ foldFullWidth: true }), tokenizer);
  assert.equal(unfolded.withOptions({}), tokenizer); // absent means fold
  assert.equal(unfolded.vocabSha256, tokenizer.vocabSha256);
  assert.deepEqual([unfolded.padId, unfolded.unkId, unfolded.clsId, unfolded.sepId, unfolded.maskId], [0, 100, 101, 102, 103]);
  assert.equal((await BertTokenizer.load(DEFAULT_VOCAB_PATH, { foldFullWidth: false })).foldFullWidth, false);
  assert.equal(BertTokenizer.fromVocabBytes(readFileSync(DEFAULT_VOCAB_PATH)).foldFullWidth, true);
  // Alternating modes does not mix their caches.
  for (let i = 0; i < 3; i++) {
    assert.equal(tokenizer.tokenize('，')[0].id, 117);
    assert.equal(unfolded.tokenize('，')[0].id, 8024);
  }
});

test('the knowledge matcher finds a concept where the tokenizer sees it, in both modes', () => {
  // The matcher always compares folded text with folded names: "CT检查" matches "ＣＴ检查" whatever the
  // tokenizer's mode. A match must start and end on the tokens' word boundaries, which each mode draws.
  const matcher = ConceptMatcher.build(['CT检查', '右肺', 'HBsAg', 'CD4', '发热', 'T细胞']);
  const text = '右侧ＣＴ检查：右肺结节，HBsAg（＋），CD4＋ T细胞，发热３天。';
  const found = (tk: BertTokenizer): string[] => {
    const tokens = tk.tokenize(text);
    const matches = matcher.match(text, { tokens });
    for (const m of matches) {
      const first = tokens.findIndex((t) => t.start === m.start);
      const last = tokens.findIndex((t) => t.end === m.end);
      assert.ok(first >= 0 && !tokens[first].text.startsWith('##'), `${text.slice(m.start, m.end)} starts a word`);
      assert.ok(last >= first && !tokens[last + 1]?.text.startsWith('##'), `${text.slice(m.start, m.end)} ends a word`);
    }
    // The sentence tree hangs a branch on every match.
    const [tree] = new SentenceTreeBuilder(tk).build({
      text,
      tokens,
      matches: matches.map((m) => ({ start: m.start, end: m.end, triples: [{ subject: m.key, relation: '类别', object: '检查' }] })),
    });
    assert.deepEqual(tree.links.map((l) => l.injected), matches.map(() => 1));
    return matches.map((m) => text.slice(m.start, m.end));
  };
  assert.deepEqual(found(tokenizer), ['ＣＴ检查', '右肺', 'HBsAg', 'CD4', 'T细胞', '发热']);
  // Unfolded, "CD4＋" is one word (cd ##4 ##＋), as Hugging Face splits it: no CD4 inside it.
  assert.deepEqual(found(tokenizer.withOptions({ foldFullWidth: false })), ['ＣＴ检查', '右肺', 'HBsAg', 'T细胞', '发热']);
});
