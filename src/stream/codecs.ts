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

  constructor(schema: avro.Schema) {
    this.type = compile(schema);
    this.name = (this.type as avro.Type & { name?: string }).name ?? 'record';
    const fp = rabinFingerprint(canonicalForm(this.type));
    this.fingerprintHex = fp.toString('hex');
    this.header = Buffer.concat([Buffer.from([MAGIC_0, MAGIC_1]), fp]);
    this.readers.set(this.fingerprintHex, null);
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
    try {
      return this.type.fromBuffer(bytes.subarray(HEADER_BYTES), resolver) as T;
    } catch (error) {
      // avsc's messages say what went wrong structurally (truncated buffer, trailing data, bad union index).
      throw new SchemaError(`${this.name}: undecodable body: ${(error as Error).message}`, { cause: error });
    }
  }
}

export function createCodec<T>(readerSchema: avro.Schema, earlierWriterSchemas: avro.Schema[] = []): AvroCodec<T> {
  const codec = new SingleObjectCodec<T>(readerSchema);
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
  timingsMs: Record<string, number>;
  documentCreatedAt: number;
  annotatedAt: number;
}

export interface GoldEntityRecord {
  start: number;
  end: number;
  text: string;
  type: string;
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

function load<T>(name: string, dir: string): AvroCodec<T> {
  return createCodec<T>(readSchemaFile(path.join(dir, `${name}.avsc`)), historyOf(name, dir));
}

let compiled: Codecs | null = null;

/** The stage's codecs, compiled once per process from schemas/. */
export function codecs(): Codecs {
  compiled ??= Object.freeze({
    emrDocument: load<EmrDocumentRecord>('EmrDocument', SCHEMA_DIR),
    entityAnnotations: load<EntityAnnotationsRecord>('EntityAnnotations', SCHEMA_DIR),
    feedback: load<FeedbackRecord>('Feedback', SCHEMA_DIR),
    modelUpdate: load<ModelUpdateRecord>('ModelUpdate', SCHEMA_DIR),
    deadLetter: load<DeadLetterRecord>('DeadLetter', SCHEMA_DIR),
  });
  return compiled;
}
