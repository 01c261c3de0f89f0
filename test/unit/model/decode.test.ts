import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BioDecoder, decodeSentence, labelledPositions, logSoftmaxRows, spansToEntities } from '../../../src/model/decode.ts';
import type { InjectedSentence } from '../../../src/domain/index.ts';
import { ModelError } from '../../../src/errors/index.ts';

const LABELS = ['O', 'B-DIS', 'I-DIS', 'B-SYM', 'I-SYM'];
const L = LABELS.length;
const tag = (label: string): number => LABELS.indexOf(label);

/** Logits whose softmax is exactly the given probabilities (log of each). */
function rowsFromProbabilities(rows: Array<Record<string, number>>): Float32Array {
  const out = new Float32Array(rows.length * L);
  rows.forEach((row, t) => {
    const total = Object.values(row).reduce((a, b) => a + b, 0);
    const rest = (1 - total) / (L - Object.keys(row).length || 1);
    for (let j = 0; j < L; j++) out[t * L + j] = Math.log(row[LABELS[j]] ?? rest);
  });
  return out;
}

/** A sentence of original tokens only, one character each, starting at `offset` in the document. */
function plainSentence(n: number, offset = 0): InjectedSentence {
  const charStart = Int32Array.from({ length: n }, (_, i) => offset + i);
  return {
    tokenIds: new Int32Array(n).fill(5),
    softPositions: Int32Array.from({ length: n }, (_, i) => i),
    segmentIds: new Int32Array(n),
    branch: new Int32Array(n).fill(-1),
    anchor: new Int32Array(n).fill(-1),
    charStart,
    charEnd: charStart.map((s) => s + 1),
  };
}

test('an I- tag at the start, where greedy argmax would put it, becomes B- when that scores best', () => {
  // Greedy: I-DIS, I-DIS (invalid). Valid options: B-DIS I-DIS = log .1 + log .9; O O = log .4 + log .05.
  const logits = rowsFromProbabilities([
    { O: 0.4, 'B-DIS': 0.1, 'I-DIS': 0.5 },
    { O: 0.05, 'B-DIS': 0.05, 'I-DIS': 0.9 },
  ]);
  const spans = decodeSentence(plainSentence(2), logits, LABELS);
  assert.equal(spans.length, 1);
  assert.deepEqual({ ...spans[0], score: 0 }, { firstToken: 0, lastToken: 1, type: 'DIS', score: 0 });
  assert.ok(Math.abs(spans[0].score - (0.1 + 0.9) / 2) < 1e-6, `score ${spans[0].score}`);
});

test('no I-X after O or after another type: Viterbi picks the best valid path, not greedy', () => {
  // Greedy: B-DIS I-SYM O (invalid: I-SYM after B-DIS).
  // Valid candidates for token 1: I-DIS (.3), O (.1), B-SYM (.15): B-DIS I-DIS O wins.
  const logits = rowsFromProbabilities([
    { 'B-DIS': 0.8, O: 0.1 },
    { 'I-SYM': 0.4, 'I-DIS': 0.3, 'B-SYM': 0.15, O: 0.1 },
    { O: 0.9 },
  ]);
  const decoder = new BioDecoder(LABELS);
  const positions = Int32Array.from([0, 1, 2]);
  const tags = decoder.viterbi(logSoftmaxRows(logits, L, positions), 3);
  assert.deepEqual([...tags].map((t) => LABELS[t]), ['B-DIS', 'I-DIS', 'O']);
  // Greedy O then I-DIS: the I- must become O or B- (here I-DIS .6 but the path through B-DIS .3 is better than O .05).
  const afterO = rowsFromProbabilities([
    { O: 0.9 },
    { 'I-DIS': 0.6, 'B-DIS': 0.3, O: 0.05 },
    { 'I-DIS': 0.9 },
  ]);
  const t2 = decoder.viterbi(logSoftmaxRows(afterO, L, positions), 3);
  assert.deepEqual([...t2].map((t) => LABELS[t]), ['O', 'B-DIS', 'I-DIS']);
});

