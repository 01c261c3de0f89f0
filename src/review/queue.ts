/**
 * The review queue: joins each document (emr.documents) with the stage's entities for it
 * (emr.entities, possibly paged over several records: part 0..parts-1) within a bounded window, keeps
 * the documents waiting for review (bounded; least confident first) and what became of the reviewed
 * ones, on local disk so that a restart loses nothing.
 *
 * The join key is the document id plus its createdAt (EntityAnnotations.documentCreatedAt), so that a
 * document re-sent with another text under the same id never meets the entities of the other text.
 * A reviewed document keeps no text on disk: only its review id, the submission's hash and when.
 *
 * Plain data in, plain data out: the Kafka side (src/stream/review-io.ts) decodes the records and the
 * composition root (src/cli/commands/review.ts) wires the two.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync, openSync, fsyncSync, closeSync, existsSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { SchemaError } from '../errors/index.ts';

export interface ReviewAssertion {
  polarity: 'present' | 'absent';
  certainty: 'certain' | 'possible';
  temporality: 'current' | 'historical';
  experiencer: 'patient' | 'other';
  triggers: { start: number; end: number; text: string; property: string }[];
}

export interface ReviewEntity {
  start: number;
  end: number;
  text: string;
  type: string;
  score: number;
  linked: { relation: string; object: string }[];
  /** Null when the stage did not assess it (or wrote a schema without the field). */
  assertion: ReviewAssertion | null;
}

export interface IncomingDocument {
  id: string;
  sourceSystem: string;
  patientRef: string;
  text: string;
  createdAt: number;
  section: string | null;
}

export interface IncomingAnnotations {
  documentId: string;
  documentCreatedAt: number;
  modelVersion: string;
  kgVersion: string;
  annotatedAt: number;
  part: number;
  parts: number;
  entities: ReviewEntity[];
  kgDegraded: boolean;
}

export interface Submission {
  reviewer: string;
  /** sha256 of the canonical submitted entity list: a repeat with the same list is the same review. */
  entitiesSha256: string;
  createdAt: number;
  entityCount: number;
  /** 'sending' until the broker acknowledged the Feedback record. */
  state: 'sending' | 'sent';
  /** The exact Feedback record (encoded, base64) while sending, so that a retry resends the same bytes. */
  recordBase64: string | null;
}

export interface WaitingItem {
  reviewId: string;
  documentId: string;
  sourceSystem: string;
  patientRef: string;
  section: string | null;
  text: string;
  documentCreatedAt: number;
  modelVersion: string;
  kgVersion: string;
  kgDegraded: boolean;
  annotatedAt: number;
  entities: ReviewEntity[];
  /** Lowest entity score (1 when the model found nothing): the queue's order, least confident first. */
  confidence: number;
  queuedAt: number;
  submission: Submission | null;
}

export interface ReviewedItem {
  reviewId: string;
  documentId: string;
  modelVersion: string;
  types: string[];
  submission: Submission;
}

export interface QueueCounts {
  waiting: number;
  reviewed: number;
  /** Left the full queue to make room for less confident documents. */
  dropped: number;
  /** Halves waiting for the other half (documents without entities yet, entity records without their document). */
  pendingDocuments: number;
  pendingAnnotations: number;
  /** Fell out of the join window before their other half came. */
  unmatched: number;
}

export interface QueueFilter {
  type?: string;
  modelVersion?: string;
}

export interface QueueLimits {
  maxQueue: number;
  joinWindow: number;
  maxReviewed: number;
}

interface PendingParts {
  key: string;
  documentId: string;
  documentCreatedAt: number;
  records: IncomingAnnotations[];
  firstSeen: number;
}

interface StateFile {
  version: 1;
  waiting: WaitingItem[];
  reviewed: ReviewedItem[];
  pendingDocuments: IncomingDocument[];
  pendingAnnotations: PendingParts[];
  dropped: number;
  unmatched: number;
}

const STATE_FILE = 'review-queue.json';

/** The review id of one annotation of one document: the same records always give the same id. */
export function reviewIdOf(documentId: string, documentCreatedAt: number, modelVersion: string, annotatedAt: number): string {
  return createHash('sha256').update(`${documentId}\u0000${documentCreatedAt}\u0000${modelVersion}\u0000${annotatedAt}`).digest('hex').slice(0, 32);
}

function docKey(documentId: string, createdAt: number): string {
  return `${documentId}\u0000${createdAt}`;
}

function confidenceOf(entities: readonly ReviewEntity[]): number {
  return entities.length === 0 ? 1 : Math.min(...entities.map((e) => e.score));
}

