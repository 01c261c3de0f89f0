/**
 * Clinician feedback as training data: validation, conversion of gold entity spans into
 * character-level BIO sentences, the deterministic holdout split, and the buffer that deduplicates
 * documents (the latest correction of a document wins) until a training round uses them.
 *
 * Offsets are UTF-16 code units of the document text, as in the stage's EntityAnnotations. A
 * sentence's characters are code points, so a character outside the BMP is one character with one
 * tag (evaluate.ts's charLabelIds spreads it over its two code units).
 *
 * Problems are described without any document text: they end up in logs and dead-letter records.
 */
import { createHash } from 'node:crypto';
import type { NerSentence } from './datasets.ts';

export interface GoldSpan {
  start: number;
  end: number;
  text: string;
  type: string;
}

/** What the trainer needs of a Feedback record (the Avro record has these fields and more). */
export interface FeedbackDocument {
  documentId: string;
  text: string;
  entities: readonly GoldSpan[];
  /** Milliseconds since the epoch; the later correction of a document wins. */
  createdAt: number;
}

/** Sentence boundaries of a text, [start, end) in UTF-16 code units (the stage's segmenter). */
export type Segmenter = (text: string) => readonly { start: number; end: number }[];

export interface FeedbackRules {
  /** Entity types the model knows. */
  types: ReadonlySet<string>;
  /** Longest text accepted (code units). */
  maxTextChars: number;
}

const MAX_ID_CHARS = 512;
const MAX_SHOWN_TYPE_CHARS = 40;

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** True when offset `i` of `text` falls between the two halves of a surrogate pair. */
function splitsPair(text: string, i: number): boolean {
  return i > 0 && i < text.length && isHighSurrogate(text.charCodeAt(i - 1)) && isLowSurrogate(text.charCodeAt(i));
}

/** No unpaired surrogate (String.prototype.isWellFormed, which ES2023's typings lack). */
function isWellFormed(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (isHighSurrogate(c)) {
      if (i + 1 < text.length && isLowSurrogate(text.charCodeAt(i + 1))) i++;
      else return false;
    } else if (isLowSurrogate(c)) return false;
  }
  return true;
}

function shownType(type: string): string {
  const t = type.length > MAX_SHOWN_TYPE_CHARS ? `${type.slice(0, MAX_SHOWN_TYPE_CHARS)}...` : type;
  return JSON.stringify(t);
}

/**
 * Every problem with a feedback document (empty: usable). Exact duplicate entities (same span and
 * type) are not a problem; overlapping ones are, since BIO tags cannot hold them.
 */
export function feedbackProblems(f: FeedbackDocument, rules: FeedbackRules): string[] {
  const problems: string[] = [];
  if (typeof f.documentId !== 'string' || f.documentId.length === 0) problems.push('documentId is empty');
  else if (f.documentId.length > MAX_ID_CHARS) problems.push(`documentId is longer than ${MAX_ID_CHARS} characters`);
  if (typeof f.text !== 'string' || f.text.trim().length === 0) {
    problems.push('text is empty');
    return problems;
  }
  if (f.text.length > rules.maxTextChars) problems.push(`text has ${f.text.length} characters, more than the ${rules.maxTextChars} accepted`);
  if (!isWellFormed(f.text)) problems.push('text holds an unpaired surrogate (not valid Unicode)');
  if (!Number.isFinite(f.createdAt)) problems.push('createdAt is not a time');
  const n = f.text.length;
  f.entities.forEach((e, i) => {
    const which = `entity ${i + 1}`;
    if (!Number.isInteger(e.start) || !Number.isInteger(e.end) || e.start < 0 || e.end > n || e.start >= e.end) {
      problems.push(`${which}: span [${e.start}, ${e.end}) is not inside the text (length ${n}) or is empty`);
      return;
    }
    if (splitsPair(f.text, e.start) || splitsPair(f.text, e.end)) problems.push(`${which}: span [${e.start}, ${e.end}) cuts a character in half (offsets are UTF-16 code units)`);
    if (!rules.types.has(e.type)) problems.push(`${which}: unknown type ${shownType(e.type)} (known: ${[...rules.types].join(', ')})`);
    if (e.text !== f.text.slice(e.start, e.end)) problems.push(`${which}: its text differs from the document text at [${e.start}, ${e.end}) (offsets must be UTF-16 code units of this text)`);
  });
  if (problems.length === 0) {
    const spans = uniqueSpans(f.entities);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i].start < spans[i - 1].end) {
        problems.push(`entities [${spans[i - 1].start}, ${spans[i - 1].end}) and [${spans[i].start}, ${spans[i].end}) overlap`);
      }
    }
  }
  return problems;
}

