import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isVisible, MASK_NEGATIVE, writeAdditiveMask } from '../../../src/domain/index.ts';
import type { InjectedSentence, Triple } from '../../../src/domain/index.ts';
import { alignLabels, SentenceTreeBuilder } from '../../../src/knowledge/index.ts';
import type { SentenceTree, SentenceTreeOptions, TreeMatch } from '../../../src/knowledge/index.ts';
import { TestTokenizer } from './test-tokenizer.ts';

const tokenizer = new TestTokenizer();
const t = (subject: string, relation: string, object: string): Triple => ({ subject, relation, object });
const ids = (text: string): number[] => tokenizer.tokenize(text).map((x) => x.id);

/** The paper's example (figures 2 and 3). */
const PAPER_TEXT = '新冠肺炎可通过呼吸道飞沫传播';
const PAPER_MATCHES: TreeMatch[] = [
  { start: 0, end: 4, triples: [t('新冠肺炎', '类别', '疾病')] },
  { start: 7, end: 10, triples: [t('呼吸道', '类别', '部位')] },
];

function build(text: string, matches: TreeMatch[], options: SentenceTreeOptions = {}, start = 0): SentenceTree[] {
  return new SentenceTreeBuilder(tokenizer, options).build({ text, start, matches });
}

function matrix(s: InjectedSentence): string[] {
  const n = s.tokenIds.length;
  const rows: string[] = [];
  for (let i = 0; i < n; i++) {
    let row = '';
    for (let j = 0; j < n; j++) row += isVisible(s, i, j) ? '1' : '0';
    rows.push(row);
  }
  return rows;
}

/** Every original token once, in order, across the windows (ids and offsets). */
function originals(trees: SentenceTree[]): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (const tree of trees) for (let i = 0; i < tree.tokenIds.length; i++) if (tree.charStart[i] >= 0) out.push([tree.tokenIds[i], tree.charStart[i], tree.charEnd[i]]);
  return out;
}

/**
 * Each window is what the builder makes of its text alone: same tokens, soft positions, segments,
 * visibility (branch/anchor), links and dropped branches, offsets shifted by where the window starts.
 */
function assertStandalone(trees: SentenceTree[], text: string, matches: TreeMatch[], options: SentenceTreeOptions, start: number): void {
  for (const w of trees) {
    const from = w.textStart - start;
    const to = w.textEnd - start;
    const inside = matches.filter((m) => m.start >= from && m.end <= to).map((m) => ({ ...m, start: m.start - from, end: m.end - from }));
    const [alone, ...more] = build(text.slice(from, to), inside, options, w.textStart);
    assert.equal(more.length, 0, `window ${w.window} fits alone`);
    assert.deepEqual([...w.tokenIds], [...alone.tokenIds], `tokens of window ${w.window}`);
    assert.deepEqual([...w.softPositions], [...alone.softPositions], `soft positions of window ${w.window}`);
    assert.deepEqual([...w.segmentIds], [...alone.segmentIds]);
    assert.deepEqual([...w.branch], [...alone.branch], `branches of window ${w.window}`);
    assert.deepEqual([...w.anchor], [...alone.anchor], `anchors of window ${w.window}`);
    assert.deepEqual(matrix(w), matrix(alone), `visibility of window ${w.window}`);
    assert.deepEqual([...w.charStart], [...alone.charStart]);
    assert.deepEqual([...w.charEnd], [...alone.charEnd]);
    assert.deepEqual(w.links, alone.links);
    assert.equal(w.droppedBranches, alone.droppedBranches);
    assert.equal(w.injectedTokens, alone.injectedTokens);
  }
}

