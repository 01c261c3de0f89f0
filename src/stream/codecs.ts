/**
 * Avro codecs for every record the stage reads or writes, compiled once from schemas/*.avsc.
 *
 * Wire format: Avro single-object encoding (Avro spec, "Single object encoding"): the two bytes
 * C3 01, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's parsing canonical
 * form, then the Avro binary body. The fingerprint lets a reader tell a record of the wrong schema
 * from a corrupt one, and pick the right writer schema when schemas evolve: every codec knows its
 * current (reader) schema plus any earlier writer schemas registered with it, and reads old records
 * through an avsc resolver.
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import avro from 'avsc';
import { SchemaError } from '../errors/index.ts';

export const SCHEMA_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../schemas');

const MAGIC_0 = 0xc3;
const MAGIC_1 = 0x01;
const HEADER_BYTES = 10;

// CRC-64-AVRO (Rabin) fingerprint, as specified in the Avro spec.
const FP_EMPTY = 0xc15d213aa4d7a795n;
const FP_TABLE: bigint[] = (() => {
  const table: bigint[] = [];
  for (let i = 0; i < 256; i++) {
    let fp = BigInt(i);
    for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (FP_EMPTY & -(fp & 1n));
    table.push(fp);
  }
  return table;
})();

/** CRC-64-AVRO fingerprint of a schema's parsing canonical form, as the 8 little-endian bytes the wire format carries. */
export function rabinFingerprint(canonicalForm: string): Buffer {
  let fp = FP_EMPTY;
  for (const byte of Buffer.from(canonicalForm, 'utf8')) fp = (fp >> 8n) ^ FP_TABLE[Number((fp ^ BigInt(byte)) & 0xffn)];
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(fp);
  return out;
}

/** Parsing canonical form of a compiled type (avsc's default `schema()` output is canonical). */
export function canonicalForm(type: avro.Type): string {
  return JSON.stringify(type.schema());
}

export interface AvroCodec<T> {
  /** Full name of the record, e.g. health.rmbert.EmrDocument. */
  readonly name: string;
  /** The current (reader and writer) type. */
  readonly type: avro.Type;
  /** Fingerprint (8 bytes, hex) of the current schema. */
  readonly fingerprintHex: string;
  /** Encodes with the current schema; throws SchemaError if the value does not fit it. */
  encode(value: T): Buffer;
  /** Decodes a record written with the current or any registered earlier schema; throws SchemaError otherwise. */
  decode(bytes: Buffer): T;
  /** Teaches the codec an earlier writer schema so that records written with it can still be read. */
  registerWriterSchema(schema: avro.Schema): void;
}

function compile(schema: avro.Schema): avro.Type {
  // Logical types stay plain (timestamp-millis is a number of milliseconds) so that values round-trip
  // without Date conversions.
  return avro.Type.forSchema(schema, { wrapUnions: false });
}

/**
 * A string field whose bytes are not valid UTF-8. avsc decodes such bytes to U+FFFD without a word,
 * after which a literal U+FFFD (valid text) and a replaced invalid sequence look the same; so a codec
 * built with `strictUtf8` checks the bytes themselves. `field` is the field's path, e.g. "text".
 */
export class InvalidUtf8Error extends SchemaError {
  readonly field: string;
  constructor(field: string) {
    super(`field ${field} is not valid UTF-8`);
    this.field = field;
  }
}

