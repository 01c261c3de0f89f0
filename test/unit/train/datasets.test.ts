import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sharedData } from '../../helpers/paths.ts';
import {
  bioLabels,
  ccksRecordToSentence,
  loadCorpus,
  MEDICAL_TYPES,
  MSRA_TYPES,
  originalLabels,
  parseIob2,
  parseKbertTsv,
  readCcks2017Zip,
  readKbertTsv,
  readMsraZip,
  subsetSentences,
  withoutOverlap,
} from '../../../src/train/datasets.ts';
import { SchemaError } from '../../../src/errors/index.ts';

const HEADER = 'text_a\tlabel\n';

test('K-BERT TSV: chars, joined text, labels and entity counts', () => {
  const ds = parseKbertTsv(`${HEADER}左 侧 肢 体 痛\tB-BodyPart I-BodyPart I-BodyPart I-BodyPart B-Symptom\n无 异 常\tO O O\n`, 'x.tsv', {
    types: MEDICAL_TYPES,
  });
  assert.equal(ds.sentences.length, 2);
  assert.deepEqual(ds.sentences[0].chars, ['左', '侧', '肢', '体', '痛']);
  assert.equal(ds.sentences[0].text, '左侧肢体痛');
  assert.deepEqual(ds.sentences[1].labels, ['O', 'O', 'O']);
  assert.deepEqual(ds.stats.entities, { BodyPart: 1, Symptom: 1 });
  assert.equal(ds.stats.chars, 8);
  assert.deepEqual(ds.warnings, []);
});

function schemaError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof SchemaError && pattern.test(e.message), `expected SchemaError matching ${pattern}`);
}

test('K-BERT TSV: bad inputs are refused with file, line and reason', () => {
  schemaError(() => parseKbertTsv('text\tlabels\n左\tO\n', 'a.tsv'), /^a\.tsv:1: expected the header/);
  schemaError(() => parseKbertTsv(`${HEADER}左 侧\tO\n`, 'b.tsv'), /^b\.tsv:2: 2 characters but 1 tags$/);
  schemaError(() => parseKbertTsv(`${HEADER}左\tO\n痛\tB-Pain\n`, 'c.tsv', { types: MEDICAL_TYPES }), /^c\.tsv:3: .*unknown type "Pain"/);
  schemaError(() => parseKbertTsv(`${HEADER}左\tO\n\n痛\tO\n`, 'd.tsv'), /^d\.tsv:3: empty line/);
  schemaError(() => parseKbertTsv(`${HEADER}左  痛\tO O O\n`, 'e.tsv'), /^e\.tsv:2: character 2 is empty/);
  schemaError(() => parseKbertTsv(`${HEADER}左\tX-Body\n`, 'f.tsv'), /^f\.tsv:2: tag 1 "X-Body" is not O, B-TYPE or I-TYPE/);
  schemaError(() => parseKbertTsv(`${HEADER}左 痛\n`, 'g.tsv'), /^g\.tsv:2: expected 2 tab-separated fields/);
  schemaError(() => parseKbertTsv(HEADER, 'h.tsv'), /no sentences/);
  schemaError(() => readKbertTsv('/nonexistent/file.tsv'), /cannot read \/nonexistent\/file\.tsv/);
});

test('an I- tag without its B- is repaired to B-, counted and reported, and recoverable', () => {
  const ds = parseKbertTsv(`${HEADER}体 痛 头 痛\tI-BodyPart B-Symptom I-Symptom I-BodyPart\n`, 'r.tsv', { types: MEDICAL_TYPES });
  const s = ds.sentences[0];
  assert.deepEqual(s.labels, ['B-BodyPart', 'B-Symptom', 'I-Symptom', 'B-BodyPart']);
  assert.deepEqual(s.repaired, [0, 3]);
  assert.equal(ds.stats.repairedOrphans, 2);
  assert.deepEqual(ds.stats.entities, { BodyPart: 2, Symptom: 1 });
  assert.deepEqual(ds.stats.beginTags, { Symptom: 1 });
  assert.equal(ds.warnings.length, 1);
  assert.match(ds.warnings[0], /r\.tsv: 2 I- tag\(s\) .* repaired to B- \(line 2 tag 1 I-BodyPart; line 2 tag 4 I-BodyPart\)/);
  assert.deepEqual(originalLabels(s), ['I-BodyPart', 'B-Symptom', 'I-Symptom', 'I-BodyPart']);
});