/** Entities sorted by position with exact duplicates removed. */
function uniqueSpans(entities: readonly GoldSpan[]): GoldSpan[] {
  const seen = new Set<string>();
  const out: GoldSpan[] = [];
  for (const e of entities) {
    const key = `${e.start}:${e.end}:${e.type}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(e);
  }
  return out.sort((a, b) => a.start - b.start || a.end - b.end);
}

/**
 * Character-level BIO sentences of a valid feedback document: the text is cut where the stage cuts
 * it (`segment`), except that sentences an entity straddles stay together, so no gold entity is ever
 * cut; text outside every sentence (white space between them) is not used unless an entity covers it.
 */
export function feedbackToSentences(f: FeedbackDocument, segment: Segmenter): NerSentence[] {
  const spans = uniqueSpans(f.entities);
  const units: { start: number; end: number }[] = [];
  const intervals = [...segment(f.text).map((s) => ({ start: s.start, end: s.end })), ...spans.map((s) => ({ start: s.start, end: s.end }))].sort(
    (a, b) => a.start - b.start || b.end - a.end,
  );
  for (const iv of intervals) {
    const last = units[units.length - 1];
    // Overlap (not mere contact) joins: adjacent sentences stay apart unless an entity spans both.
    if (last && iv.start < last.end) last.end = Math.max(last.end, iv.end);
    else units.push({ ...iv });
  }
  return units.map((u) => {
    const text = f.text.slice(u.start, u.end);
    const chars = Array.from(text);
    const labels = new Array<string>(chars.length).fill('O');
    // Code-unit offset (relative to the unit) -> character index.
    const charAt = new Int32Array(text.length + 1);
    let unit = 0;
    chars.forEach((c, i) => {
      for (let k = 0; k < c.length; k++) charAt[unit + k] = i;
      unit += c.length;
    });
    charAt[text.length] = chars.length;
    for (const e of spans) {
      if (e.start < u.start || e.end > u.end) continue;
      const first = charAt[e.start - u.start];
      const last = charAt[e.end - u.start - 1];
      labels[first] = `B-${e.type}`;
      for (let i = first + 1; i <= last; i++) labels[i] = `I-${e.type}`;
    }
    return { chars, text, labels, repaired: [] };
  });
}

/**
 * True when the document belongs to the holdout: the first 32 bits of sha256(documentId), mod 100,
 * below `percent`. The same document is always on the same side, whichever trainer reads it.
 */
export function isHeldOut(documentId: string, percent: number): boolean {
  if (percent <= 0) return false;
  const bucket = createHash('sha256').update(documentId, 'utf8').digest().readUInt32BE(0) % 100;
  return bucket < percent;
}

/** Where a record was read from: its partition and offset (a decimal string, as Kafka gives it). */
export interface RecordPosition {
  partition: number;
  offset: string;
}

export interface BufferedFeedback {
  document: FeedbackDocument;
  position: RecordPosition;
  heldOut: boolean;
  /** When the trainer received it (ms). */
  receivedAt: number;
}

/** A record the trainer cannot use, kept (raw bytes included) until it is dead-lettered with the round's commit. */
export interface Rejection<Raw = unknown> {
  position: RecordPosition;
  /** DeadLetter errorClass: SchemaError (undecodable), InvalidFeedbackError (decoded but unusable). */
  errorClass: string;
  /** Text-free description. */
  message: string;
  /** decode | validate */
  stage: string;
  /** The original record (key and value bytes), carried through to the dead-letter topic. */
  raw: Raw;
}

/** Everything one round works on: taken from the buffer at once, committed together after the round. */
export interface RoundBatch<Raw = unknown> {
  training: BufferedFeedback[];
  heldOut: BufferedFeedback[];
  rejections: Rejection<Raw>[];
  /** Older corrections of documents that a later one replaced (used: they are committed too). */
  superseded: number;
  /** Per partition, the next offset to read once this batch is committed. */
  positions: Map<number, bigint>;
}

/** A later record wins; a tie on createdAt goes to the one read later (larger offset). */
function isNewer(candidate: BufferedFeedback, incumbent: BufferedFeedback): boolean {
  if (candidate.document.createdAt !== incumbent.document.createdAt) return candidate.document.createdAt > incumbent.document.createdAt;
  if (candidate.position.partition !== incumbent.position.partition) return candidate.position.partition > incumbent.position.partition;
  return BigInt(candidate.position.offset) >= BigInt(incumbent.position.offset);
}

/**
 * Feedback read but not yet committed, one entry per document (the latest correction wins), the
 * rejected records, and the read position per partition.
 */
export class FeedbackBuffer<Raw = unknown> {
  private documents = new Map<string, BufferedFeedback>();
  private rejections: Rejection<Raw>[] = [];
  private superseded = 0;
  private positions = new Map<number, bigint>();

  constructor(private readonly holdoutPercent: number) {}

  private advance(position: RecordPosition): void {
    const next = BigInt(position.offset) + 1n;
    const current = this.positions.get(position.partition);
    if (current === undefined || next > current) this.positions.set(position.partition, next);
  }

  /** Adds a valid document; returns what happened to it. */
  add(document: FeedbackDocument, position: RecordPosition, receivedAt: number): 'added' | 'replaced' | 'stale' | 'duplicate' {
    this.advance(position);
    const entry: BufferedFeedback = { document, position, heldOut: isHeldOut(document.documentId, this.holdoutPercent), receivedAt };
    const incumbent = this.documents.get(document.documentId);
    if (!incumbent) {
      this.documents.set(document.documentId, entry);
      return 'added';
    }
    // The same record read again (a consumer rebalance re-delivers uncommitted records).
    if (incumbent.position.partition === position.partition && incumbent.position.offset === position.offset) return 'duplicate';
    this.superseded++;
    if (isNewer(entry, incumbent)) {
      // The document keeps the time it first waited since, so a stream of corrections cannot starve the timer.
      this.documents.set(document.documentId, { ...entry, receivedAt: Math.min(incumbent.receivedAt, receivedAt) });
      return 'replaced';
    }
    return 'stale';
  }

  reject(rejection: Rejection<Raw>): void {
    this.advance(rejection.position);
    if (this.rejections.some((r) => r.position.partition === rejection.position.partition && r.position.offset === rejection.position.offset)) return;
    this.rejections.push(rejection);
  }

  /** Records held (documents + rejections). */
  get size(): number {
    return this.documents.size + this.rejections.length;
  }

  /** Documents a round would train on. */
  get trainingCount(): number {
    let n = 0;
    for (const e of this.documents.values()) if (!e.heldOut) n++;
    return n;
  }

  get heldOutCount(): number {
    return this.documents.size - this.trainingCount;
  }

  get rejectedCount(): number {
    return this.rejections.length;
  }

  /** receivedAt of the longest-waiting training document, or null. */
  oldestTrainingAt(): number | null {
    let oldest: number | null = null;
    for (const e of this.documents.values()) if (!e.heldOut && (oldest === null || e.receivedAt < oldest)) oldest = e.receivedAt;
    return oldest;
  }

  /** True when something was read since the last take (a commit would move some partition forward). */
  get hasPositions(): boolean {
    return this.positions.size > 0;
  }

  /** Empties the buffer into a round batch. */
  take(): RoundBatch<Raw> {
    const all = [...this.documents.values()];
    const batch: RoundBatch<Raw> = {
      training: all.filter((e) => !e.heldOut),
      heldOut: all.filter((e) => e.heldOut),
      rejections: this.rejections,
      superseded: this.superseded,
      positions: this.positions,
    };
    this.documents = new Map();
    this.rejections = [];
    this.superseded = 0;
    this.positions = new Map();
    return batch;
  }

  /** Puts an uncommitted batch back (a failed or interrupted round): newer records read meanwhile still win. */
  restore(batch: RoundBatch<Raw>): void {
    for (const e of [...batch.training, ...batch.heldOut]) {
      const current = this.documents.get(e.document.documentId);
      if (!current) {
        this.documents.set(e.document.documentId, e);
        continue;
      }
      this.superseded++;
      if (isNewer(e, current)) this.documents.set(e.document.documentId, { ...e, receivedAt: Math.min(e.receivedAt, current.receivedAt) });
    }
    for (const r of batch.rejections) this.reject(r);
    this.superseded += batch.superseded;
    for (const [p, next] of batch.positions) {
      const current = this.positions.get(p);
      if (current === undefined || next > current) this.positions.set(p, next);
    }
  }
}
