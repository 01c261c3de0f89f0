import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import avro from 'avsc';
import { SchemaError } from '../../../src/errors/index.ts';
import {
  InvalidUtf8Error,
  SCHEMA_DIR,
  canonicalForm,
  codecs,
  createCodec,
  rabinFingerprint,
  readSchemaFile,
  writerFingerprint,
  type DeadLetterRecord,
  type EmrDocumentRecord,
  type EntityAnnotationsRecord,
} from '../../../src/stream/codecs.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';

const FIXTURES = path.join(REPO_ROOT, 'test/fixtures/schemas');
const compile = (file: string) => avro.Type.forSchema(readSchemaFile(file), { wrapUnions: false });

const emr: EmrDocumentRecord = {
  id: 'doc-1',
  sourceSystem: 'his-a',
  patientRef: 'P-000123',
  text: '患者咳嗽伴发热5天。',
  language: 'zh',
  createdAt: 1_700_000_000_123,
  section: '病史特点',
};

const annotations: EntityAnnotationsRecord = {
  documentId: 'doc-1',
  modelVersion: 'rmbert-medical-1.0.0+0123456789ab',
  kgVersion: 'abc',
  engine: 'onnxruntime-cpu',
  entities: [{ start: 2, end: 4, text: '咳嗽', type: 'Symptom', score: 0.97, linked: [{ relation: '类别', object: '症状' }] }],
  kgDegraded: false,
  truncated: false,
  windowed: false,
  linkedDropped: false,
  part: 0,
  parts: 1,
  timingsMs: { infer: 1.5, kg: 0.2 },
  documentCreatedAt: 1_700_000_000_123,
  annotatedAt: 1_700_000_000_456,
};

test('CRC-64-AVRO fingerprints match the Avro specification (e.g. "int" -> 0x7275d51a3f395c8f)', () => {
  assert.equal(rabinFingerprint('"int"').readBigUInt64LE().toString(16), '7275d51a3f395c8f');
  assert.equal(rabinFingerprint('"string"').readBigUInt64LE().toString(16), '8f014872634503c7');
});

test('every record type round-trips through its codec with a single-object header', () => {
  const c = codecs();
  const buf = c.emrDocument.encode(emr);
  assert.deepEqual(buf.subarray(0, 2), Buffer.from([0xc3, 0x01]));
  assert.equal(writerFingerprint(buf), c.emrDocument.fingerprintHex);
  assert.deepEqual({ ...c.emrDocument.decode(buf) }, emr);
  const back = c.entityAnnotations.decode(c.entityAnnotations.encode(annotations));
  assert.equal(back.entities[0].text, '咳嗽');
  assert.deepEqual(back.timingsMs, { infer: 1.5, kg: 0.2 });
  const fb = { documentId: 'd', text: 't', entities: [{ start: 0, end: 1, text: 't', type: 'X' }], annotator: 'a1', modelVersionSeen: null, createdAt: 1 };
  assert.deepEqual({ ...c.feedback.decode(c.feedback.encode(fb)) }.entities.length, 1);
  const mu = { version: 'm-2', artifactLocation: '/models/m-2', sha256: 'f'.repeat(64), metrics: { f1: 0.91 }, createdAt: 2 };
  assert.deepEqual(c.modelUpdate.decode(c.modelUpdate.encode(mu)).metrics, { f1: 0.91 });
  const dl = {
    original: Buffer.from([1, 2, 3]),
    originalKey: null,
    sourceTopic: 'in',
    sourcePartition: 0,
    sourceOffset: 42,
    errorClass: 'SchemaError',
    message: 'm',
    stage: 'decode',
    originalTruncated: false,
    originalLength: 3,
    originalSha256: 'a'.repeat(64),
    failedAt: 3,
  };
  assert.deepEqual(c.deadLetter.decode(c.deadLetter.encode(dl)).original, Buffer.from([1, 2, 3]));
  // Compiled once: the same objects every time.
  assert.equal(codecs(), c);
});

