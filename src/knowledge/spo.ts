/**
 * The `.spo` triple format (K-BERT's): UTF-8, one `subject<TAB>relation<TAB>object` per line.
 *
 * A line is accepted only as it stands: lines that are not exactly three non-empty tab-separated
 * fields, that are not valid UTF-8, or that contain control characters, unpaired surrogates or
 * leading/trailing whitespace in a field are reported (with their line number) and skipped, never
 * repaired or merged, so that a stray space cannot turn into a second concept.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Triple } from '../domain/index.ts';
import { compareCodeUnits } from './graph.ts';

export interface MalformedLine {
  /** 1-based line number in the file. */
  line: number;
  reason: string;
}

const FIELD_NAMES = ['subject', 'relation', 'object'] as const;

function hex4(code: number): string {
  return `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** Why `field` cannot be a concept or relation name, or null if it can. */
function fieldProblem(field: string): string | null {
  if (field.length === 0) return 'is empty';
  if (field.trim().length === 0) return 'is only whitespace';
  if (field.trim() !== field) return 'has leading or trailing whitespace';
  for (let i = 0; i < field.length; i++) {
    const c = field.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return `contains control character ${hex4(c)} at column ${i + 1}`;
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = field.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      return `contains an unpaired surrogate ${hex4(c)} at column ${i + 1}`;
    }
    if (c >= 0xdc00 && c <= 0xdfff) return `contains an unpaired surrogate ${hex4(c)} at column ${i + 1}`;
  }
  return null;
}

/**
 * Parses one decoded line (without its line terminator). Returns the triple, or the reason it is
 * malformed.
 */
export function parseSpoLine(line: string): Triple | string {
  if (line.length === 0) return 'empty line';
  const fields = line.split('\t');
  if (fields.length !== 3) return `expected 3 tab-separated fields, found ${fields.length}`;
  for (let f = 0; f < 3; f++) {
    const problem = fieldProblem(fields[f]);
    if (problem !== null) return `${FIELD_NAMES[f]} ${problem}`;
  }
  return { subject: fields[0], relation: fields[1], object: fields[2] };
}

export interface SpoChunk {
  triples: Triple[];
  malformed: MalformedLine[];
  /** Bytes of the file consumed so far. */
  bytesRead: number;
  /** Lines seen so far. */
  lines: number;
}

/**
 * Reads a `.spo` file as a stream and yields its triples in chunks (for batching and progress);
 * memory stays bounded by the chunk size whatever the file size.
 */
export async function* readSpoFile(path: string, chunkSize = 1000): AsyncGenerator<SpoChunk> {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let lineNo = 0;
  let bytesRead = 0;
  let pending: Buffer | null = null;
  let triples: Triple[] = [];
  let malformed: MalformedLine[] = [];

  const takeLine = (bytes: Buffer): void => {
    lineNo++;
    let end = bytes.length;
    if (end > 0 && bytes[end - 1] === 0x0d) end--;
    let start = 0;
    if (lineNo === 1 && end >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) start = 3;
    let text: string;
    try {
      text = decoder.decode(bytes.subarray(start, end));
    } catch {
      malformed.push({ line: lineNo, reason: 'invalid UTF-8' });
      return;
    }
    const parsed = parseSpoLine(text);
    if (typeof parsed === 'string') malformed.push({ line: lineNo, reason: parsed });
    else triples.push(parsed);
  };

  const stream = createReadStream(path, { highWaterMark: 1 << 20 });
  for await (const raw of stream as AsyncIterable<Buffer>) {
    const data: Buffer = pending ? Buffer.concat([pending, raw]) : raw;
    let from = 0;
    for (let nl = data.indexOf(0x0a, from); nl >= 0; nl = data.indexOf(0x0a, from)) {
      takeLine(data.subarray(from, nl));
      from = nl + 1;
      if (triples.length >= chunkSize) {
        yield { triples, malformed, bytesRead: bytesRead + from, lines: lineNo };
        triples = [];
        malformed = [];
      }
    }
    bytesRead += raw.length;
    pending = from < data.length ? Buffer.from(data.subarray(from)) : null;
  }
  // A last line without a final newline is still a line; a file ending in "\n" has no extra line.
  if (pending && pending.length > 0) takeLine(pending);
  yield { triples, malformed, bytesRead, lines: lineNo };
}

/** The canonical line of a triple in the version hash (fields never contain tabs or newlines). */
export function tripleKey(t: Triple): string {
  return `${t.subject}\t${t.relation}\t${t.object}`;
}

/**
 * Accumulates distinct triples and computes the graph's version stamp: sha256 (hex) over the
 * normalised triples, i.e. one `subject\trelation\tobject\n` line (UTF-8) per distinct triple,
 * sorted by UTF-16 code units. The stamp therefore depends only on the set of triples, not on file
 * order, duplicates, a BOM or CRLF line ends.
 */
export class KgVersionBuilder {
  private readonly keys = new Set<string>();
  private added = 0;

  /** Returns false when the triple was already added (a duplicate). */
  add(t: Triple): boolean {
    this.added++;
    const key = tripleKey(t);
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    return true;
  }

  get distinct(): number {
    return this.keys.size;
  }

  get duplicates(): number {
    return this.added - this.keys.size;
  }

  /** The distinct triples' lines, sorted as the stamp hashes them (without their final newline). */
  sortedLines(): string[] {
    // Fields cannot contain control characters, so sorting whole keys sorts by (s, r, o): TAB sorts first.
    return [...this.keys].sort(compareCodeUnits);
  }

  digest(): string {
    const hash = createHash('sha256');
    for (const key of this.sortedLines()) hash.update(`${key}\n`, 'utf8');
    return hash.digest('hex');
  }
}

export interface SpoFileSummary {
  file: string;
  lines: number;
  validTriples: number;
  /** The first malformed lines (up to the caller's limit) and how many there were in all. */
  malformed: MalformedLine[];
  malformedCount: number;
}

export interface MergedSpo {
  /** The union as a normalised .spo text: distinct triples, sorted by UTF-16 code units, one per line. */
  text: string;
  /** Version stamp of the union; also the sha256 of `text`, which is exactly what the stamp hashes. */
  version: string;
  distinct: number;
  duplicates: number;
  files: SpoFileSummary[];
}

/**
 * The union of several .spo files as one normalised file: the graph a stage gets by loading them one
 * after the other, in a single file that embedded mode, `rmbert annotate` and `rmbert eval` can read.
 */
export async function mergeSpoFiles(files: readonly string[], keepMalformed = 50): Promise<MergedSpo> {
  const version = new KgVersionBuilder();
  const summaries: SpoFileSummary[] = [];
  for (const file of files) {
    const summary: SpoFileSummary = { file, lines: 0, validTriples: 0, malformed: [], malformedCount: 0 };
    for await (const chunk of readSpoFile(file)) {
      summary.lines = chunk.lines;
      summary.validTriples += chunk.triples.length;
      summary.malformedCount += chunk.malformed.length;
      for (const m of chunk.malformed) if (summary.malformed.length < keepMalformed) summary.malformed.push(m);
      for (const t of chunk.triples) version.add(t);
    }
    summaries.push(summary);
  }
  const lines = version.sortedLines();
  return {
    text: lines.map((l) => `${l}\n`).join(''),
    version: version.digest(),
    distinct: version.distinct,
    duplicates: version.duplicates,
    files: summaries,
  };
}

export function kgVersionOf(triples: Iterable<Triple>): string {
  const builder = new KgVersionBuilder();
  for (const t of triples) builder.add(t);
  return builder.digest();
}
