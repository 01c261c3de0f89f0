/**
 * The assertion step of the per-batch flow: the real ConText annotator with the shipped lexicon behind
 * the pipeline's AssertionAssessor port, on entities a dictionary model finds.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AssertionAnnotator } from '../../../src/assertion/index.ts';
import type { Entity } from '../../../src/domain/index.ts';
import { createJsonLogger, SILENT_LOGGER } from '../../../src/pipeline/logging.ts';
import { NO_STAGE_METRICS, type AssertionAssessor, type Logger } from '../../../src/pipeline/ports.ts';
import { BatchProcessor, type Outcome } from '../../../src/pipeline/processor.ts';
import { toAnnotationsRecord } from '../../../src/stream/records.ts';
import { FakeModel, doc } from './fakes.ts';

const TERMS = { 高血压: 'Disease', 糖尿病: 'Disease', 咳嗽: 'Symptom', 发热: 'Symptom' };
const annotator = AssertionAnnotator.withDefaultLexicon();

function processor(assertions: AssertionAssessor | null, logger: Logger = SILENT_LOGGER): BatchProcessor {
  return new BatchProcessor({ knowledge: null, limits: { maxTextChars: 1000 }, metrics: NO_STAGE_METRICS, logger, assertions });
}

function entities(o: Outcome): Entity[] {
  assert.ok(o.ok, 'annotated');
  return o.annotation.entities;
}

/** [text, polarity, certainty, temporality, experiencer, trigger texts with document offsets]. */
function summary(e: Entity) {
  const a = e.assertion;
  assert.ok(a, `${e.text} assessed`);
  return [e.text, a.polarity, a.certainty, a.temporality, a.experiencer, a.triggers.map((t) => `${t.text}@${t.start}-${t.end}`)];
}

test('否认高血压、糖尿病病史 gives absent for both; 既往高血压病史 historical; trigger offsets are into the document', async () => {
  const docs = [doc('d1', '否认高血压、糖尿病病史。'), doc('d2', '患者咳嗽三天。既往高血压病史，无发热。')];
  const result = await processor(annotator).process(docs, new FakeModel({ terms: TERMS }));
  assert.deepEqual(entities(result.outcomes[0]).map(summary), [
    ['高血压', 'absent', 'certain', 'historical', 'patient', ['否认@0-2', '病史@9-11']],
    ['糖尿病', 'absent', 'certain', 'historical', 'patient', ['否认@0-2', '病史@9-11']],
  ]);
  // Second sentence starts at 7: 既往 at 7-9, so the offsets were moved from the sentence into the document.
  const d2 = entities(result.outcomes[1]);
  assert.deepEqual(d2.map(summary), [
    ['咳嗽', 'present', 'certain', 'current', 'patient', []],
    ['高血压', 'present', 'certain', 'historical', 'patient', ['既往@7-9']],
    ['发热', 'absent', 'certain', 'historical', 'patient', ['无@15-16', '既往@7-9']],
  ]);
  for (const e of d2) for (const t of e.assertion!.triggers) assert.equal(docs[1].text.slice(t.start, t.end), t.text);
});

test('a scope ends with its sentence: a negation in one sentence does not reach the next', async () => {
  const result = await processor(annotator).process([doc('d', '无咳嗽。发热两天。')], new FakeModel({ terms: TERMS }));
  assert.deepEqual(entities(result.outcomes[0]).map((e) => [e.text, e.assertion?.polarity]), [
    ['咳嗽', 'absent'],
    ['发热', 'present'],
  ]);
});

test('assertions off: entities are published with a null assertion (not assessed)', async () => {
  const result = await processor(null).process([doc('d', '否认高血压病史。')], new FakeModel({ terms: TERMS }));
  const [e] = entities(result.outcomes[0]);
  assert.equal(e.text, '高血压');
  assert.equal(e.assertion, undefined);
  assert.ok(result.outcomes[0].ok);
  assert.equal(toAnnotationsRecord(result.outcomes[0].annotation, 1).entities[0].assertion, null);
  const on = await processor(annotator).process([doc('d', '否认高血压病史。')], new FakeModel({ terms: TERMS }));
  assert.ok(on.outcomes[0].ok);
  assert.equal(toAnnotationsRecord(on.outcomes[0].annotation, 1).entities[0].assertion?.polarity, 'absent');
});

test('a failing assertion step leaves the entities unassessed and the document published, with a warning', async () => {
  const lines: string[] = [];
  const logger = createJsonLogger({ level: 'warn', sink: (l) => lines.push(l) });
  const throwing: AssertionAssessor = {
    annotate: () => {
      throw new RangeError('boom');
    },
  };
  const wrongCount: AssertionAssessor = { annotate: (text, list) => annotator.annotate(text, list).slice(1) };
  for (const assessor of [throwing, wrongCount]) {
    lines.length = 0;
    const result = await processor(assessor, logger).process([doc('secret-doc', '否认高血压、糖尿病病史。')], new FakeModel({ terms: TERMS }));
    const list = entities(result.outcomes[0]);
    assert.equal(list.length, 2);
    assert.ok(list.every((e) => e.assertion === undefined), 'all or nothing');
    assert.equal(lines.length, 1);
    const event = JSON.parse(lines[0]);
    assert.match(event.msg, /assertion failed/);
    assert.ok(!lines[0].includes('高血压'), 'no clinical text in the log');
  }
});