export class ReviewQueue {
  private readonly waiting = new Map<string, WaitingItem>();
  /** Insertion order = age, for the bound. */
  private readonly reviewed = new Map<string, ReviewedItem>();
  private readonly pendingDocuments = new Map<string, IncomingDocument>();
  private readonly pendingAnnotations = new Map<string, PendingParts>();
  private dropped = 0;
  private unmatched = 0;
  private readonly file: string;

  constructor(
    private readonly dir: string,
    private readonly limits: QueueLimits,
    private readonly now: () => number = Date.now,
  ) {
    this.file = path.join(dir, STATE_FILE);
  }

  /** Reads the queue left by an earlier run, if any. */
  load(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (!existsSync(this.file)) return;
    let state: StateFile;
    try {
      state = JSON.parse(readFileSync(this.file, 'utf8')) as StateFile;
    } catch (error) {
      throw new SchemaError(`review queue ${this.file} is not readable JSON: ${(error as Error).message}`, { cause: error });
    }
    if (state.version !== 1) throw new SchemaError(`review queue ${this.file} has version ${String(state.version)}; this rmbert reads version 1`);
    for (const w of state.waiting) this.waiting.set(w.reviewId, w);
    for (const r of state.reviewed) this.reviewed.set(r.reviewId, r);
    for (const d of state.pendingDocuments) this.pendingDocuments.set(docKey(d.id, d.createdAt), d);
    for (const p of state.pendingAnnotations) this.pendingAnnotations.set(p.key, p);
    this.dropped = state.dropped;
    this.unmatched = state.unmatched;
  }

