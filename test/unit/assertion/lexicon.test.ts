import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AssertionAnnotator,
  loadTriggerLexicon,
  mergeLexicons,
  parseTriggerLexicon,
} from '../../../src/assertion/index.ts';
import { SchemaError } from '../../../src/errors/index.ts';

const HEADER = 'trigger\tproperty\tdirection\tkind\treach\ttypes\tnote';

describe('trigger lexicon', () => {
  it('the shipped file parses and covers all four properties with triggers, pseudo-triggers and terminations', () => {
    const lexicon = loadTriggerLexicon();
    const properties = new Set(lexicon.rules.filter((r) => r.kind === 'trigger').map((r) => r.property));
    assert.deepEqual([...properties].sort(), ['family', 'history', 'negation', 'uncertainty']);
    assert.ok(lexicon.rules.some((r) => r.trigger === '无明显诱因' && r.kind === 'pseudo'));
    assert.ok(lexicon.rules.some((r) => r.trigger === '但' && r.kind === 'termination'));
  });

  it('reads optional columns with defaults and splits the types list', () => {
    const lexicon = parseTriggerLexicon(
      ['# a comment', 'trigger\tproperty\tdirection\tkind\ttypes', '待查\tuncertainty\tbackward\ttrigger\tDisease, Symptom', ''].join('\n'),
    );
    assert.deepEqual(lexicon.rules, [
      { trigger: '待查', property: 'uncertainty', direction: 'backward', kind: 'trigger', reach: 'clause', types: ['Disease', 'Symptom'], note: '' },
    ]);
  });

  it('rejects an unknown property, a missing column and an empty trigger, saying where', () => {
    assert.throws(() => parseTriggerLexicon(`${HEADER}\n无\tdenial\tforward\ttrigger\tclause\t\t`, 'x.tsv'), (e: unknown) => {
      assert.ok(e instanceof SchemaError);
      assert.match(e.message, /x\.tsv:2: property must be one of/);
      return true;
    });
    assert.throws(() => parseTriggerLexicon('trigger\tproperty\tkind\n无\tnegation\ttrigger'), /lacks column "direction"/);
    assert.throws(() => parseTriggerLexicon(`${HEADER}\n\tnegation\tforward\ttrigger\tclause\t\t`), /empty trigger/);
  });

  it('a hospital extends the shipped lexicon with its own rows, no code', () => {
    const sentence = '胸片示右下肺似为炎症。';
    const span = { start: sentence.indexOf('炎症'), end: sentence.indexOf('炎症') + 2, type: 'Disease' };
    const shipped = new AssertionAnnotator(loadTriggerLexicon());
    assert.equal(shipped.annotate(sentence, [span])[0].certainty, 'certain');
    const local = parseTriggerLexicon(`${HEADER}\n似为\tuncertainty\tforward\ttrigger\tclause\t\tour radiologists' hedge`);
    const extended = new AssertionAnnotator(mergeLexicons(loadTriggerLexicon(), local));
    const [result] = extended.annotate(sentence, [span]);
    assert.equal(result.certainty, 'possible');
    assert.deepEqual(result.triggers, [{ start: 6, end: 8, text: '似为', property: 'uncertainty' }]);
  });

  it('full-width and half-width punctuation are one trigger', () => {
    const lexicon = parseTriggerLexicon(`${HEADER}\n？\tuncertainty\tbackward\ttrigger\tclause\t\t`);
    const annotator = new AssertionAnnotator(lexicon);
    for (const text of ['肠梗阻？', '肠梗阻?']) {
      assert.equal(annotator.annotate(text, [{ start: 0, end: 3 }])[0].certainty, 'possible', text);
    }
  });
});
