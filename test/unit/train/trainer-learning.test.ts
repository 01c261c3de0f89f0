/**
 * The pieces that make the trainer's rounds learn the right thing: the durable feedback store with
 * its stratified holdout, the label check against the graph and the training set, and the gate's
 * per-type, per-surface and distance checks.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { SHIPPED_LEXICON_FILE } from '../../../src/config/trainer.ts';
import { FeedbackStore, FeedbackStoreError, STORE_FILE, lockHolder } from '../../../src/train/feedback-store.ts';
import type { FeedbackDocument } from '../../../src/train/feedback.ts';
import { LabelChecker } from '../../../src/train/label-check.ts';
import { prf } from '../../../src/train/metrics.ts';
import { decidePromotion } from '../../../src/train/promotion.ts';
import type { GateSettings } from '../../../src/train/promotion.ts';
import { sampleReplay } from '../../../src/train/sidecar.ts';

const TMP = mkdtempSync(path.join(os.tmpdir(), 'trainer-learning-'));
let n = 0;
after(() => rmSync(TMP, { recursive: true, force: true }));

function doc(id: string, text: string, entities: [string, string][], createdAt = 1): FeedbackDocument {
  return {
    documentId: id,
    text,
    createdAt,
    entities: entities.map(([t, type]) => ({ start: text.indexOf(t), end: text.indexOf(t) + t.length, text: t, type })),
  };
}

test('the store: latest correction wins, a re-delivery changes nothing, an older one is stale; it all survives a reopen', () => {
  const dir = path.join(TMP, `s${++n}`);
  const store = FeedbackStore.open(dir, { holdoutPercent: 0 });
  assert.equal(store.upsert(doc('a', '患者头痛。', [['头痛', 'Symptom']], 5), 100).outcome, 'added');
  assert.equal(store.upsert(doc('a', '患者头痛。', [['头痛', 'Symptom']], 5), 101).outcome, 'unchanged');
  assert.equal(store.upsert(doc('a', '患者头痛。', [], 4), 102).outcome, 'stale');
  assert.equal(store.upsert(doc('a', '患者头痛。', [['头痛', 'Disease']], 6), 103).outcome, 'replaced');
  store.save();
  const again = FeedbackStore.open(dir, { holdoutPercent: 0 });
  assert.deepEqual(again.training().map((d) => [d.documentId, d.entities[0].type, d.seq]), [['a', 'Disease', 2]]);
  assert.equal(again.counts().newAnySinceRound, 1);
  again.recordRound({ at: 1, outcome: 'refused', seq: again.seq }, ['a']);
  const third = FeedbackStore.open(dir, { holdoutPercent: 0 });
  assert.equal(third.counts().newAnySinceRound, 0);
  assert.equal(third.training()[0].rounds, 1);
  assert.equal(third.rounds()[0].outcome, 'refused');
});

test('the holdout: 20% of each corrected term, whatever the ids; a term with few documents keeps them all for training', () => {
  const store = FeedbackStore.open(path.join(TMP, `s${++n}`), { holdoutPercent: 20 });
  for (let i = 0; i < 10; i++) store.upsert(doc(`x${i}`, '头昏。', [['头昏', 'Symptom']]), i);
  for (let i = 0; i < 5; i++) store.upsert(doc(`y${i}`, '乏力。', [['乏力', 'Symptom']]), i);
  for (let i = 0; i < 2; i++) store.upsert(doc(`z${i}`, '纳差。', [['纳差', 'Symptom']]), i);
  const held = store.holdout().map((d) => d.documentId);
  assert.deepEqual(held, ['x2', 'x7', 'y2']);
});

test('the store refuses a second writer while the first is alive, and a corrupt file', () => {
  const dir = path.join(TMP, `s${++n}`);
  const store = FeedbackStore.open(dir, { holdoutPercent: 0 });
  store.lock();
  assert.equal(lockHolder(dir), process.pid);
  writeFileSync(path.join(dir, 'trainer.lock'), '1\n');
  // pid 1 is alive (init): another process holds it.
  assert.throws(() => store.lock(), FeedbackStoreError);
  writeFileSync(path.join(dir, 'trainer.lock'), '999999999\n');
  assert.equal(lockHolder(dir), null);
  writeFileSync(path.join(dir, STORE_FILE), '{"format": 1, "documents": [');
  assert.throws(() => FeedbackStore.open(dir, { holdoutPercent: 0 }), /cannot read the feedback store/);
});

test('the label check: contradictions of the graph, the training set and longer terms; agreement and unknown surfaces pass', () => {
  const checker = new LabelChecker(
    [
      ['右下腹', '类别', '部位'],
      ['四肢乏力', '类别', '症状'],
      ['全身乏力', '类别', '症状'],
      ['双下肢乏力', '类别', '症状'],
    ],
    [
      ['冠心病', 'Disease', 23],
      ['血压', 'Examine', 59],
      ['血压', 'BodyPart', 1],
      ['头昏', 'Symptom', 1],
    ],
  );
  const check = (s: string, t: string) => checker.check(doc('d', `${s}。`, [[s, t]]));
  assert.match(check('右下腹', 'Symptom')[0], /the knowledge graph types it BodyPart/);
  assert.match(check('冠心病', 'BodyPart')[0], /the training set labels it Disease 23/);
  assert.match(check('血压', 'BodyPart')[0], /Examine 59, BodyPart 1/);
  assert.match(check('乏力', 'BodyPart')[0], /longer terms ending with it are Symptom 3/);
  assert.deepEqual(check('冠心病', 'Disease'), []);
  assert.deepEqual(check('乏力', 'Symptom'), []);
  // One training mention is too little evidence; a surface nobody knows is not a contradiction.
  assert.deepEqual(check('头昏', 'BodyPart'), []);
  assert.deepEqual(check('纳差', 'BodyPart'), []);
});

test('the shipped lexicon knows the terms of the issue', () => {
  const checker = LabelChecker.fromFiles(null, SHIPPED_LEXICON_FILE);
  for (const s of ['冠心病', '糖尿病', '高血压', '血压', '头昏']) assert.equal(checker.check(doc('d', `${s}。`, [[s, 'BodyPart']])).length, 1, s);
});

const GATE: GateSettings = { goldTolerance: 0.005, holdoutMargin: 0, typeTolerance: 0.02, typeMinEntities: 20, surfaceMaxLoss: 0.34, surfaceMinMentions: 3, maxRelativeDistance: 0.05 };
const sets = (gold: [number, number], holdout: [number, number]) => ({
  gold: { champion: prf(gold[0], 1000, 1000), challenger: prf(gold[1], 1000, 1000), sentences: 200 },
  holdout: { champion: prf(holdout[0], 10, 10), challenger: prf(holdout[1], 10, 10), sentences: 10 },
});

test('the gate: gold within tolerance and a better holdout promote; each failed check is named with its figures', () => {
  const ok = decidePromotion({ ...sets([830, 827], [3, 8]), goldTypes: { Symptom: { champion: prf(90, 100, 100), challenger: prf(89, 100, 100) } }, goldSurfaces: [{ surface: '头痛', mentions: 6, champion: 6, challenger: 5 }], relativeDistance: 0.01 }, GATE);
  assert.equal(ok.promote, true, ok.reasons.join('\n'));
  assert.deepEqual(ok.failed, []);
  const bad = decidePromotion(
    {
      ...sets([830, 820], [8, 3]),
      goldTypes: { Symptom: { champion: prf(90, 100, 100), challenger: prf(80, 100, 100) }, Disease: { champion: prf(5, 10, 10), challenger: prf(0, 0, 10) } },
      goldSurfaces: [{ surface: '头痛', mentions: 6, champion: 6, challenger: 2 }],
      relativeDistance: 0.2,
    },
    GATE,
  );
  assert.equal(bad.promote, false);
  assert.deepEqual(bad.failed, ['gold', 'holdout', 'gold-type Symptom', 'gold-surface', 'distance']);
  const text = bad.reasons.join('\n');
  assert.match(text, /gold: challenger F1 82\.00 < champion 83\.00 - 0\.50 \(200 sentences\)/);
  assert.match(text, /gold-type Symptom: challenger F1 80\.00 < champion 90\.00 - 2\.00 \(100 entities\)/);
  assert.match(text, /gold-surface: 1 of 1 surfaces .* \(worst: 6 -> 2 of 6\)/);
  assert.match(text, /distance: .* = 2\.000e-1 > 5\.000e-2/);
  // Too few entities of a type: not checked one by one. Surfaces are never named (they are text).
  assert.ok(!text.includes('Disease'));
  assert.ok(!text.includes('头痛'));
});

test('replay samples are seeded, drawn without repeats and kept in file order', () => {
  const pool = Array.from({ length: 50 }, (_, i) => ({ chars: [String(i)], text: String(i), labels: ['O'], repaired: [] }));
  const a = sampleReplay(pool, 10, 3).map((s) => Number(s.text));
  assert.deepEqual(a, sampleReplay(pool, 10, 3).map((s) => Number(s.text)));
  assert.notDeepEqual(a, sampleReplay(pool, 10, 4).map((s) => Number(s.text)));
  assert.equal(new Set(a).size, 10);
  assert.deepEqual(a, [...a].sort((x, y) => x - y));
  assert.equal(sampleReplay(pool, 80, 3).length, 50);
});

test('rmbert train feedback: list, export, release and prune the store; prune refuses while a trainer holds it', async () => {
  const { run } = await import('../../../src/cli/commands/train-feedback.ts');
  const dir = path.join(TMP, `s${++n}`);
  const store = FeedbackStore.open(dir, { holdoutPercent: 0 });
  store.upsert(doc('a', '患者头痛。', [['头痛', 'Symptom']]), Date.now());
  store.upsert(doc('b', '冠心病。', [['冠心病', 'BodyPart']]), Date.now(), () => ['"冠心病" labelled BodyPart; the training set labels it Disease 23']);
  store.save();
  const out: string[] = [];
  const log = console.log;
  const err = console.error;
  console.log = (s: string) => out.push(s);
  console.error = () => undefined;
  try {
    assert.equal(await run(['list', '--state-dir', dir]), 0);
    assert.equal(out.length, 2);
    assert.match(out[1], /^b\ttrain\tquarantined\t.*problems="冠心病" labelled BodyPart/);
    out.length = 0;
    assert.equal(await run(['list', '--quarantined', '--json', '--state-dir', dir]), 0);
    assert.deepEqual(out.map((l) => JSON.parse(l).documentId), ['b']);
    assert.equal(await run(['export', '--out', path.join(dir, 'x.jsonl'), '--state-dir', dir]), 0);
    assert.equal(await run(['prune', '--state-dir', dir]), 2);
    // A live trainer holds the store: prune and release wait for it to stop.
    writeFileSync(path.join(dir, 'trainer.lock'), '1\n');
    assert.equal(await run(['release', '--id', 'b', '--state-dir', dir]), 2);
    writeFileSync(path.join(dir, 'trainer.lock'), '999999999\n');
    out.length = 0;
    assert.equal(await run(['release', '--id', 'b', '--state-dir', dir]), 0);
    assert.equal(await run(['prune', '--id', 'a', '--state-dir', dir]), 0);
  } finally {
    console.log = log;
    console.error = err;
  }
  const after_ = FeedbackStore.open(dir, { holdoutPercent: 0 });
  assert.deepEqual(after_.all().map((d) => [d.documentId, d.status]), [['b', 'released']]);
  assert.deepEqual(after_.training().map((d) => d.documentId), ['b']);
});

test('the shipped graph and lexicon quarantine none of the 200 hand-labelled gold sentences taken as feedback', async () => {
  const { readKbertTsv } = await import('../../../src/train/datasets.ts');
  const { spansFromBio } = await import('../../../src/train/metrics.ts');
  const { SHIPPED_GOLD_FILE } = await import('../../../src/config/trainer.ts');
  const checker = LabelChecker.fromFiles(path.resolve('data/kg/Medical.spo'), SHIPPED_LEXICON_FILE);
  const flagged = readKbertTsv(SHIPPED_GOLD_FILE).sentences.filter(
    (s) => checker.check({ documentId: 'g', text: s.text, createdAt: 0, entities: spansFromBio(s.labels).map((e) => ({ start: e.start, end: e.end, text: s.chars.slice(e.start, e.end).join(''), type: e.type })) }).length > 0,
  );
  assert.equal(flagged.length, 0);
});