test('undecodable, truncated and wrong-schema records are SchemaErrors that never quote the value', () => {
  const c = codecs();
  const good = c.emrDocument.encode(emr);
  assert.throws(() => c.emrDocument.decode(Buffer.from('{"id":"x"}')), (e: unknown) => e instanceof SchemaError && /header/.test((e as Error).message));
  assert.throws(() => c.emrDocument.decode(good.subarray(0, good.length - 5)), (e: unknown) => e instanceof SchemaError && /undecodable/.test((e as Error).message));
  assert.throws(() => c.emrDocument.decode(Buffer.concat([good, Buffer.from([0])])), SchemaError);
  const feedback = c.feedback.encode({ documentId: 'd', text: '患者', entities: [], annotator: 'a', modelVersionSeen: null, createdAt: 1 });
  assert.throws(() => c.emrDocument.decode(feedback), (e: unknown) => e instanceof SchemaError && /unknown schema/.test((e as Error).message));
  assert.throws(
    () => c.emrDocument.encode({ ...emr, createdAt: 'yesterday' } as never),
    (e: unknown) => e instanceof SchemaError && /createdAt/.test((e as Error).message) && !(e as Error).message.includes('患者'),
  );
});

test('the current schemas read records written with every v1 schema (avsc resolvers)', () => {
  const v1Files = readdirSync(path.join(FIXTURES, 'v1')).filter((f) => f.endsWith('.avsc'));
  assert.equal(v1Files.length, 5);
  for (const file of v1Files) {
    const writer = compile(path.join(FIXTURES, 'v1', file));
    const reader = compile(path.join(SCHEMA_DIR, file));
    const resolver = reader.createResolver(writer);
    const sample = writer.random();
    const read = reader.fromBuffer(writer.toBuffer(sample), resolver);
    assert.ok(reader.isValid(read), file);
  }
});

test('a v2 with an optional field reads v1 records (default filled) and v1 readers read v2 records', () => {
  const v1 = compile(path.join(FIXTURES, 'v1/EmrDocument.avsc'));
  const v2 = compile(path.join(FIXTURES, 'v2/EmrDocument.avsc'));
  const fromV1 = v2.fromBuffer(v1.toBuffer(emr), v2.createResolver(v1)) as EmrDocumentRecord & { department: string | null };
  assert.equal(fromV1.department, null);
  assert.equal(fromV1.text, emr.text);
  const fromV2 = v1.fromBuffer(v2.toBuffer({ ...emr, department: '呼吸科' }), v1.createResolver(v2)) as EmrDocumentRecord;
  assert.equal(fromV2.id, 'doc-1');
  assert.ok(!('department' in fromV2));

  const a1 = compile(path.join(FIXTURES, 'v1/EntityAnnotations.avsc'));
  const a2 = compile(path.join(FIXTURES, 'v2/EntityAnnotations.avsc'));
  const upgraded = a2.fromBuffer(a1.toBuffer(annotations), a2.createResolver(a1)) as EntityAnnotationsRecord & { pipelineVersion: string };
  assert.equal(upgraded.pipelineVersion, '');
  assert.equal(upgraded.entities[0].linked[0].object, '症状');
});

test('a codec on the v2 schema decodes single-object records written with v1, once v1 is registered', () => {
  const v1Schema = readSchemaFile(path.join(FIXTURES, 'v1/EmrDocument.avsc'));
  const v2Schema = readSchemaFile(path.join(FIXTURES, 'v2/EmrDocument.avsc'));
  const v1Codec = createCodec<EmrDocumentRecord>(v1Schema);
  const oldRecord = v1Codec.encode(emr);
  assert.throws(() => createCodec(v2Schema).decode(oldRecord), /unknown schema/);
  const v2Codec = createCodec<EmrDocumentRecord & { department: string | null }>(v2Schema, [v1Schema]);
  const read = v2Codec.decode(oldRecord);
  assert.equal(read.department, null);
  assert.equal(read.patientRef, 'P-000123');
  assert.notEqual(v1Codec.fingerprintHex, v2Codec.fingerprintHex);
  assert.equal(v1Codec.fingerprintHex, rabinFingerprint(canonicalForm(compile(path.join(FIXTURES, 'v1/EmrDocument.avsc')))).toString('hex'));
});

test('a field added without a default is an incompatible change and is refused', () => {
  const v1Schema = readSchemaFile(path.join(FIXTURES, 'v1/EmrDocument.avsc'));
  const bad = readSchemaFile(path.join(FIXTURES, 'v2/EmrDocument.incompatible.avsc'));
  assert.throws(() => createCodec(bad, [v1Schema]), (e: unknown) => e instanceof SchemaError && /cannot read/.test((e as Error).message));
});