test('Viterbi matches brute force over every valid sequence', () => {
  const decoder = new BioDecoder(LABELS);
  let seed = 42;
  const random = (): number => {
    seed = (seed * 16807) % 2147483647;
    return seed / 2147483647;
  };
  const valid = (seq: number[]): boolean =>
    seq.every((t, i) => {
      const label = LABELS[t];
      if (!label.startsWith('I-')) return true;
      if (i === 0) return false;
      const prev = LABELS[seq[i - 1]];
      return prev !== 'O' && prev.slice(2) === label.slice(2);
    });
  for (let trial = 0; trial < 30; trial++) {
    const n = 1 + (trial % 5);
    const logits = Float32Array.from({ length: n * L }, () => (random() - 0.5) * 8);
    const positions = Int32Array.from({ length: n }, (_, i) => i);
    const lp = logSoftmaxRows(logits, L, positions);
    let best = -Infinity;
    for (let code = 0; code < L ** n; code++) {
      const seq = Array.from({ length: n }, (_, i) => Math.floor(code / L ** i) % L);
      if (!valid(seq)) continue;
      best = Math.max(best, seq.reduce((s, t, i) => s + lp[i * L + t], 0));
    }
    const tags = [...decoder.viterbi(lp, n)];
    assert.ok(valid(tags), `trial ${trial}: invalid ${tags}`);
    const got = tags.reduce((s, t, i) => s + lp[i * L + t], 0);
    assert.ok(Math.abs(got - best) < 1e-9, `trial ${trial}: ${got} vs ${best}`);
  }
});

test('injected and special tokens are dropped: spans are on the original text of the document', () => {
  // Document: "主诉：新冠肺炎可传播" with the sentence starting at 3.
  // Hard: 0 [CLS] | 1-4 新冠肺炎 | 5-8 类别疾病 (injected) | 9 可 | 10 传 | 11 播 | 12 [SEP]
  const doc = '主诉：新冠肺炎可传播';
  const T = 13;
  const branch = new Int32Array(T).fill(-1);
  const anchor = new Int32Array(T).fill(-1);
  const charStart = new Int32Array(T).fill(-1);
  const charEnd = new Int32Array(T).fill(-1);
  for (let i = 5; i <= 8; i++) branch[i] = 5;
  for (let i = 1; i <= 8; i++) anchor[i] = 1;
  const originals = [1, 2, 3, 4, 9, 10, 11];
  originals.forEach((h, k) => {
    charStart[h] = 3 + k;
    charEnd[h] = 4 + k;
  });
  const sentence: InjectedSentence = {
    tokenIds: new Int32Array(T).fill(7),
    softPositions: Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 5, 6, 7, 8]),
    segmentIds: new Int32Array(T),
    branch,
    anchor,
    charStart,
    charEnd,
  };
  assert.deepEqual([...labelledPositions(sentence)], originals);
  const rows: Array<Record<string, number>> = [];
  for (let h = 0; h < T; h++) {
    if (h === 1) rows.push({ 'B-DIS': 0.9 });
    else if (h >= 2 && h <= 4) rows.push({ 'I-DIS': 0.8 });
    // Injected and special tokens scream B-SYM / I-SYM: if they were decoded they would make entities.
    else if (branch[h] >= 0 || charStart[h] < 0) rows.push({ 'I-SYM': 0.99 });
    else if (h === 9) rows.push({ O: 0.7 });
    else if (h === 10) rows.push({ 'B-SYM': 0.6 });
    else rows.push({ 'I-SYM': 0.5, O: 0.4 });
  }
  const spans = decodeSentence(sentence, rowsFromProbabilities(rows), LABELS);
  assert.deepEqual(
    spans.map((s) => [s.firstToken, s.lastToken, s.type]),
    [
      [1, 4, 'DIS'],
      [10, 11, 'SYM'],
    ],
  );
  assert.ok(Math.abs(spans[0].score - (0.9 + 0.8 * 3) / 4) < 1e-6);
  assert.ok(Math.abs(spans[1].score - (0.6 + 0.5) / 2) < 1e-6);
  const entities = spansToEntities(sentence, spans, doc);
  assert.deepEqual(
    entities.map((e) => [e.start, e.end, e.text, e.type]),
    [
      [3, 7, '新冠肺炎', 'DIS'],
      [8, 10, '传播', 'SYM'],
    ],
  );
  assert.deepEqual(entities[0].linked, []);
});