describe('sentence tree: the paper example (figures 2 and 3)', () => {
  const [tree] = build(PAPER_TEXT, PAPER_MATCHES, { specialTokens: false });

  it('injects 类别疾病 after 新冠肺炎 and 类别部位 after 呼吸道', () => {
    assert.deepEqual([...tree.tokenIds], ids('新冠肺炎类别疾病可通过呼吸道类别部位飞沫传播'));
    assert.equal(tree.tokenIds.length, 22);
  });

  it('has the hard and soft positions of the table, position by position', () => {
    const hard = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21];
    const soft = [0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 10, 11, 12, 13];
    assert.deepEqual([...tree.tokenIds.keys()], hard);
    for (let h = 0; h < 22; h++) assert.equal(tree.softPositions[h], soft[h], `soft position of hard ${h}`);
    assert.deepEqual([...tree.segmentIds], new Array(22).fill(0));
  });

  it('has the visibility matrix of figure 3, cell by cell (symmetric)', () => {
    const expected = [
      '1111111111111100001111', // 0 新
      '1111111111111100001111', // 1 冠
      '1111111111111100001111', // 2 肺
      '1111111111111100001111', // 3 炎
      '1111111100000000000000', // 4 类  (branch of 新冠肺炎)
      '1111111100000000000000', // 5 别
      '1111111100000000000000', // 6 疾
      '1111111100000000000000', // 7 病
      '1111000011111100001111', // 8 可
      '1111000011111100001111', // 9 通
      '1111000011111100001111', // 10 过
      '1111000011111111111111', // 11 呼
      '1111000011111111111111', // 12 吸
      '1111000011111111111111', // 13 道
      '0000000000011111110000', // 14 类  (branch of 呼吸道)
      '0000000000011111110000', // 15 别
      '0000000000011111110000', // 16 部
      '0000000000011111110000', // 17 位
      '1111000011111100001111', // 18 飞
      '1111000011111100001111', // 19 沫
      '1111000011111100001111', // 20 传
      '1111000011111100001111', // 21 播
    ];
    const actual = matrix(tree);
    for (let i = 0; i < 22; i++) for (let j = 0; j < 22; j++) assert.equal(actual[i][j], expected[i][j], `cell (${i}, ${j})`);
    for (let i = 0; i < 22; i++) for (let j = 0; j < 22; j++) assert.equal(actual[i][j], actual[j][i], `symmetry (${i}, ${j})`);
  });

  it('gives the same matrix as an additive mask (0 visible, MASK_NEGATIVE not, padding masked)', () => {
    const stride = 24;
    const out = new Float32Array(stride * stride).fill(123);
    writeAdditiveMask(tree, out, 0, stride);
    const m = matrix(tree);
    for (let i = 0; i < 22; i++) {
      for (let j = 0; j < stride; j++) {
        const want = j < 22 && m[i][j] === '1' ? 0 : MASK_NEGATIVE;
        assert.equal(out[i * stride + j], want, `mask (${i}, ${j})`);
      }
    }
  });

  it('maps original tokens to document offsets, -1 for injected tokens, and links the names', () => {
    const [shifted] = build(PAPER_TEXT, PAPER_MATCHES, { specialTokens: false }, 100);
    const starts = [100, 101, 102, 103, -1, -1, -1, -1, 104, 105, 106, 107, 108, 109, -1, -1, -1, -1, 110, 111, 112, 113];
    assert.deepEqual([...shifted.charStart], starts);
    assert.deepEqual([...shifted.charEnd], starts.map((s) => (s < 0 ? -1 : s + 1)));
    assert.equal(shifted.textStart, 100);
    assert.equal(shifted.textEnd, 114);
    assert.deepEqual(
      shifted.links.map((l) => [l.start, l.end, l.firstToken, l.lastToken, l.injected]),
      [
        [100, 104, 0, 3, 1],
        [107, 110, 11, 13, 1],
      ],
    );
    assert.deepEqual([...shifted.branch], [-1, -1, -1, -1, 4, 4, 4, 4, -1, -1, -1, -1, -1, -1, 14, 14, 14, 14, -1, -1, -1, -1]);
    assert.deepEqual([...shifted.anchor], [0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, 11, 11, 11, 11, 11, 11, 11, -1, -1, -1, -1]);
  });
});