test('IOB2: sentences split on blank lines; errors name the lines', () => {
  const ds = parseIob2('中\tB-LOC\n国\tI-LOC\n人\tO\n\n\n张\tB-PER\n', 'm.txt', { types: MSRA_TYPES });
  assert.equal(ds.sentences.length, 2);
  assert.equal(ds.sentences[0].text, '中国人');
  assert.deepEqual(ds.sentences[1].labels, ['B-PER']);
  schemaError(() => parseIob2('中\tB-LOC\n国 I-LOC\n', 'm.txt'), /^m\.txt:2: expected "char<TAB>tag"/);
  schemaError(() => parseIob2('中\tO\n\n国\tB-GPE\n', 'm.txt', { types: MSRA_TYPES }), /^m\.txt:3-\d+: sentence 2: .*unknown type "GPE"/);
});

test('bioLabels puts O first, then B-/I- per type', () => {
  assert.deepEqual(bioLabels(['PER', 'LOC']), ['O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC']);
});

test('medical split: entity counts match the paper\'s table 1 (train and dev exactly, test differs by one Disease)', () => {
  const m = loadCorpus('medical');
  // Paper table 1 (身体部位, 疾病症状, 疾病实体, 医学检查, 治疗方式, 全部), counted as B- tags in the files.
  const paper = {
    train: { BodyPart: 8496, Symptom: 6240, Disease: 580, Examine: 7566, Cure: 853, total: 23735 },
    dev: { BodyPart: 1243, Symptom: 881, Disease: 75, Examine: 1113, Cure: 97, total: 3409 },
    test: { BodyPart: 980, Symptom: 709, Disease: 66, Examine: 867, Cure: 98, total: 2720 },
  };
  assert.equal(m.train.stats.sentences, 6919);
  assert.equal(m.dev.stats.sentences, 939);
  assert.equal(m.test.stats.sentences, 755);
  for (const split of ['train', 'dev'] as const) {
    const { total, ...perType } = paper[split];
    assert.deepEqual(m[split].stats.beginTags, perType, split);
    assert.equal(m[split].stats.totalBeginTags, total, split);
  }
  // The test file holds 67 B-Disease tags where the paper prints 66 (total 2,721 vs 2,720).
  const { total: _total, ...testPerType } = paper.test;
  assert.deepEqual(m.test.stats.beginTags, { ...testPerType, Disease: 67 });
  assert.equal(m.test.stats.totalBeginTags, paper.test.total + 1);
  // Orphan I- tags (records cut mid-entity) are repaired and counted as entities for training and strict scoring.
  assert.deepEqual([m.train.stats.repairedOrphans, m.dev.stats.repairedOrphans, m.test.stats.repairedOrphans], [15, 1, 1]);
  assert.equal(m.train.stats.totalEntities, 23735 + 15);
});

test('MSRA zip: 50,658 train + 4,631 test sentences; rebuilt train shares no text with K-BERT dev/test', () => {
  const { train, test: testSet } = readMsraZip(sharedData('msra-dh', 'dh_msra.zip'));
  assert.equal(train.stats.sentences, 50658);
  assert.equal(testSet.stats.sentences, 4631);
  assert.equal(train.stats.chars + testSet.stats.chars, 2342480);
  assert.deepEqual(testSet.stats.beginTags, { LOC: 2877, PER: 1973, ORG: 1331 });
  assert.equal(testSet.stats.repairedOrphans, 11);
  assert.equal(testSet.stats.entities.PER, 1973 + 11);
  const msra = loadCorpus('msra');
  assert.equal(msra.dev.stats.sentences, 2318);
  assert.equal(msra.test.stats.sentences, 4636);
  const heldTexts = new Set([...msra.dev.sentences, ...msra.test.sentences].map((s) => s.text));
  assert.ok(msra.train.sentences.every((s) => !heldTexts.has(s.text)));
  // 42,809 before short training sentences found inside a K-BERT dev/test sentence were dropped too.
  assert.equal(msra.train.stats.sentences, 42686);
});