test('EntityAnnotations and DeadLetter v2 (size-limit fields) read v1 records with defaults, and a v1 reader reads v2 records', () => {
  const c = codecs();
  // Records already on the topics, written by the v1 codec (schemas/history registers v1 as a writer schema).
  const v1Annotations = createCodec<Omit<EntityAnnotationsRecord, 'linkedDropped' | 'part' | 'parts'>>(readSchemaFile(path.join(FIXTURES, 'v1/EntityAnnotations.avsc')));
  const { linkedDropped: _l, part: _p, parts: _n, ...oldAnnotations } = annotations;
  const upgraded = c.entityAnnotations.decode(v1Annotations.encode(oldAnnotations));
  assert.equal(upgraded.linkedDropped, false);
  assert.equal(upgraded.part, 0);
  assert.equal(upgraded.parts, 1);
  assert.equal(upgraded.entities[0].linked[0].object, '症状');
  assert.notEqual(v1Annotations.fingerprintHex, c.entityAnnotations.fingerprintHex);

  const v1Dead = createCodec<Omit<DeadLetterRecord, 'originalTruncated' | 'originalLength' | 'originalSha256'>>(readSchemaFile(path.join(FIXTURES, 'v1/DeadLetter.avsc')));
  const oldDead = { original: Buffer.from('x'), originalKey: null, sourceTopic: 'in', sourcePartition: 1, sourceOffset: 7, errorClass: 'SchemaError', message: 'm', stage: 'decode', failedAt: 5 };
  const readDead = c.deadLetter.decode(v1Dead.encode(oldDead));
  assert.equal(readDead.originalTruncated, false);
  assert.equal(readDead.originalLength, null);
  assert.equal(readDead.originalSha256, null);
  assert.equal(readDead.sourceOffset, 7);

  // A consumer still on v1 that learns the v2 writer schema reads paged records (it ignores the new fields).
  const v1Reader = createCodec<Record<string, unknown>>(readSchemaFile(path.join(FIXTURES, 'v1/EntityAnnotations.avsc')), [readSchemaFile(path.join(SCHEMA_DIR, 'EntityAnnotations.avsc'))]);
  const fromV2 = v1Reader.decode(c.entityAnnotations.encode({ ...annotations, linkedDropped: true, part: 1, parts: 3 }));
  assert.equal(fromV2.documentId, 'doc-1');
  assert.ok(!('part' in fromV2));
});

/** The EmrDocument record with `field`'s placeholder bytes overwritten (Avro strings are length-prefixed bytes, so the record stays well formed). */
function withBytes(field: 'id' | 'text' | 'section', bytes: number[]): Buffer {
  const placeholder = 'Q'.repeat(bytes.length);
  const record = codecs().emrDocument.encode({ ...emr, [field]: placeholder });
  const at = record.indexOf(Buffer.from(placeholder));
  Buffer.from(bytes).copy(record, at);
  return record;
}

test('EmrDocument: a validly encoded U+FFFD is text; invalid UTF-8 in any string field is an InvalidUtf8Error naming the field', () => {
  const c = codecs();
  const withReplacementChar = c.emrDocument.decode(c.emrDocument.encode({ ...emr, id: 'doc-\ufffd', text: '头痛\ufffd伴发热' }));
  assert.equal(withReplacementChar.text, '头痛\ufffd伴发热');
  assert.equal(withReplacementChar.id, 'doc-\ufffd');
  // The same three bytes EF BF BD written directly decode too.
  assert.equal(c.emrDocument.decode(withBytes('text', [0xef, 0xbf, 0xbd])).text, '\ufffd');

  for (const field of ['text', 'id', 'section'] as const) {
    for (const bad of [[0xff], [0xe5, 0xa4], [0xc0, 0xaf], [0xed, 0xa0, 0x80]]) {
      assert.throws(
        () => c.emrDocument.decode(withBytes(field, bad)),
        (e: unknown) => e instanceof InvalidUtf8Error && e instanceof SchemaError && e.field === field && !e.retriable,
        `${field} ${bad.map((b) => b.toString(16)).join(' ')}`,
      );
    }
  }
  // A lenient codec (the default for other records) still reads them, as U+FFFD.
  const lenient = createCodec<EmrDocumentRecord>(readSchemaFile(path.join(SCHEMA_DIR, 'EmrDocument.avsc')));
  assert.equal(lenient.decode(withBytes('text', [0xff])).text, '\ufffd');
});