describe('sentence tree: structure', () => {
  it('adds [CLS] and [SEP] as original tokens around the sentence', () => {
    const [tree] = build(PAPER_TEXT, PAPER_MATCHES);
    assert.equal(tree.tokenIds.length, 24);
    assert.equal(tree.tokenIds[0], tokenizer.clsId);
    assert.equal(tree.tokenIds[23], tokenizer.sepId);
    assert.deepEqual([...tree.softPositions], [0, 1, 2, 3, 4, 5, 6, 7, 8, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 11, 12, 13, 14, 15]);
    assert.equal(tree.charStart[0], -1);
    assert.equal(tree.charStart[23], -1);
    const m = matrix(tree);
    // [CLS] sees the sentence, not the branches; the branches do not see [CLS] or [SEP].
    assert.equal(m[0], '111110000111111000011111');
    assert.equal(m[23], m[0]);
    assert.equal(m[5][0], '0');
    assert.equal(m[5][23], '0');
  });

  it('puts parallel branches of one name at the same soft positions, invisible to each other', () => {
    const [tree] = build('右踝疼痛', [{ start: 0, end: 2, triples: [t('右踝', '类别', '部位'), t('右踝', '类别', '症状')] }], { specialTokens: false });
    assert.deepEqual([...tree.tokenIds], ids('右踝类别部位类别症状疼痛'));
    assert.deepEqual([...tree.softPositions], [0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 2, 3]);
    assert.deepEqual(matrix(tree), [
      '111111111111', // 右: the sentence and both branches
      '111111111111', // 踝
      '111111000000', // 类 (branch 1): the name and its own branch
      '111111000000',
      '111111000000',
      '111111000000',
      '110000111100', // 类 (branch 2)
      '110000111100',
      '110000111100',
      '110000111100',
      '110000000011', // 疼: the sentence only
      '110000000011',
    ]);
  });

  it('injects at most maxEntities triples per name, in the given order', () => {
    const triples = [t('右踝', '类别', '部位'), t('右踝', '类别', '症状'), t('右踝', '类别', '疾病')];
    const [one] = build('右踝疼痛', [{ start: 0, end: 2, triples }], { specialTokens: false, maxEntities: 1 });
    assert.deepEqual([...one.tokenIds], ids('右踝类别部位疼痛'));
    const [two] = build('右踝疼痛', [{ start: 0, end: 2, triples }], { specialTokens: false });
    assert.deepEqual([...two.tokenIds], ids('右踝类别部位类别症状疼痛'));
    assert.equal(two.links[0].triples.length, 2);
  });

  it("injects the object alone with inject: 'object'", () => {
    const [tree] = build(PAPER_TEXT, PAPER_MATCHES, { specialTokens: false, inject: 'object' });
    assert.deepEqual([...tree.tokenIds], ids('新冠肺炎疾病可通过呼吸道部位飞沫传播'));
    assert.deepEqual([...tree.softPositions], [0, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 10, 11, 10, 11, 12, 13]);
  });

  it('gives the identity for a sentence with no match, and for the model input without knowledge', () => {
    const expectIdentity = (tree: SentenceTree, withSpecials: boolean): void => {
      const n = PAPER_TEXT.length + (withSpecials ? 2 : 0);
      assert.equal(tree.tokenIds.length, n);
      assert.deepEqual([...tree.softPositions], [...Array(n).keys()]);
      assert.ok(tree.branch.every((b) => b === -1));
      assert.ok(tree.anchor.every((a) => a === -1));
      assert.ok(matrix(tree).every((row) => !row.includes('0')));
      assert.equal(tree.droppedBranches, 0);
    };
    expectIdentity(build(PAPER_TEXT, [], { specialTokens: false })[0], false);
    expectIdentity(build(PAPER_TEXT, [])[0], true);
    const [baseline] = build(PAPER_TEXT, PAPER_MATCHES, { knowledge: false });
    expectIdentity(baseline, true);
    assert.deepEqual([...baseline.tokenIds], [tokenizer.clsId, ...ids(PAPER_TEXT), tokenizer.sepId]);
    assert.deepEqual(baseline.links, []);
    // A name without triples injects nothing.
    expectIdentity(build(PAPER_TEXT, [{ start: 0, end: 4, triples: [] }])[0], true);
  });

  it('-POS uses hard positions; -MASK makes everything visible; both keep the injected tokens', () => {
    const [noPos] = build(PAPER_TEXT, PAPER_MATCHES, { specialTokens: false, softPositions: false });
    assert.deepEqual([...noPos.softPositions], [...Array(22).keys()]);
    assert.equal(matrix(noPos)[8][4], '0');
    const [noMask] = build(PAPER_TEXT, PAPER_MATCHES, { specialTokens: false, visibilityMatrix: false });
    assert.deepEqual([...noMask.tokenIds], ids('新冠肺炎类别疾病可通过呼吸道类别部位飞沫传播'));
    assert.equal(noMask.softPositions[8], 4);
    assert.ok(matrix(noMask).every((row) => row === '1'.repeat(22)));
    // Injected tokens are still known by their offsets (-1), for labels and decoding.
    assert.equal(noMask.charStart[4], -1);
  });

  it('ignores matches off token boundaries and matches overlapping an earlier one', () => {
    const tk = new TestTokenizer({ wordPieces: 2 });
    const tree = new SentenceTreeBuilder(tk, { specialTokens: false }).build({
      text: 'abc肺炎',
      matches: [
        { start: 1, end: 3, triples: [t('bc', '类别', '疾病')] }, // starts inside the token "ab"
        { start: 3, end: 5, triples: [t('肺炎', '类别', '疾病')] },
        { start: 4, end: 5, triples: [t('炎', '类别', '症状')] }, // overlaps 肺炎
      ],
    })[0];
    assert.deepEqual(tree.links.map((l) => [l.start, l.end]), [[3, 5]]);
    assert.equal(tree.tokenIds.length, 4 + 4);
  });
});