const STRICT_UTF8 = 'rmbert-strict-utf8';
const FATAL_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** `bytes` read back as a string with a fatal decoder (the field's path rides in the schema). */
class StrictUtf8Type extends avro.types.LogicalType {
  private readonly field: string;
  constructor(schema: avro.Schema, opts?: avro.ForSchemaOptions) {
    super(schema, opts);
    this.field = String((schema as unknown as Record<string, unknown>)['rmbert.field'] ?? '?');
  }
  protected override _fromValue(value: Buffer): string {
    try {
      return FATAL_UTF8.decode(value);
    } catch {
      throw new InvalidUtf8Error(this.field);
    }
  }
  protected override _toValue(value: string): Buffer {
    return Buffer.from(value, 'utf8');
  }
}

/**
 * The schema with every string replaced by bytes read through StrictUtf8Type. Strings and bytes have
 * the same binary encoding, so the result reads the same records; it is only ever a writer type
 * (defaults are dropped: they matter to readers only).
 */
function strictStringSchema(schema: unknown, at: string): unknown {
  if (schema === 'string' || (isObject(schema) && schema.type === 'string')) return { type: 'bytes', logicalType: STRICT_UTF8, 'rmbert.field': at || '(root)' };
  if (Array.isArray(schema)) return schema.map((branch) => strictStringSchema(branch, at));
  if (!isObject(schema)) return schema;
  switch (schema.type) {
    case 'record':
    case 'error':
      return {
        ...schema,
        fields: (schema.fields as { name: string; type: unknown; default?: unknown }[]).map(({ default: _unused, ...f }) => ({
          ...f,
          type: strictStringSchema(f.type, at ? `${at}.${f.name}` : f.name),
        })),
      };
    case 'array':
      return { ...schema, items: strictStringSchema(schema.items, `${at}[]`) };
    case 'map':
      return { ...schema, values: strictStringSchema(schema.values, `${at}{}`) };
    default:
      return schema;
  }
}

function hasReplacementChar(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\ufffd');
  if (Array.isArray(value)) return value.some(hasReplacementChar);
  if (isObject(value) && !Buffer.isBuffer(value)) return Object.values(value).some(hasReplacementChar);
  return false;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function compileStrict(schema: avro.Schema): avro.Type {
  return avro.Type.forSchema(strictStringSchema(schema, '') as avro.Schema, { wrapUnions: false, logicalTypes: { [STRICT_UTF8]: StrictUtf8Type } });
}

function validationProblems(type: avro.Type, value: unknown): string[] {
  const problems: string[] = [];
  type.isValid(value, {
    errorHook: (pathParts: string[], _v: unknown, t: avro.Type) => {
      // Only the path and the expected type: the value may be clinical text and must not reach messages.
      problems.push(`${pathParts.join('.') || '(root)'} is not a valid ${t.typeName}`);
    },
  });
  return problems;
}

class SingleObjectCodec<T> implements AvroCodec<T> {
  readonly name: string;
  readonly type: avro.Type;
  readonly fingerprintHex: string;
  private readonly header: Buffer;
  /** Writer fingerprint (hex) -> resolver into the current type, or null for the current schema itself. */
  private readonly readers = new Map<string, avro.Resolver | null>();
  /** With strictUtf8: writer fingerprint (hex) -> the writer schema with strict strings (checks the bytes). */
  private readonly strictWriters: Map<string, avro.Type> | null;

  constructor(schema: avro.Schema, options: CodecOptions = {}) {
    this.strictWriters = options.strictUtf8 ? new Map() : null;
    this.type = compile(schema);
    this.name = (this.type as avro.Type & { name?: string }).name ?? 'record';
    const fp = rabinFingerprint(canonicalForm(this.type));
    this.fingerprintHex = fp.toString('hex');
    this.header = Buffer.concat([Buffer.from([MAGIC_0, MAGIC_1]), fp]);
    this.readers.set(this.fingerprintHex, null);
    this.strictWriters?.set(this.fingerprintHex, compileStrict(schema));
  }

  registerWriterSchema(schema: avro.Schema): void {
    const writer = compile(schema);
    const fp = rabinFingerprint(canonicalForm(writer)).toString('hex');
    if (this.readers.has(fp)) return;
    try {
      this.readers.set(fp, this.type.createResolver(writer));
    } catch (error) {
      throw new SchemaError(`${this.name}: the current schema cannot read records written with schema ${fp}`, { cause: error });
    }
    this.strictWriters?.set(fp, compileStrict(schema));
  }

  encode(value: T): Buffer {
    let body: Buffer;
    try {
      // avsc checks every value as it writes it, so a valid record costs one pass.
      body = this.type.toBuffer(value);
    } catch {
      // avsc's own message quotes the offending value (possibly clinical text): describe the problem without it.
      const problems = validationProblems(this.type, value);
      throw new SchemaError(`${this.name}: ${problems.length > 0 ? problems.join('; ') : 'value does not fit the schema'}`);
    }
    return Buffer.concat([this.header, body]);
  }

  decode(bytes: Buffer): T {
    if (!Buffer.isBuffer(bytes) || bytes.length < HEADER_BYTES || bytes[0] !== MAGIC_0 || bytes[1] !== MAGIC_1) {
      throw new SchemaError(`${this.name}: not an Avro single-object record (missing C3 01 header)`);
    }
    const fp = bytes.subarray(2, HEADER_BYTES).toString('hex');
    if (!this.readers.has(fp)) {
      throw new SchemaError(`${this.name}: record written with unknown schema ${fp} (expected ${this.fingerprintHex})`);
    }
    const resolver = this.readers.get(fp) ?? undefined;
    let value: T;
    try {
      value = this.type.fromBuffer(bytes.subarray(HEADER_BYTES), resolver) as T;
    } catch (error) {
      // avsc's messages say what went wrong structurally (truncated buffer, trailing data, bad union index).
      throw new SchemaError(`${this.name}: undecodable body: ${(error as Error).message}`, { cause: error });
    }
    // A lenient read turns every invalid byte sequence into U+FFFD, so a record without U+FFFD in any
    // string is valid UTF-8 as it stands. Otherwise a second read of the (now known to be well-formed)
    // body with the writer's strict type tells invalid bytes from a U+FFFD the writer sent as text.
    const strict = this.strictWriters?.get(fp);
    if (strict && hasReplacementChar(value)) {
      try {
        strict.fromBuffer(bytes.subarray(HEADER_BYTES));
      } catch (error) {
        if (error instanceof InvalidUtf8Error) throw error;
        throw new SchemaError(`${this.name}: undecodable body: ${(error as Error).message}`, { cause: error });
      }
    }
    return value;
  }
}

export interface CodecOptions {
  /** decode() throws InvalidUtf8Error when a string field's bytes are not valid UTF-8 (instead of reading them as U+FFFD). */
  strictUtf8?: boolean;
}

export function createCodec<T>(readerSchema: avro.Schema, earlierWriterSchemas: avro.Schema[] = [], options: CodecOptions = {}): AvroCodec<T> {
  const codec = new SingleObjectCodec<T>(readerSchema, options);
  for (const s of earlierWriterSchemas) codec.registerWriterSchema(s);
  return codec;
}

/** Fingerprint (hex) carried by an encoded record, or null when it has no single-object header. */
export function writerFingerprint(bytes: Buffer): string | null {
  if (bytes.length < HEADER_BYTES || bytes[0] !== MAGIC_0 || bytes[1] !== MAGIC_1) return null;
  return bytes.subarray(2, HEADER_BYTES).toString('hex');
}

export function readSchemaFile(file: string): avro.Schema {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as avro.Schema;
  } catch (error) {
    throw new SchemaError(`cannot read Avro schema ${file}: ${(error as Error).message}`, { cause: error });
  }
}

// ---- Record types (what the codecs produce and accept) ----

export interface EmrDocumentRecord {
  id: string;
  sourceSystem: string;
  patientRef: string;
  text: string;
  language: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
  section: string | null;
}

export interface LinkedConceptRecord {
  relation: string;
  object: string;
}

export interface EntityRecord {
  start: number;
  end: number;
  text: string;
  type: string;
  score: number;
  linked: LinkedConceptRecord[];
  /** Optional on write (avsc writes the default, null); null when decoded from a record that lacks it. */
  assertion?: EntityAssertionRecord | null;
}

export interface EntityAssertionRecord {
  polarity: 'present' | 'absent';
  certainty: 'certain' | 'possible';
  temporality: 'current' | 'historical';
  experiencer: 'patient' | 'other';
  triggers: { start: number; end: number; text: string; property: string }[];
}

export interface EntityAnnotationsRecord {
  documentId: string;
  modelVersion: string;
  kgVersion: string;
  engine: string;
  entities: EntityRecord[];
  kgDegraded: boolean;
  truncated: boolean;
  windowed: boolean;
  /** Linked concepts left out to fit the message size limit (src/stream/fit.ts). */
  linkedDropped: boolean;
  /** This record's index among the records of one document's entities; `parts` records in all (1 unless paged). */
  part: number;
  parts: number;
  timingsMs: Record<string, number>;
  documentCreatedAt: number;
  annotatedAt: number;
}

export interface GoldEntityRecord {
  start: number;
  end: number;
  text: string;
  type: string;
  /** Feedback v2; optional on write (avsc writes the default, null); null when decoded from a v1 record. */
  assertion?: GoldAssertionRecord | null;
}

export interface GoldAssertionRecord {
  polarity: 'present' | 'absent';
  certainty: 'certain' | 'possible';
  temporality: 'current' | 'historical';
  experiencer: 'patient' | 'other';
}

export interface FeedbackRecord {
  documentId: string;
  text: string;
  entities: GoldEntityRecord[];
  annotator: string;
  modelVersionSeen: string | null;
  createdAt: number;
}

export interface ModelUpdateRecord {
  version: string;
  artifactLocation: string;
  sha256: string;
  metrics: Record<string, number>;
  createdAt: number;
}

export interface DeadLetterRecord {
  original: Buffer;
  originalKey: Buffer | null;
  sourceTopic: string;
  sourcePartition: number;
  sourceOffset: number;
  errorClass: string;
  message: string;
  stage: string;
  /** True when original (and a long originalKey) hold only a prefix, to fit the message size limit. */
  originalTruncated: boolean;
  /** Length and sha256 (hex) of the whole original value; null in dead letters written before these fields. */
  originalLength: number | null;
  originalSha256: string | null;
  failedAt: number;
}

export interface Codecs {
  emrDocument: AvroCodec<EmrDocumentRecord>;
  entityAnnotations: AvroCodec<EntityAnnotationsRecord>;
  feedback: AvroCodec<FeedbackRecord>;
  modelUpdate: AvroCodec<ModelUpdateRecord>;
  deadLetter: AvroCodec<DeadLetterRecord>;
}

/**
 * Earlier versions of a schema live in schemas/history/<Name>.<n>.avsc; they are registered as
 * writer schemas so that records already on a topic stay readable after the schema evolves.
 */
function historyOf(name: string, dir: string): avro.Schema[] {
  const historyDir = path.join(dir, 'history');
  if (!existsSync(historyDir)) return [];
  return readdirSync(historyDir)
    .filter((f) => f.startsWith(`${name}.`) && f.endsWith('.avsc'))
    .sort()
    .map((f) => readSchemaFile(path.join(historyDir, f)));
}

function load<T>(name: string, dir: string, options: CodecOptions = {}): AvroCodec<T> {
  return createCodec<T>(readSchemaFile(path.join(dir, `${name}.avsc`)), historyOf(name, dir), options);
}

let compiled: Codecs | null = null;

/** The stage's codecs, compiled once per process from schemas/. */
export function codecs(): Codecs {
  compiled ??= Object.freeze({
    // Input documents are checked byte for byte: invalid UTF-8 in any field is a dead letter, while a
    // validly encoded U+FFFD is text like any other.
    emrDocument: load<EmrDocumentRecord>('EmrDocument', SCHEMA_DIR, { strictUtf8: true }),
    entityAnnotations: load<EntityAnnotationsRecord>('EntityAnnotations', SCHEMA_DIR),
    feedback: load<FeedbackRecord>('Feedback', SCHEMA_DIR),
    modelUpdate: load<ModelUpdateRecord>('ModelUpdate', SCHEMA_DIR),
    deadLetter: load<DeadLetterRecord>('DeadLetter', SCHEMA_DIR),
  });
  return compiled;
}