  /** Writes the queue atomically (temporary file, fsync, rename), readable by its owner only. */
  save(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const state: StateFile = {
      version: 1,
      waiting: [...this.waiting.values()],
      reviewed: [...this.reviewed.values()],
      pendingDocuments: [...this.pendingDocuments.values()],
      pendingAnnotations: [...this.pendingAnnotations.values()],
      dropped: this.dropped,
      unmatched: this.unmatched,
    };
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify(state), { mode: 0o600 });
    const fd = openSync(tmp, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file);
    chmodSync(this.file, 0o600);
  }

  addDocument(doc: IncomingDocument): void {
    const key = docKey(doc.id, doc.createdAt);
    const parts = this.pendingAnnotations.get(key);
    if (parts && this.complete(parts)) {
      this.pendingAnnotations.delete(key);
      this.enqueue(doc, parts.records);
      return;
    }
    this.pendingDocuments.delete(key);
    this.pendingDocuments.set(key, doc);
    this.bound(this.pendingDocuments);
  }

  addAnnotations(record: IncomingAnnotations): void {
    const key = docKey(record.documentId, record.documentCreatedAt);
    // One annotation of one document = the records with the same annotatedAt and model version.
    let parts = this.pendingAnnotations.get(key);
    if (parts && (parts.records[0].annotatedAt !== record.annotatedAt || parts.records[0].modelVersion !== record.modelVersion)) {
      // A newer annotation of the same document replaces an incomplete older one.
      if (record.annotatedAt < parts.records[0].annotatedAt) return;
      parts = undefined;
    }
    parts ??= { key, documentId: record.documentId, documentCreatedAt: record.documentCreatedAt, records: [], firstSeen: this.now() };
    if (!parts.records.some((r) => r.part === record.part)) parts.records.push(record);
    parts.records.sort((a, b) => a.part - b.part);
    const doc = this.pendingDocuments.get(key);
    if (this.complete(parts) && doc) {
      this.pendingDocuments.delete(key);
      this.pendingAnnotations.delete(key);
      this.enqueue(doc, parts.records);
      return;
    }
    this.pendingAnnotations.delete(key);
    this.pendingAnnotations.set(key, parts);
    this.bound(this.pendingAnnotations);
  }

  private complete(parts: PendingParts): boolean {
    const want = parts.records[0]?.parts ?? 1;
    return parts.records.length >= want && parts.records.every((r, i) => r.part === i);
  }

  private bound<V>(map: Map<string, V>): void {
    while (map.size > this.limits.joinWindow) {
      const oldest = map.keys().next().value as string;
      map.delete(oldest);
      this.unmatched++;
    }
  }

  private enqueue(doc: IncomingDocument, records: readonly IncomingAnnotations[]): void {
    const first = records[0];
    const reviewId = reviewIdOf(doc.id, doc.createdAt, first.modelVersion, first.annotatedAt);
    if (this.reviewed.has(reviewId) || this.waiting.has(reviewId)) return;
    // A newer annotation of a document still waiting replaces it (an unfinished review of the older one is lost).
    for (const w of this.waiting.values()) {
      if (w.documentId === doc.id && w.submission === null && w.annotatedAt < first.annotatedAt) this.waiting.delete(w.reviewId);
    }
    const entities = records.flatMap((r) => r.entities).sort((a, b) => a.start - b.start || a.end - b.end);
    const item: WaitingItem = {
      reviewId,
      documentId: doc.id,
      sourceSystem: doc.sourceSystem,
      patientRef: doc.patientRef,
      section: doc.section,
      text: doc.text,
      documentCreatedAt: doc.createdAt,
      modelVersion: first.modelVersion,
      kgVersion: first.kgVersion,
      kgDegraded: records.some((r) => r.kgDegraded),
      annotatedAt: first.annotatedAt,
      entities,
      confidence: confidenceOf(entities),
      queuedAt: this.now(),
      submission: null,
    };
    this.waiting.set(reviewId, item);
    // Full: the most confident waiting document (never one being submitted) makes room.
    while (this.waiting.size > this.limits.maxQueue) {
      let most: WaitingItem | null = null;
      for (const w of this.waiting.values()) if (w.submission === null && (most === null || w.confidence > most.confidence)) most = w;
      if (most === null) break;
      this.waiting.delete(most.reviewId);
      this.dropped++;
    }
  }

  /** Waiting documents matching the filter, least confident first (then oldest annotation first). */
  list(filter: QueueFilter = {}): WaitingItem[] {
    return [...this.waiting.values()]
      .filter((w) => (!filter.modelVersion || w.modelVersion === filter.modelVersion) && (!filter.type || w.entities.some((e) => e.type === filter.type)))
      .sort((a, b) => a.confidence - b.confidence || a.annotatedAt - b.annotatedAt || (a.reviewId < b.reviewId ? -1 : 1));
  }

  get(reviewId: string): WaitingItem | undefined {
    return this.waiting.get(reviewId);
  }

  getReviewed(reviewId: string): ReviewedItem | undefined {
    return this.reviewed.get(reviewId);
  }

  /** Items whose Feedback record was stored but not acknowledged (a crash or an outage in between). */
  sending(): WaitingItem[] {
    return [...this.waiting.values()].filter((w) => w.submission?.state === 'sending');
  }

  /** Records the submission about to be produced (state 'sending', with the record's bytes) and saves. */
  beginSubmission(reviewId: string, submission: Submission): void {
    const item = this.waiting.get(reviewId);
    if (!item) throw new SchemaError(`review ${reviewId} is not waiting`);
    item.submission = submission;
    this.save();
  }

  /** The broker acknowledged the record: the item leaves the queue, keeping no text, and the queue is saved. */
  finishSubmission(reviewId: string): ReviewedItem {
    const item = this.waiting.get(reviewId);
    if (!item || !item.submission) throw new SchemaError(`review ${reviewId} has no submission in progress`);
    const done: ReviewedItem = {
      reviewId,
      documentId: item.documentId,
      modelVersion: item.modelVersion,
      types: [...new Set(item.entities.map((e) => e.type))],
      submission: { ...item.submission, state: 'sent', recordBase64: null },
    };
    this.waiting.delete(reviewId);
    this.reviewed.set(reviewId, done);
    while (this.reviewed.size > this.limits.maxReviewed) this.reviewed.delete(this.reviewed.keys().next().value as string);
    this.save();
    return done;
  }

  counts(filter: QueueFilter = {}): QueueCounts {
    const reviewed = [...this.reviewed.values()].filter((r) => (!filter.modelVersion || r.modelVersion === filter.modelVersion) && (!filter.type || r.types.includes(filter.type)));
    return {
      waiting: this.list(filter).length,
      reviewed: reviewed.length,
      dropped: this.dropped,
      pendingDocuments: this.pendingDocuments.size,
      pendingAnnotations: this.pendingAnnotations.size,
      unmatched: this.unmatched,
    };
  }

  /** Model versions and entity types among the waiting documents (the page's filters). */
  facets(): { modelVersions: string[]; types: string[] } {
    const versions = new Set<string>();
    const types = new Set<string>();
    for (const w of this.waiting.values()) {
      versions.add(w.modelVersion);
      for (const e of w.entities) types.add(e.type);
    }
    return { modelVersions: [...versions].sort(), types: [...types].sort() };
  }
}