describe('sentence tree: length budget', () => {
  it('drops branches, lowest priority first, before touching the text', () => {
    const matches: TreeMatch[] = [
      { start: 0, end: 4, triples: [t('新冠肺炎', '类别', '疾病'), t('新冠肺炎', '类别', '症状')] },
      { start: 7, end: 10, triples: [t('呼吸道', '类别', '部位')] },
    ];
    // 16 tokens of text with [CLS]/[SEP]; 3 branches of 4 tokens.
    const full = build(PAPER_TEXT, matches, { maxLength: 28 });
    assert.equal(full.length, 1);
    assert.equal(full[0].tokenIds.length, 28);
    assert.equal(full[0].droppedBranches, 0);
    assert.equal(full[0].injectedTokens, 12);
    // -MASK clears the branches (everything visible) but the injected tokens are still there and counted.
    const [unmasked] = build(PAPER_TEXT, matches, { maxLength: 28, visibilityMatrix: false });
    assert.ok(unmasked.branch.every((b) => b === -1));
    assert.equal(unmasked.injectedTokens, 12);

    // Room for two branches: every name's first triple before any second one.
    const [two] = build(PAPER_TEXT, matches, { maxLength: 27 });
    assert.equal(two.tokenIds.length, 24);
    assert.equal(two.droppedBranches, 1);
    assert.equal(two.injectedTokens, 8);
    assert.deepEqual(two.links.map((l) => l.injected), [1, 1]);

    // Room for one branch: the later name loses it.
    const [one] = build(PAPER_TEXT, matches, { maxLength: 23 });
    assert.deepEqual(one.links.map((l) => l.injected), [1, 0]);
    assert.equal(one.droppedBranches, 2);
    assert.deepEqual([...one.tokenIds], [tokenizer.clsId, ...ids('新冠肺炎类别疾病可通过呼吸道飞沫传播'), tokenizer.sepId]);
    // 呼吸道 has no branch left, so it is an ordinary original token.
    assert.deepEqual([...one.anchor.subarray(12, 15)], [-1, -1, -1]);

    // No room at all: the text alone, every original token kept.
    const [none] = build(PAPER_TEXT, matches, { maxLength: 16 });
    assert.equal(none.tokenIds.length, 16);
    assert.equal(none.droppedBranches, 3);
    assert.equal(none.injectedTokens, 0);
    assert.deepEqual(originals([none]).map((o) => o[1]), [...Array(14).keys()]);
  });

  it('splits a sentence longer than maxLength into windows, never inside a matched name, offsets kept', () => {
    // Capacity 8 tokens per window: the cut at 8 would split 呼吸道 (7-9), so it moves to 7.
    const trees = build(PAPER_TEXT, PAPER_MATCHES, { maxLength: 10 }, 50);
    assert.equal(trees.length, 2);
    assert.deepEqual(trees.map((w) => [w.window, w.windows, w.textStart, w.textEnd, w.originalTokens]), [
      [0, 2, 50, 57, 7],
      [1, 2, 57, 64, 7],
    ]);
    for (const w of trees) {
      assert.ok(w.tokenIds.length <= 10);
      assert.equal(w.tokenIds[0], tokenizer.clsId);
      assert.equal(w.tokenIds[w.tokenIds.length - 1], tokenizer.sepId);
      assert.equal(w.softPositions[0], 0);
    }
    assert.deepEqual(
      originals(trees).map((o) => o[1]),
      [...Array(14).keys()].map((i) => 50 + i),
    );
    // Each window keeps the branch it has room for: window 1 has 7 + 2 tokens, no room for 4 more.
    assert.deepEqual(trees.map((w) => w.links.map((l) => [l.start, l.injected])), [[[50, 0]], [[57, 0]]]);

    // With room (objects alone, 2 tokens), each window carries the branch of its own name.
    const roomy = build(PAPER_TEXT, PAPER_MATCHES, { maxLength: 11, inject: 'object' });
    assert.deepEqual(
      roomy.map((w) => [...w.tokenIds]),
      [
        [tokenizer.clsId, ...ids('新冠肺炎疾病可通过'), tokenizer.sepId],
        [tokenizer.clsId, ...ids('呼吸道部位飞沫传播'), tokenizer.sepId],
      ],
    );
    assert.deepEqual([...roomy[1].softPositions], [0, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8]);
    assert.deepEqual([...roomy[1].anchor], [-1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1]);
    assert.deepEqual(
      roomy.map((w) => w.links.map((l) => [l.start, l.firstToken, l.lastToken, l.injected])),
      [[[0, 1, 4, 1]], [[7, 1, 3, 1]]],
    );
  });

  it('does not cut a word-piece sequence unless the word is longer than a window', () => {
    const tk = new TestTokenizer({ wordPieces: 2 });
    const builder = new SentenceTreeBuilder(tk, { maxLength: 5 });
    // Tokens: 肺 炎 ab ##cd 肺 炎; capacity 3: two windows of 3 would cut "abcd", so three of 2.
    const trees = builder.build({ text: '肺炎abcd肺炎' });
    assert.deepEqual(trees.map((w) => [w.textStart, w.textEnd]), [
      [0, 2],
      [2, 6],
      [6, 8],
    ]);
    // A word longer than a window is cut at the window size.
    const long = builder.build({ text: 'abcdefgh' });
    assert.deepEqual(long.map((w) => w.originalTokens), [3, 1]);
  });

  it('balances the windows of a long sentence so that each keeps room for its own branches', () => {
    // 7 clauses of the paper sentence, each with its two names: 7 x 15 = 105 original tokens (，included).
    const clause = `${PAPER_TEXT}，`;
    const text = clause.repeat(7);
    const matches: TreeMatch[] = [];
    for (let c = 0; c < 7; c++) {
      const at = c * clause.length;
      matches.push({ start: at, end: at + 4, triples: [t('新冠肺炎', '类别', '疾病')] });
      matches.push({ start: at + 7, end: at + 10, triples: [t('呼吸道', '类别', '部位')] });
    }
    const options: SentenceTreeOptions = { maxLength: 72 }; // 70 tokens per window besides [CLS]/[SEP]
    const trees = build(text, matches, options, 100);
    // ceil(105 / 70) = 2 windows of about 53 tokens. Filling the first with 70 tokens of text (the old
    // cut, after 呼吸道 of the 5th clause) left its 10 names no room: 4 of 14 branches kept in all.
    // The even cut (53) is inside the 4th clause's 呼吸道 (tokens 52-54), so it moves to 52.
    assert.deepEqual(trees.map((w) => [w.textStart - 100, w.textEnd - 100, w.originalTokens]), [
      [0, 52, 52],
      [52, 105, 53],
    ]);
    assert.deepEqual(
      trees.map((w) => w.links.map((l) => l.injected).join('')),
      ['1111000', '1111000'], // 18 and 17 free tokens: four 4-token branches each, first names first
    );
    assert.deepEqual(trees.map((w) => w.droppedBranches), [3, 3]);
    for (const w of trees) assert.ok(w.tokenIds.length <= 72);
    // The original tokens exactly once, in order, offsets on the document.
    assert.deepEqual(
      originals(trees).map((o) => o[1]),
      [...Array(text.length).keys()].map((i) => 100 + i),
    );
    assertStandalone(trees, text, matches, options, 100);
  });

  it('ends a window after a clause mark near the even cut; a name across the cut may add a window', () => {
    // 28 + 1 + 32 = 61 tokens, capacity 40: 2 windows, even cut at 31; the 。 ends token 28, so the
    // first window ends after it (29), within the slack (a tenth of the window).
    const text = `${PAPER_TEXT.repeat(2)}。${'飞沫传播'.repeat(8)}`;
    const trees = build(text, [], { maxLength: 42 });
    assert.deepEqual(trees.map((w) => [w.textStart, w.textEnd]), [
      [0, 29],
      [29, 61],
    ]);
    // A clause mark farther than the slack does not move the cut: 。 at 20 (cut 21) vs even cut 31.
    const far = `${'飞沫传播'.repeat(5)}。${'飞沫传播'.repeat(10)}`;
    assert.deepEqual(build(far, [], { maxLength: 42 }).map((w) => w.textEnd), [31, 61]);
    // 12 tokens, capacity 6: the only cut for 2 windows (6) is inside 可通过呼 (4-7): 3 windows instead,
    // and the name's window has room for its branch (original text is never dropped).
    const names: TreeMatch[] = [{ start: 4, end: 8, triples: [t('可通过呼', '类别', '疾病')] }];
    const moved = build('新冠肺炎可通过呼吸道飞沫', names, { maxLength: 8, inject: 'object' });
    assert.deepEqual(moved.map((w) => [w.textStart, w.textEnd, w.links.map((l) => l.injected)]), [
      [0, 4, []],
      [4, 8, [1]],
      [8, 12, []],
    ]);
    assertStandalone(moved, '新冠肺炎可通过呼吸道飞沫', names, { maxLength: 8, inject: 'object' }, 0);
  });

  it('keeps a sentence that fits in one window, dropping branches rather than splitting it', () => {
    // 14 tokens, capacity 14: one window, no room for the two 4-token branches.
    const trees = build(PAPER_TEXT, PAPER_MATCHES, { maxLength: 16 });
    assert.equal(trees.length, 1);
    assert.equal(trees[0].droppedBranches, 2);
  });

  it('validates its options', () => {
    assert.throws(() => new SentenceTreeBuilder(tokenizer, { maxLength: 2 }), /maxLength must be an integer >= 3/);
    assert.doesNotThrow(() => new SentenceTreeBuilder(tokenizer, { maxLength: 1, specialTokens: false }));
    assert.throws(() => new SentenceTreeBuilder(tokenizer, { maxEntities: -1 }), /maxEntities/);
    assert.throws(() => new SentenceTreeBuilder(tokenizer, { inject: 'subject' as never }), /inject must be/);
  });
});

