import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import type { EntityAssertion } from '../../../src/domain/index.ts';
import { SCHEMA_DIR, codecs, createCodec, readSchemaFile } from '../../../src/stream/codecs.ts';
import type { EntityAnnotationsRecord } from '../../../src/stream/codecs.ts';
import { toAnnotationsRecord } from '../../../src/stream/records.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';

const V1 = path.join(REPO_ROOT, 'test/fixtures/schemas/v1/EntityAnnotations.avsc');
const V2 = path.join(SCHEMA_DIR, 'history/EntityAnnotations.2.avsc');
const CURRENT = path.join(SCHEMA_DIR, 'EntityAnnotations.avsc');

const denied: EntityAssertion = {
  polarity: 'absent',
  certainty: 'certain',
  temporality: 'historical',
  experiencer: 'patient',
  triggers: [
    { start: 0, end: 2, text: '否认', property: 'negation' },
    { start: 5, end: 7, text: '病史', property: 'history' },
  ],
};

const record: EntityAnnotationsRecord = {
  documentId: 'doc-1',
  modelVersion: 'rmbert-medical-1.0.0+0123456789ab',
  kgVersion: 'abc',
  engine: 'onnxruntime-cpu',
  entities: [{ start: 2, end: 5, text: '高血压', type: 'Disease', score: 0.97, linked: [{ relation: '类别', object: '疾病' }] }],
  kgDegraded: false,
  truncated: false,
  windowed: false,
  linkedDropped: false,
  part: 0,
  parts: 1,
  timingsMs: { infer: 1.5 },
  documentCreatedAt: 1_700_000_000_123,
  annotatedAt: 1_700_000_000_456,
};

test('records written before the assertion field (v1, v2) decode with assertion null, read as present/certain/current/patient', () => {
  const { linkedDropped: _l, part: _p, parts: _n, ...v1Record } = record;
  const v1Writer = createCodec<typeof v1Record>(readSchemaFile(V1));
  const v2Writer = createCodec<EntityAnnotationsRecord>(readSchemaFile(V2));
  for (const bytes of [v1Writer.encode(v1Record), v2Writer.encode(record)]) {
    const read = codecs().entityAnnotations.decode(bytes);
    assert.equal(read.entities[0].text, '高血压');
    assert.equal(read.entities[0].assertion, null);
  }
});

test('an assertion round-trips through the current codec, trigger spans included', () => {
  const c = codecs().entityAnnotations;
  const back = c.decode(c.encode({ ...record, entities: [{ ...record.entities[0], assertion: denied }] }));
  assert.deepEqual(JSON.parse(JSON.stringify(back.entities[0].assertion)), denied);
  // A producer that does not set the field writes the default.
  assert.equal(c.decode(c.encode(record)).entities[0].assertion, null);
});

test('old readers (v1, v2 schemas) read records that carry an assertion, ignoring it', () => {
  const c = codecs().entityAnnotations;
  const bytes = c.encode({ ...record, entities: [{ ...record.entities[0], assertion: denied }] });
  for (const oldSchema of [V1, V2]) {
    const oldReader = createCodec<Record<string, any>>(readSchemaFile(oldSchema), [readSchemaFile(CURRENT)]);
    const read = oldReader.decode(bytes);
    assert.equal(read.documentId, 'doc-1');
    assert.equal(read.entities[0].text, '高血压');
    assert.ok(!('assertion' in read.entities[0]), oldSchema);
  }
});

test('toAnnotationsRecord carries the domain assertion and writes null when none was assessed', () => {
  const annotation = {
    documentId: 'doc-1',
    modelVersion: 'm',
    kgVersion: 'k',
    engine: 'e',
    entities: [
      { start: 2, end: 5, text: '高血压', type: 'Disease', score: 0.9, linked: [], assertion: denied },
      { start: 8, end: 10, text: '咳嗽', type: 'Symptom', score: 0.9, linked: [] },
    ],
    kgDegraded: false,
    truncated: false,
    windowed: false,
    timingsMs: {},
    documentCreatedAt: 1,
  };
  const out = toAnnotationsRecord(annotation, 2);
  assert.deepEqual(out.entities[0].assertion, denied);
  assert.equal(out.entities[1].assertion, null);
  const back = codecs().entityAnnotations.decode(codecs().entityAnnotations.encode(out));
  assert.equal(back.entities[0].assertion?.polarity, 'absent');
});
