/**
 * `rmbert annotate`: the stage's pipeline without Kafka or Neo4j, for trying a model on text. Reads
 * files (one document per file) or standard input (one document per line) and writes one JSON line
 * of entities per document to standard output, with the knowledge graph held in memory.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { SingleBar } from 'cli-progress';
import { flagValues, loadConfig } from '../../config/index.ts';
import type { Document } from '../../domain/index.ts';
import { ConfigError, RmBertError } from '../../errors/index.ts';
import type { EntityAssertion } from '../../domain/index.ts';
import { InvalidTextError } from '../../pipeline/errors.ts';
import { KnowledgeGate } from '../../pipeline/knowledge-gate.ts';
import { createJsonLogger, safeErrorMessage } from '../../pipeline/logging.ts';
import { NO_STAGE_METRICS, type ModelRuntime } from '../../pipeline/ports.ts';
import { BatchProcessor, type Outcome } from '../../pipeline/processor.ts';
import { createAssertionAssessor, createModelLoader, modelDirectoryCatalog, openKnowledge, type GraphKnowledge } from '../stage-wiring.ts';

export const summary = 'annotate text files or stdin lines with the model and the in-memory graph (JSON lines out, no Kafka needed)';

const HELP = `usage: rmbert annotate [FILE...] [options]

Finds medical entities in text and prints one JSON line per document on stdout:
  {"id", "modelVersion", "kgVersion", "engine", "entities": [{"start", "end", "text", "type", "score",
   "linked": [{"relation", "object"}], "assertion"}], "kgDegraded", "truncated", "windowed"}
or {"id", "error": {"class", "message"}} for a document that cannot be annotated (empty, too long,
invalid Unicode, a line or file that is not valid UTF-8); the others are annotated anyway. Offsets are
UTF-16 code units into the text. "assertion" is what the text says about the entity:
  {"polarity": present|absent, "certainty": certain|possible, "temporality": current|historical,
   "experiencer": patient|other, "triggers": [{"start", "end", "text", "property"}]}
(否认高血压 gives absent, with the trigger 否认), or null with --no-assertion.

Input: each FILE is one document (id = the file name); without FILE, each non-empty line of stdin is one
document (id = "stdin:<line number>"). A line (or file) holding a JSON object with a "text" field (and
optionally "id") is read as that document, e.g. a line of data/samples/emr-samples.jsonl.

options:
  --model-dir DIR       model artifact, or a directory of versioned artifacts (the newest is used)
                        (default: RMBERT_MODEL_DIR, else the package's models/medical)
  --engine E            auto | onnx | tfjs (default: RMBERT_ENGINE, else auto)
  --kg-file FILE        knowledge graph, subject<TAB>relation<TAB>object lines
                        (default: RMBERT_KG_FILE, else the package's data/kg/Medical.spo)
  --no-kg               no knowledge graph (the model still runs; nothing is injected)
  --assertion-lexicon F extra assertion trigger lexicon (TSV, the columns of data/assertion/triggers.tsv),
                        on top of the shipped one (default: RMBERT_ASSERTION_LEXICON)
  --no-assertion        do not assess entities ("assertion": null)
  --per-line            treat every line of the FILEs as a document, like stdin
  --batch-size N        documents per batch through the model (default 32); a batch also closes when
                        the input pauses for 0.2 s, and after every line typed at a terminal
  --max-text-chars N    longest text accepted (default 100000)
  --no-progress         no progress bar on stderr
  -h, --help            this text

exit status: 0 done (documents that could not be annotated are reported in the output), 1 failed
(e.g. no model), 2 bad usage.
`;

/** A pause in the input this long answers what is pending (see withIdleMarks). */
const STDIN_IDLE_MS = 200;

interface InputDoc {
  doc: Document;
  /** The bytes were not valid UTF-8: answered with an error line, never annotated as replaced text. */
  invalid?: InvalidTextError;
}

function toDocument(raw: string, fallbackId: string): Document {
  let text = raw;
  let id = fallbackId;
  const trimmed = raw.trim();
  if (trimmed.startsWith('{')) {
    try {
      const obj = JSON.parse(trimmed) as { text?: unknown; id?: unknown };
      if (typeof obj.text === 'string') {
        text = obj.text;
        if (typeof obj.id === 'string' && obj.id) id = obj.id;
      }
    } catch {
      // Not JSON: the line is text.
    }
  }
  return { id, sourceSystem: 'rmbert-annotate', patientRef: '', text, language: 'zh', createdAt: Date.now(), section: null };
}

/** Marks a pause in the input: what is pending should be answered now rather than wait for a full batch. */
const IDLE = Symbol('idle');

/**
 * The items of `source`, with IDLE whenever the next item has not come within `idleMs`. Input that
 * arrives quickly (a pipe, a file) still fills whole batches; a person typing, or a slow producer,
 * gets each answer as soon as they pause.
 */
