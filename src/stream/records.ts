/** Conversions between Avro records and the pipeline's plain types. */
import { createHash } from 'node:crypto';
import type { Document } from '../domain/index.ts';
import type { Annotation } from '../pipeline/processor.ts';
import type { DeadLetterRecord, EmrDocumentRecord, EntityAnnotationsRecord } from './codecs.ts';

export function toDocument(r: EmrDocumentRecord): Document {
  return {
    id: r.id,
    sourceSystem: r.sourceSystem,
    patientRef: r.patientRef,
    text: r.text,
    language: r.language,
    createdAt: r.createdAt,
    section: r.section ?? null,
  };
}

export function toEmrDocumentRecord(d: Document): EmrDocumentRecord {
  return {
    id: d.id,
    sourceSystem: d.sourceSystem,
    patientRef: d.patientRef,
    text: d.text,
    language: d.language,
    createdAt: d.createdAt,
    section: d.section ?? null,
  };
}

export function toAnnotationsRecord(a: Annotation, annotatedAt: number): EntityAnnotationsRecord {
  return {
    documentId: a.documentId,
    modelVersion: a.modelVersion,
    kgVersion: a.kgVersion,
    engine: a.engine,
    entities: a.entities.map((e) => ({
      start: e.start,
      end: e.end,
      text: e.text,
      type: e.type,
      score: e.score,
      linked: e.linked.map((l) => ({ relation: l.relation, object: l.object })),
      assertion: e.assertion === undefined ? null : { ...e.assertion, triggers: e.assertion.triggers.map((t) => ({ ...t })) },
    })),
    kgDegraded: a.kgDegraded,
    truncated: a.truncated,
    windowed: a.windowed,
    linkedDropped: false,
    part: 0,
    parts: 1,
    timingsMs: { ...a.timingsMs },
    documentCreatedAt: a.documentCreatedAt,
    annotatedAt,
  };
}

export interface SourcePosition {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
}

/** A dead letter keeping the whole original; src/stream/fit.ts cuts it to a prefix when it would not fit the topic's limit. */
export function deadLetter(source: SourcePosition, errorClass: string, message: string, stage: string, failedAt: number): DeadLetterRecord {
  const original = source.value ?? Buffer.alloc(0);
  return {
    original,
    originalTruncated: false,
    originalLength: original.length,
    originalSha256: createHash('sha256').update(original).digest('hex'),
    originalKey: source.key,
    sourceTopic: source.topic,
    sourcePartition: source.partition,
    sourceOffset: Number(source.offset),
    errorClass,
    message: message.length > 2000 ? `${message.slice(0, 2000)}...` : message,
    stage,
    failedAt,
  };
}