describe('sentence tree: Unicode edge cases', () => {
  it('builds [CLS][SEP] for an empty string, and nothing without special tokens', () => {
    const [tree] = build('', []);
    assert.deepEqual([...tree.tokenIds], [tokenizer.clsId, tokenizer.sepId]);
    assert.deepEqual([...tree.softPositions], [0, 1]);
    assert.equal(tree.windows, 1);
    const [bare] = build('', [], { specialTokens: false }, 9);
    assert.equal(bare.tokenIds.length, 0);
    assert.deepEqual([bare.textStart, bare.textEnd], [9, 9]);
  });

  it('keeps surrogate pairs whole: one token, two code units of offsets', () => {
    const text = '𠀀病可';
    const [tree] = build(text, [{ start: 0, end: 3, triples: [t('𠀀病', '类别', '疾病')] }], { specialTokens: false });
    assert.equal(tree.tokenIds.length, 2 + 4 + 1);
    assert.deepEqual([...tree.charStart], [0, 2, -1, -1, -1, -1, 3]);
    assert.deepEqual([...tree.charEnd], [2, 3, -1, -1, -1, -1, 4]);
    assert.deepEqual([...tree.softPositions], [0, 1, 2, 3, 4, 5, 2]);
  });

  it('keeps combining marks inside their base token', () => {
    const text = 'e\u0301肺炎';
    const [tree] = build(text, [{ start: 2, end: 4, triples: [t('肺炎', '类别', '疾病')] }], { specialTokens: false });
    assert.deepEqual([...tree.charStart.subarray(0, 3)], [0, 2, 3]);
    assert.deepEqual([...tree.charEnd.subarray(0, 3)], [2, 3, 4]);
  });

  it('skips control characters the tokenizer drops, offsets still those of the text', () => {
    const text = '肺\u0000炎\u0007可';
    const [tree] = build(text, [], { specialTokens: false });
    assert.deepEqual([...tree.charStart], [0, 2, 4]);
    assert.deepEqual([...tree.softPositions], [0, 1, 2]);
  });
});