export async function* withIdleMarks<T>(source: AsyncIterable<T>, idleMs: number): AsyncGenerator<T | typeof IDLE> {
  const it = source[Symbol.asyncIterator]();
  for (;;) {
    const next = it.next();
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<typeof IDLE>((resolve) => {
      timer = setTimeout(() => resolve(IDLE), idleMs);
    });
    let result = await Promise.race([next, idle]);
    clearTimeout(timer);
    if (result === IDLE) {
      yield IDLE;
      result = await next;
    }
    if (result.done) return;
    yield result.value;
  }
}

/**
 * Byte offset where the first ill-formed UTF-8 sequence starts (a sequence cut short counts from its
 * lead byte), or -1 when the bytes are valid. Byte by byte only for input already known to be invalid.
 */
export function invalidUtf8Offset(bytes: Uint8Array): number {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return -1;
  } catch {
    const decoder = new TextDecoder('utf-8', { fatal: true });
    // Where the last complete character ended: the decoder outputs nothing while a sequence is open.
    let boundary = 0;
    for (let i = 0; i < bytes.length; i++) {
      try {
        if (decoder.decode(bytes.subarray(i, i + 1), { stream: true }).length > 0) boundary = i + 1;
      } catch {
        return boundary;
      }
    }
    return boundary;
  }
}

/**
 * One document from its bytes. A lenient decode would turn invalid bytes into U+FFFD, which is valid
 * text, and annotate a document nobody wrote; the bytes are checked instead and the document answered
 * with an InvalidTextError line, like the stage's dead letter for the same input.
 */
function fromBytes(bytes: Uint8Array, id: string, where: string): InputDoc {
  const bad = invalidUtf8Offset(bytes);
  // ignoreBOM keeps a leading U+FEFF in the text, as the lenient read before did, so offsets still count it.
  const text = bad < 0 ? new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes) : '';
  const doc = toDocument(text, id);
  if (bad < 0) return { doc };
  return { doc, invalid: new InvalidTextError(`${where} is not valid UTF-8 (invalid byte at byte offset ${bad})`) };
}

const NEWLINE = 0x0a;
const CR = 0x0d;

/** The lines of a byte stream (LF or CRLF), as bytes, each as soon as its newline arrives. */
async function* byteLines(chunks: AsyncIterable<Buffer> | Iterable<Buffer>): AsyncGenerator<Buffer> {
  let rest: Buffer = Buffer.alloc(0);
  for await (const chunk of chunks) {
    let buf = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk;
    let at = buf.indexOf(NEWLINE);
    while (at >= 0) {
      yield buf.subarray(0, at > 0 && buf[at - 1] === CR ? at - 1 : at);
      buf = buf.subarray(at + 1);
      at = buf.indexOf(NEWLINE);
    }
    rest = Buffer.from(buf);
  }
  if (rest.length > 0) yield rest[rest.length - 1] === CR ? rest.subarray(0, rest.length - 1) : rest;
}

/** Blank lines are skipped; the test needs no decoding (ASCII white space is the same bytes in any case). */
const isBlankLine = (bytes: Uint8Array): boolean => bytes.every((b) => b === 0x20 || b === 0x09 || b === CR || b === 0x0b || b === 0x0c);

async function* readInputs(files: string[], perLine: boolean): AsyncGenerator<InputDoc> {
  if (files.length === 0) {
    let n = 0;
    for await (const line of byteLines(process.stdin)) {
      n++;
      if (!isBlankLine(line)) yield fromBytes(line, `stdin:${n}`, `stdin line ${n}`);
    }
    return;
  }
  for (const file of files) {
    const content = await readFile(file);
    if (!perLine) {
      yield fromBytes(content, file, `file ${file}`);
      continue;
    }
    let n = 0;
    for await (const line of byteLines([content])) {
      n++;
      if (!isBlankLine(line)) yield fromBytes(line, `${file}:${n}`, `${file} line ${n}`);
    }
  }
}

/** The JSON form of an entity's assertion: null when not assessed (assertions off). */
function assertionJson(a: EntityAssertion | undefined): EntityAssertion | null {
  return a === undefined ? null : a;
}

function render(outcome: Outcome, doc: Document): string {
  if (!outcome.ok) return JSON.stringify({ id: doc.id, error: { class: outcome.error.name, message: outcome.error.message } });
  const a = outcome.annotation;
  return JSON.stringify({
    id: a.documentId,
    modelVersion: a.modelVersion,
    kgVersion: a.kgVersion,
    engine: a.engine,
    entities: a.entities.map((e) => ({ start: e.start, end: e.end, text: e.text, type: e.type, score: Math.round(e.score * 10_000) / 10_000, linked: e.linked, assertion: assertionJson(e.assertion) })),
    kgDegraded: a.kgDegraded,
    truncated: a.truncated,
    windowed: a.windowed,
  });
}