test('withoutOverlap drops equal sentences, those sharing a 16-character window and short ones inside a held one', () => {
  const mk = (text: string) => ({ chars: [...text], text, labels: [...text].map(() => 'O'), repaired: [] });
  const held = [mk('abcdefghijklmnopqrstuvwxyz'), mk('short')];
  const pool = [mk('short'), mk('xxabcdefghijklmnopxx'), mk('abcdefghijklmnoXpq'), mk('other'), mk('klmnop'), mk('tshor')];
  assert.deepEqual(withoutOverlap(pool, held).map((s) => s.text), ['abcdefghijklmnoXpq', 'other', 'tshor']);
});

test('CCKS 2017 originals: 1,198 records, 29,866 annotations per category, end offsets inclusive', () => {
  const records = readCcks2017Zip(sharedData('ccks2017-original', 'data_origin.zip'));
  assert.equal(records.length, 1198);
  const counts: Record<string, number> = {};
  for (const r of records) for (const e of r.entities) counts[e.category] = (counts[e.category] ?? 0) + 1;
  assert.deepEqual(counts, { 身体部位: 10719, 检查和检验: 9546, 症状和体征: 7831, 治疗: 1048, 疾病和诊断: 722 });
  const first = records.find((r) => r.name.endsWith('一般项目/一般项目-1.txtoriginal.txt'))!;
  // Annotation "右髋部 21 23 身体部位": end inclusive in the file, exclusive here.
  assert.deepEqual(first.entities[0], { mention: '右髋部', start: 21, end: 24, category: '身体部位', type: 'BodyPart' });
  const s = ccksRecordToSentence(first);
  assert.deepEqual(s.labels.slice(21, 25), ['B-BodyPart', 'I-BodyPart', 'I-BodyPart', 'O']);
  assert.ok(!/\s$/.test(s.text));
});

test('subsetSentences is deterministic per seed and keeps file order', () => {
  const m = loadCorpus('medical').dev.sentences;
  const a = subsetSentences(m, 100, 7);
  const b = subsetSentences(m, 100, 7);
  const c = subsetSentences(m, 100, 8);
  assert.equal(a.length, 100);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  const idx = a.map((s) => m.indexOf(s));
  assert.deepEqual(idx, idx.slice().sort((x, y) => x - y));
});

test('deleteEntities removes the given fraction of one type (whole spans), deterministically', async () => {
  const { deleteEntities } = await import('../../../src/train/datasets.ts');
  const ds = parseKbertTsv(
    `${HEADER}左 腿 痛 头 部\tB-BodyPart I-BodyPart B-Symptom B-BodyPart I-BodyPart\n腰 背\tB-BodyPart B-BodyPart\n`,
    'd.tsv',
    { types: MEDICAL_TYPES },
  );
  const half = deleteEntities(ds.sentences, 'BodyPart', 0.5, 3);
  assert.equal(half.removed, 2);
  assert.equal(half.kept, 2);
  const after = half.sentences.flatMap((s) => s.labels);
  assert.equal(after.filter((t) => t === 'B-BodyPart').length, 2);
  assert.equal(after.filter((t) => t === 'B-Symptom').length, 1, 'other types untouched');
  // No orphan I- left behind: every I-BodyPart follows B-/I-BodyPart.
  for (const s of half.sentences) s.labels.forEach((t, i) => t === 'I-BodyPart' && assert.match(s.labels[i - 1], /-BodyPart$/));
  assert.deepEqual(deleteEntities(ds.sentences, 'BodyPart', 0.5, 3).sentences, half.sentences);
  assert.deepEqual(ds.sentences[0].labels, ['B-BodyPart', 'I-BodyPart', 'B-Symptom', 'B-BodyPart', 'I-BodyPart'], 'input not modified');
  assert.equal(deleteEntities(ds.sentences, 'BodyPart', 1, 3).kept, 0);
});
