/**
 * `rmbert send`: one or a few documents into a running stage, their entities back. Produces
 * EmrDocument records to the input topic and prints the EntityAnnotations records the stage commits
 * for them on the output topic: a way to try a deployed stage from a terminal.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { configFlagOptions, flagValues, loadConfig, type StageConfig } from '../../config/index.ts';
import type { Document } from '../../domain/index.ts';
import { ConfigError, RmBertError } from '../../errors/index.ts';
import { createJsonLogger } from '../../pipeline/logging.ts';
import type { EntityAnnotationsRecord } from '../../stream/codecs.ts';
import { StreamClient } from '../../stream/client.ts';
import { probeBrokers } from '../../stream/probe.ts';

export const summary = 'send documents (stdin lines) to a running stage\'s input topic and print their entities from its output topic';

const HELP = `usage: rmbert send [options] < documents

Reads documents from stdin, one per non-empty line: plain text, or a JSON object with "text" and
optionally "id", "sourceSystem", "patientRef", "section", "createdAt" (e.g. a line of
data/samples/emr-samples.jsonl). Produces them as EmrDocument records to the input topic of a running
\`rmbert serve\`, then prints each document's EntityAnnotations record from the output topic as one JSON
line, as the stage committed it. A line without an id gets a fresh one (send-<time>-<n>); a reused id
may be answered by an earlier result for it.

The Kafka connection and topics are \`rmbert serve\`'s settings (RMBERT_KAFKA_BROKERS, RMBERT_INPUT_TOPIC,
RMBERT_OUTPUT_TOPIC, ... or their flags; \`rmbert serve --help\` lists them), so the defaults reach a stage
started with its defaults on the local servers (scripts/infra.sh).

options:
  --timeout-s N      give up waiting after N seconds, for the stage's topics to exist and then for the
                     entities (default 60)
  -h, --help         this text
  (and every option of rmbert serve)

exit status: 0 every document answered, 1 failed or timed out (a document the stage could not read goes
to the dead-letter topic instead: see RMBERT_DLQ_TOPIC), 2 bad usage or configuration.
`;

function toDocument(line: string, fallbackId: string): Document {
  let fields: Partial<Document> & { text?: unknown } = { text: line };
  const trimmed = line.trim();
  if (trimmed.startsWith('{')) {
    try {
      const parsed = JSON.parse(trimmed) as Partial<Document>;
      if (typeof parsed.text === 'string') fields = parsed;
    } catch {
      // Not JSON: the line is the text.
    }
  }
  return {
    id: typeof fields.id === 'string' && fields.id ? fields.id : fallbackId,
    sourceSystem: fields.sourceSystem ?? 'rmbert-send',
    patientRef: fields.patientRef ?? '',
    text: String(fields.text),
    language: fields.language ?? 'zh',
    createdAt: fields.createdAt ?? Date.now(),
    section: fields.section ?? null,
  };
}

async function readStdinDocuments(): Promise<Document[]> {
  const run = `send-${Date.now().toString(36)}`;
  const docs: Document[] = [];
  let n = 0;
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    n++;
    if (line.trim()) docs.push(toDocument(line, `${run}-${n}`));
  }
  return docs;
}

/** The topics among `topics` that still do not exist after `timeoutMs`. */
async function waitForTopics(client: StreamClient, topics: readonly string[], timeoutMs: number): Promise<string[]> {
  const admin = client.kafka.admin();
  await admin.connect();
  try {
    const until = Date.now() + timeoutMs;
    let said = false;
    for (;;) {
      const existing = new Set(await admin.listTopics());
      const absent = topics.filter((t) => !existing.has(t));
      if (absent.length === 0 || Date.now() >= until) return absent;
      if (!said) console.error(`rmbert send: waiting for ${absent.join(' and ')} (created by \`rmbert serve\` as it starts)...`);
      said = true;
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await admin.disconnect();
  }
}

export async function run(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options: { ...configFlagOptions(), 'timeout-s': { type: 'string' }, help: { type: 'boolean', short: 'h' } } }).values as Record<
      string,
      string | boolean | undefined
    >;
  } catch (error) {
    console.error(`rmbert send: ${(error as Error).message}\nRun \`rmbert send --help\` for the options.`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const timeoutMs = Number(values['timeout-s'] ?? 60) * 1000;
  if (!(timeoutMs > 0)) {
    console.error('rmbert send: --timeout-s must be a positive number');
    return 2;
  }
  let config: StageConfig;
  try {
    config = loadConfig(flagValues(values));
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`rmbert send: ${error.message}`);
      return 2;
    }
    throw error;
  }
  if (process.stdin.isTTY) console.error('rmbert send: reading documents from the terminal, one per line (Ctrl-D sends them)');
  const docs = await readStdinDocuments();
  if (docs.length === 0) {
    console.error('rmbert send: no documents on stdin');
    return 2;
  }

  const logger = createJsonLogger({ level: 'error', sink: (l) => process.stderr.write(`${l}\n`) });
  const client = new StreamClient(config, logger);
  try {
    await probeBrokers(config.kafka, logger);
    // The stage creates its topics as it starts (brokers need not auto-create them): a stage started a
    // moment ago gets the time it needs, and a missing one is named instead of kafkajs retrying a send.
    const started = Date.now();
    const absent = await waitForTopics(client, [config.topics.input, config.topics.output], timeoutMs);
    if (absent.length > 0) {
      console.error(`rmbert send: topic ${absent.join(' and ')} does not exist after ${timeoutMs / 1000} s: start \`rmbert serve\` with the same settings (it creates its topics)`);
      return 1;
    }
    const wanted = new Set(docs.map((d) => d.id));
    // A document's entities may come in several records (parts) when they are too large for one.
    const received = new Map<string, EntityAnnotationsRecord[]>();
    const complete = () => [...wanted].every((id) => {
      const records = received.get(id);
      return records !== undefined && records.length >= ((records[0] as { parts?: number }).parts ?? 1);
    });
    await client.readAnnotations((r) => {
      if (!wanted.has(r.record.documentId)) return;
      const records = received.get(r.record.documentId) ?? [];
      records.push(r.record);
      received.set(r.record.documentId, records);
    });
    await client.produceDocuments(docs);
    console.error(`rmbert send: ${docs.length} document(s) sent to ${config.topics.input}; waiting for their entities on ${config.topics.output}...`);
    while (!complete() && Date.now() - started < timeoutMs) await new Promise((r) => setTimeout(r, 100));
    for (const d of docs) for (const record of received.get(d.id) ?? []) console.log(JSON.stringify(record));
    const missing = docs.filter((d) => !received.has(d.id));
    if (missing.length > 0) {
      console.error(
        `rmbert send: no entities after ${timeoutMs / 1000} s for ${missing.length} document(s) (${missing.map((d) => d.id).slice(0, 5).join(', ')}). ` +
          `Is \`rmbert serve\` running on the same topics? A document it could not read is on ${config.topics.deadLetter}.`,
      );
      return 1;
    }
    return 0;
  } catch (error) {
    if (error instanceof RmBertError) {
      console.error(`rmbert send: ${error.message}`);
      return error instanceof ConfigError ? 2 : 1;
    }
    console.error(`rmbert send: ${error instanceof Error ? error.message : String(error)} (does ${config.topics.input} exist? \`rmbert serve\` creates its topics at start)`);
    return 1;
  } finally {
    await client.close();
  }
}