describe('alignLabels', () => {
  it('gives original tokens their first character label and -1 to injected and special tokens', () => {
    const [tree] = build(PAPER_TEXT, PAPER_MATCHES, {}, 30);
    // O=0 B-Disease=1 I-Disease=2 B-Body=3 I-Body=4
    const chars = [1, 2, 2, 2, 0, 0, 0, 3, 4, 4, 0, 0, 0, 0];
    const labels = alignLabels(tree, chars, 30);
    assert.deepEqual([...labels], [-1, 1, 2, 2, 2, -1, -1, -1, -1, 0, 0, 0, 3, 4, 4, -1, -1, -1, -1, 0, 0, 0, 0, -1]);
  });

  it('takes the first character of a token covering several characters', () => {
    const tk = new TestTokenizer({ wordPieces: 2 });
    const [tree] = new SentenceTreeBuilder(tk).build({ text: 'ctabc检' });
    // Tokens: [CLS] ct ##ab ##c 检 [SEP]
    assert.deepEqual([...alignLabels(tree, [5, 6, 6, 6, 6, 0])], [-1, 5, 6, 6, 0, -1]);
  });

  it('refuses labels that do not cover the sentence', () => {
    const [tree] = build(PAPER_TEXT, []);
    assert.throws(() => alignLabels(tree, [0, 0, 0]), /outside the 3 labelled characters/);
  });
});
