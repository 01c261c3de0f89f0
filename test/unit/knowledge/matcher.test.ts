import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Token } from '../../../src/domain/index.ts';
import { normalizeText } from '../../../src/domain/text.ts';
import { ConceptMatcher } from '../../../src/knowledge/index.ts';
import type { ConceptMatch } from '../../../src/knowledge/index.ts';
import { TestTokenizer } from './test-tokenizer.ts';

const spans = (matches: ConceptMatch[]): [number, number, string][] => matches.map((m) => [m.start, m.end, m.key]);

/** Leftmost-longest non-overlapping matching by brute force, for comparison. */
function bruteForce(names: string[], text: string, ok: (s: number, e: number) => boolean): [number, number, string][] {
  const keys = new Set(names.map(normalizeText).filter((k) => k.length > 0));
  const norm = normalizeText(text);
  const out: [number, number, string][] = [];
  for (let i = 0; i < norm.length; ) {
    let best = 0;
    for (const k of keys) if (k.length > best && norm.startsWith(k, i) && ok(i, i + k.length)) best = k.length;
    if (best > 0) {
      out.push([i, i + best, norm.slice(i, i + best)]);
      i += best;
    } else i++;
  }
  return out;
}

describe('ConceptMatcher', () => {
  it('prefers the longest name at the leftmost start: 右踝内侧 wins over 右踝', () => {
    const m = ConceptMatcher.build(['右踝', '右踝内侧', '内侧', '疼痛', '踝']);
    assert.deepEqual(spans(m.match('右踝内侧疼痛')), [
      [0, 4, '右踝内侧'],
      [4, 6, '疼痛'],
    ]);
    assert.deepEqual(spans(m.match('右踝内疼痛')), [
      [0, 2, '右踝'],
      [3, 5, '疼痛'],
    ]);
  });

  it('does not overlap: the leftmost start wins even when a later match is longer', () => {
    const m = ConceptMatcher.build(['呼吸', '吸道感染']);
    assert.deepEqual(spans(m.match('呼吸道感染')), [[0, 2, '呼吸']]);
  });

  it("mode 'all' reports every match, by start then longest first", () => {
    const m = ConceptMatcher.build(['右踝', '右踝内侧', '内侧', '踝']);
    assert.deepEqual(spans(m.match('右踝内侧', { mode: 'all' })), [
      [0, 4, '右踝内侧'],
      [0, 2, '右踝'],
      [1, 2, '踝'],
      [2, 4, '内侧'],
    ]);
  });

  it('matches after the tokenizer normalisation: full width and case, offsets of the original text', () => {
    const m = ConceptMatcher.build(['胸部及腹部CT', '颈椎MRI']);
    const text = '行胸部及腹部ｃｔ及颈椎mri检查';
    const found = m.match(text);
    assert.deepEqual(spans(found), [
      [1, 8, '胸部及腹部ct'],
      [9, 14, '颈椎mri'],
    ]);
    assert.equal(text.slice(found[0].start, found[0].end), '胸部及腹部ｃｔ');
    assert.deepEqual(found[0].names, ['胸部及腹部CT']);
  });

  it('keeps every graph name that normalises to the same key', () => {
    const m = ConceptMatcher.build(['CT', 'ct', 'ＣＴ', 'ct']);
    assert.equal(m.size, 1);
    assert.deepEqual(m.match('ct')[0].names, ['CT', 'ct', 'ＣＴ']);
  });

  it('accepts a match only on word boundaries of the tokens', () => {
    const tokenizer = new TestTokenizer({ wordPieces: 2 });
    const m = ConceptMatcher.build(['ct', 'N动脉瘤', '动脉瘤', 'b细胞', 'ab']);
    const match = (text: string): [number, number, string][] => spans(m.match(text, { tokens: tokenizer.tokenize(text) }));
    // "fact" is one word (pieces "fa", "##ct"): "ct" inside it must not match.
    assert.deepEqual(match('fact'), []);
    // "ctab" -> "ct", "##ab": "ct" is the start of a longer word, not a word.
    assert.deepEqual(match('ctab'), []);
    assert.deepEqual(match('做ct检查'), [[1, 3, 'ct']]);
    assert.deepEqual(match('ct ab'), [
      [0, 2, 'ct'],
      [3, 5, 'ab'],
    ]);
    // "on" + "动脉瘤": the name "n动脉瘤" would start inside the word "on"; the shorter name is found.
    assert.deepEqual(match('on动脉瘤'), [[2, 5, '动脉瘤']]);
    assert.deepEqual(match('N动脉瘤'), [[0, 4, 'n动脉瘤']]);
    assert.deepEqual(match('ab细胞'), [[0, 2, 'ab']]);
    // Without tokens every code-unit position is a boundary.
    assert.deepEqual(spans(m.match('fact')), [[2, 4, 'ct']]);
  });

  it('only accepts boundaries the tokens give, e.g. a token spanning a combining mark', () => {
    const tokenizer = new TestTokenizer();
    const m = ConceptMatcher.build(['e', 'e\u0301']);
    const text = 'e\u0301';
    assert.deepEqual(spans(m.match(text, { tokens: tokenizer.tokenize(text) })), [[0, 2, 'e\u0301']]);
    const tokens: Token[] = [{ text: 'é', id: 1, start: 0, end: 2 }];
    assert.deepEqual(spans(ConceptMatcher.build(['e']).match(text, { tokens })), []);
  });

  it('never splits a surrogate pair', () => {
    const m = ConceptMatcher.build(['\ud840', '\udc00病', '𠀀病']);
    assert.deepEqual(spans(m.match('患𠀀病')), [[1, 4, '𠀀病']]);
    assert.deepEqual(spans(ConceptMatcher.build(['\udc00病']).match('𠀀病')), []);
    const tokenizer = new TestTokenizer();
    assert.deepEqual(spans(m.match('𠀀病', { tokens: tokenizer.tokenize('𠀀病') })), [[0, 3, '𠀀病']]);
  });

  it('handles empty text, no names, empty names and control characters', () => {
    assert.deepEqual(ConceptMatcher.build([]).match('肺炎'), []);
    assert.deepEqual(ConceptMatcher.build(['肺炎']).match(''), []);
    const m = ConceptMatcher.build(['', '肺炎']);
    assert.equal(m.size, 1);
    // A control character between the characters of a name breaks the name.
    assert.deepEqual(spans(m.match('肺\u0000炎肺炎')), [[3, 5, '肺炎']]);
  });

  it('agrees with brute-force leftmost-longest on random texts', () => {
    let seed = 42;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const alphabet = [...'肺炎咳嗽发热右踝内侧aB'];
    const word = (len: number): string => Array.from({ length: len }, () => alphabet[rand(alphabet.length)]).join('');
    for (let round = 0; round < 30; round++) {
      const names = Array.from({ length: 40 }, () => word(1 + rand(5)));
      const matcher = ConceptMatcher.build(names);
      for (let k = 0; k < 20; k++) {
        const text = word(rand(60));
        assert.deepEqual(spans(matcher.match(text)), bruteForce(names, text, () => true), `${names.join(',')} | ${text}`);
        // With token boundaries: only even offsets allowed.
        const tokens: Token[] = [];
        for (let i = 0; i < text.length; i += 2) tokens.push({ text: text.slice(i, i + 2), id: 0, start: i, end: Math.min(text.length, i + 2) });
        const even = (s: number, e: number): boolean => s % 2 === 0 && (e % 2 === 0 || e === text.length);
        assert.deepEqual(spans(matcher.match(text, { tokens })), bruteForce(names, text, even), `${names.join(',')} | ${text} (tokens)`);
      }
    }
  });

  it('matches the Medical graph names in a real sentence', async () => {
    const { readFileSync } = await import('node:fs');
    const { sharedData } = await import('../../helpers/paths.ts');
    const names = readFileSync(sharedData('kbert-kgs', 'Medical.spo'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('\t')[0]);
    const m = ConceptMatcher.build(names);
    assert.equal(m.size, 13_553);
    const text = '主因咳嗽伴发热5天于2016年11月30日13:09以支气管肺炎收入院。';
    // 咳嗽 and 发热 are not subjects of MedicalKG; 支气管肺炎 is, and wins over any shorter name inside it.
    assert.deepEqual(spans(m.match(text)), [[27, 32, '支气管肺炎']]);
  });
});