test('a span continues across an injected branch when the original tokens around it are B- and I-', () => {
  const sentence = plainSentence(4);
  // Make token 2 injected: the sequence seen by the decoder is tokens 0, 1, 3.
  sentence.branch[2] = 2;
  sentence.charStart[2] = -1;
  sentence.charEnd[2] = -1;
  const logits = rowsFromProbabilities([{ 'B-DIS': 0.9 }, { 'I-DIS': 0.9 }, { O: 0.99 }, { 'I-DIS': 0.9 }]);
  const spans = decodeSentence(sentence, logits, LABELS);
  assert.deepEqual(spans.map((s) => [s.firstToken, s.lastToken]), [[0, 3]]);
  assert.deepEqual(spansToEntities(sentence, spans, 'abcd').map((e) => e.text), ['abcd']);
});

test('all-O, empty sentences and bad inputs', () => {
  assert.deepEqual(decodeSentence(plainSentence(3), rowsFromProbabilities([{ O: 0.9 }, { O: 0.9 }, { O: 0.9 }]), LABELS), []);
  assert.deepEqual(decodeSentence(plainSentence(0), new Float32Array(0), LABELS), []);
  assert.throws(() => decodeSentence(plainSentence(2), new Float32Array(3), LABELS), ModelError);
  assert.throws(() => new BioDecoder(['O', 'DIS']), /not O, B-<type> or I-<type>/);
  assert.throws(() => new BioDecoder([]), ModelError);
  // Adjacent B- tags make two spans.
  const spans = decodeSentence(plainSentence(2), rowsFromProbabilities([{ 'B-DIS': 0.9 }, { 'B-DIS': 0.9 }]), LABELS);
  assert.deepEqual(spans.map((s) => [s.firstToken, s.lastToken]), [[0, 0], [1, 1]]);
  assert.equal(tag('O'), 0);
});

/** Deterministic pseudo-random numbers in [-2, 2) for the CRF tests. */
function numbers(n: number, seed: number): Float64Array {
  let a = seed >>> 0;
  return Float64Array.from({ length: n }, () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return (a / 2 ** 32) * 4 - 2;
  });
}

test('with a CRF layer, Viterbi returns the best valid path under emissions + transitions (brute force)', () => {
  const crf = { transitions: numbers(L * L, 1), start: numbers(L, 2), end: numbers(L, 3) };
  const decoder = new BioDecoder(LABELS, crf);
  const plain = new BioDecoder(LABELS);
  const n = 4;
  let differs = false;
  for (let seed = 10; seed < 30; seed++) {
    const logits = Float32Array.from(numbers(n * L, seed));
    const logProbs = logSoftmaxRows(logits, L, [0, 1, 2, 3]);
    let best = -Infinity;
    let bestPath: number[] = [];
    const valid = (p: number[]) => p.every((t, i) => !LABELS[t].startsWith('I-') || (i > 0 && LABELS[p[i - 1]] !== 'O' && LABELS[p[i - 1]].slice(2) === LABELS[t].slice(2)));
    for (let code = 0; code < L ** n; code++) {
      const p = Array.from({ length: n }, (_, i) => Math.floor(code / L ** i) % L);
      if (!valid(p)) continue;
      let s = crf.start[p[0]] + crf.end[p[n - 1]];
      p.forEach((t, i) => {
        s += logProbs[i * L + t];
        if (i > 0) s += crf.transitions[p[i - 1] * L + t];
      });
      if (s > best) {
        best = s;
        bestPath = p;
      }
    }
    const got = Array.from(decoder.viterbi(logProbs, n));
    assert.deepEqual(got, bestPath, `seed ${seed}`);
    if (got.join() !== Array.from(plain.viterbi(logProbs, n)).join()) differs = true;
  }
  assert.ok(differs, 'the transition scores never changed a decision: the test would not notice them being ignored');
});

test('CRF scores are read from the weights all three or not at all, with their shapes checked', async () => {
  const { crfScoresFrom } = await import('../../../src/model/decode.ts');
  const w = (shape: number[]) => ({ shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
  assert.equal(crfScoresFrom(new Map(), L), null);
  const full = new Map([
    ['crf.transitions', w([L, L])],
    ['crf.start_transitions', w([L])],
    ['crf.end_transitions', w([L])],
  ]);
  assert.equal(crfScoresFrom(full, L)!.transitions.length, L * L);
  full.delete('crf.end_transitions');
  assert.throws(() => crfScoresFrom(full, L), (e: unknown) => e instanceof ModelError && /incomplete/.test(e.message));
  full.set('crf.end_transitions', w([L + 1]));
  assert.throws(() => crfScoresFrom(full, L), (e: unknown) => e instanceof ModelError && /shape/.test(e.message));
});