function usageError(message: string): number {
  console.error(`rmbert annotate: ${message}\nRun \`rmbert annotate --help\` for the options.`);
  return 2;
}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'model-dir': { type: 'string' },
        engine: { type: 'string' },
        'kg-file': { type: 'string' },
        'no-kg': { type: 'boolean', default: false },
        'assertion-lexicon': { type: 'string' },
        'no-assertion': { type: 'boolean', default: false },
        'per-line': { type: 'boolean', default: false },
        'batch-size': { type: 'string', default: '32' },
        'max-text-chars': { type: 'string' },
        'no-progress': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    return usageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const batchSize = Number(values['batch-size']);
  if (!Number.isInteger(batchSize) || batchSize < 1) return usageError(`--batch-size must be a positive integer (got "${values['batch-size']}")`);

  let config;
  try {
    // The stage's settings schema in embedded mode: RMBERT_MODEL_DIR, RMBERT_ENGINE and RMBERT_KG_FILE apply here too.
    config = loadConfig(
      flagValues({
        'model-dir': values['model-dir'],
        engine: values.engine,
        'kg-file': values['kg-file'],
        'max-text-chars': values['max-text-chars'],
        'no-kg': values['no-kg'],
        'assertion-lexicon': values['assertion-lexicon'],
        'no-assertion': values['no-assertion'],
      }),
      { embedded: true },
    );
  } catch (error) {
    if (error instanceof ConfigError) return usageError(error.problems.join('; '));
    throw error;
  }

  const logger = createJsonLogger({ level: 'warn', sink: (l) => process.stderr.write(`${l}\n`) });
  let assertions;
  try {
    assertions = createAssertionAssessor(config.assertion, logger);
  } catch (error) {
    if (error instanceof ConfigError) return usageError(error.problems.join('; '));
    throw error;
  }
  const entry = await modelDirectoryCatalog(config.model.dir).latest();
  if (!entry) {
    console.error(`rmbert annotate: no model artifact in ${config.model.dir}; pass --model-dir (an artifact directory with manifest.json) or set RMBERT_MODEL_DIR`);
    return 1;
  }
  let model: ModelRuntime;
  let knowledge: GraphKnowledge | null = null;
  let gate: KnowledgeGate | null = null;
  try {
    model = await createModelLoader({ engine: config.model.engine, logger }).load({ location: entry.location, sha256: entry.sha256, reason: 'startup' });
    if (config.knowledge.enabled) {
      knowledge = await openKnowledge(config, logger);
      gate = new KnowledgeGate(knowledge, { retryInitialMs: 1000, retryMaxMs: 1000, logger, metrics: NO_STAGE_METRICS });
    }
  } catch (error) {
    if (error instanceof RmBertError) {
      console.error(`rmbert annotate: ${error.message}`);
      return 1;
    }
    throw error;
  }
  const processor = new BatchProcessor({ knowledge: gate, limits: { maxTextChars: config.maxTextChars }, metrics: NO_STAGE_METRICS, logger, assertions });
  const showBar = !values['no-progress'] && positionals.length > 1 && process.stderr.isTTY;
  const bar = showBar ? new SingleBar({ stream: process.stderr, format: 'annotate [{bar}] {value}/{total} files | {duration}s', hideCursor: true }) : null;
  bar?.start(positionals.length, 0);
  let done = 0;
  let failed = 0;
  try {
    let pending: InputDoc[] = [];
    const flush = async () => {
      if (pending.length === 0) return;
      const valid = pending.filter((p) => p.invalid === undefined).map((p) => p.doc);
      const processed = valid.length > 0 ? (await processor.process(valid, model)).outcomes : [];
      let k = 0;
      // Input order is kept: undecodable documents answer in their place.
      const outcomes = pending.map((p): Outcome => (p.invalid ? { ok: false, error: p.invalid, stage: 'validate' } : processed[k++]));
      const out = outcomes.map((o, i) => render(o, pending[i].doc)).join('\n');
      failed += outcomes.filter((o) => !o.ok).length;
      done += pending.length;
      process.stdout.write(`${out}\n`);
      if (!values['per-line']) bar?.update(done);
      pending = [];
    };
    const interactive = positionals.length === 0 && process.stdin.isTTY === true;
    if (interactive) console.error('rmbert annotate: reading documents from the terminal, one per line (Ctrl-D ends)');
    try {
      const inputs = readInputs(positionals, values['per-line']);
      for await (const item of positionals.length === 0 ? withIdleMarks(inputs, STDIN_IDLE_MS) : inputs) {
        if (item === IDLE) {
          await flush();
          continue;
        }
        pending.push(item);
        if (pending.length >= batchSize || interactive) await flush();
      }
    } catch (error) {
      await flush();
      const e = error as NodeJS.ErrnoException;
      console.error(`rmbert annotate: cannot read input: ${safeErrorMessage(e)}`);
      return 1;
    }
    await flush();
  } finally {
    bar?.stop();
    await gate?.close();
    await knowledge?.close();
    await model.dispose();
  }
  if (failed > 0) console.error(`rmbert annotate: ${done} documents, ${failed} could not be annotated (see their "error" lines)`);
  return 0;
}
