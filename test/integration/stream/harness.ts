/**
 * Test harness for the stage against the real Kafka and Neo4j: unique topics, group and graph per
 * test, a random-weight (or the trained) model artifact, a producer of EmrDocument records and a
 * read_committed collector of the output and dead-letter topics.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Kafka, logLevel, Partitioners, type Consumer, type Producer } from 'kafkajs';
import { buildConfig, type StageConfig } from '../../../src/config/index.ts';
import type { Document, Triple } from '../../../src/domain/index.ts';
import { loadSpoFile, Neo4jKnowledgeGraph } from '../../../src/knowledge/index.ts';
import { createJsonLogger } from '../../../src/pipeline/logging.ts';
import type { InjectedSentence, } from '../../../src/domain/index.ts';
import { delegatingModel } from '../../../src/pipeline/ports.ts';
import type { Logger, ModelLoader } from '../../../src/pipeline/ports.ts';
import { codecs, type DeadLetterRecord, type EntityAnnotationsRecord } from '../../../src/stream/codecs.ts';
import { toEmrDocumentRecord } from '../../../src/stream/records.ts';
import { KAFKA_BROKERS, NEO4J_PASSWORD, NEO4J_URI, NEO4J_USER } from '../../helpers/infra.ts';
import { uniqueName } from '../../helpers/names.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';

export const SAMPLES_FILE = path.join(REPO_ROOT, 'data/samples/emr-samples.jsonl');
export const KG_FILE = path.join(REPO_ROOT, 'data/kg/Medical.spo');

export async function sampleDocuments(): Promise<Document[]> {
  return (await readFile(SAMPLES_FILE, 'utf8'))
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Document);
}

export interface TestNames {
  input: string;
  output: string;
  deadLetter: string;
  feedback: string;
  modelUpdates: string;
  group: string;
  graph: string;
}

export function testNames(prefix: string): TestNames {
  const base = uniqueName(prefix);
  return {
    input: `${base}.documents`,
    output: `${base}.entities`,
    deadLetter: `${base}.dlq`,
    feedback: `${base}.feedback`,
    modelUpdates: `${base}.model-updates`,
    group: `${base}.group`,
    graph: base,
  };
}

export function stageConfig(names: TestNames, modelDir: string, overrides: Record<string, string | number | boolean | readonly string[]> = {}): StageConfig {
  return buildConfig({
    env: {},
    overrides: {
      'kafka.brokers': KAFKA_BROKERS,
      'kafka.retries': 5,
      'kafka.initialRetryMs': 100,
      'kafka.maxRetryMs': 2000,
      'kafka.sessionTimeoutMs': 10_000,
      'topics.input': names.input,
      'topics.output': names.output,
      'topics.deadLetter': names.deadLetter,
      'topics.feedback': names.feedback,
      'topics.modelUpdates': names.modelUpdates,
      groupId: names.group,
      transactionalIdPrefix: names.group,
      topicPartitions: 2,
      'neo4j.uri': NEO4J_URI,
      'neo4j.user': NEO4J_USER,
      'neo4j.password': NEO4J_PASSWORD,
      'knowledge.graphName': names.graph,
      'knowledge.retryInitialMs': 200,
      'knowledge.retryMaxMs': 1000,
      'knowledge.versionPollMs': 0,
      'batch.maxRecords': 8,
      'batch.maxWaitMs': 20,
      'model.dir': modelDir,
      'model.engine': 'onnx',
      'model.pollIntervalMs': 0,
      'metrics.port': 0,
      'metrics.host': '127.0.0.1',
      shutdownDeadlineMs: 20_000,
      instanceId: names.group,
      ...overrides,
    },
  });
}

/** Triples of Medical.spo whose subject occurs in the texts, plus a slice of the rest, as a small test graph file. */
export async function writeTestGraph(texts: readonly string[], file: string, extra = 300): Promise<Triple[]> {
  const lines = (await readFile(KG_FILE, 'utf8')).split('\n').filter((l) => l.trim());
  const chosen: string[] = [];
  lines.forEach((line, i) => {
    const subject = line.split('\t')[0];
    if (texts.some((t) => t.includes(subject)) || i % Math.max(1, Math.floor(lines.length / extra)) === 0) chosen.push(line);
  });
  await writeFile(file, `${chosen.join('\n')}\n`);
  return chosen.map((l) => {
    const [subject, relation, object] = l.split('\t');
    return { subject, relation, object };
  });
}

export async function loadTestGraph(names: TestNames, texts: readonly string[], dir: string): Promise<{ graph: Neo4jKnowledgeGraph; triples: Triple[]; drop(): Promise<void> }> {
  const file = path.join(dir, 'graph.spo');
  const triples = await writeTestGraph(texts, file);
  const graph = new Neo4jKnowledgeGraph({ uri: NEO4J_URI, user: NEO4J_USER, password: NEO4J_PASSWORD, graphName: names.graph });
  await graph.init();
  await loadSpoFile(file, graph, { replace: true });
  return {
    graph,
    triples,
    async drop() {
      await graph.clear().catch(() => undefined);
      await graph.close();
    },
  };
}

export function testKafka(): Kafka {
  return new Kafka({ clientId: 'rmbert-test', brokers: KAFKA_BROKERS, logLevel: logLevel.NOTHING, retry: { retries: 5 } });
}

export class TestProducer {
  private constructor(private readonly producer: Producer) {}
  static async connect(kafka: Kafka): Promise<TestProducer> {
    const p = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
    await p.connect();
    return new TestProducer(p);
  }
  async documents(topic: string, docs: readonly Document[]): Promise<void> {
    await this.raw(topic, docs.map((d) => ({ key: d.id, value: codecs().emrDocument.encode(toEmrDocumentRecord(d)) })));
  }
  async raw(topic: string, messages: { key: string | null; value: Buffer | null }[]): Promise<void> {
    await this.producer.send({ topic, messages, acks: -1 });
  }
  async close(): Promise<void> {
    await this.producer.disconnect();
  }
}

export interface Collected<T> {
  record: T;
  key: string | null;
  partition: number;
  offset: string;
}

/** Reads a topic from the beginning with isolation read_committed, decoding every record. */
export class Collector<T> {
  readonly items: Collected<T>[] = [];
  private constructor(private readonly consumer: Consumer) {}

  static async start<T>(kafka: Kafka, topic: string, decode: (b: Buffer) => T): Promise<Collector<T>> {
    const consumer = kafka.consumer({ groupId: uniqueName('collector'), readUncommitted: false, maxWaitTimeInMs: 100 });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const c = new Collector<T>(consumer);
    await consumer.run({
      eachMessage: async ({ message, partition }) => {
        c.items.push({ record: decode(message.value!), key: message.key?.toString() ?? null, partition, offset: message.offset });
      },
    });
    return c;
  }

  async waitFor(count: number, timeoutMs = 60_000): Promise<Collected<T>[]> {
    const until = Date.now() + timeoutMs;
    while (this.items.length < count && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    return this.items;
  }

  async close(): Promise<void> {
    await this.consumer.disconnect();
  }
}

export const decodeAnnotations = (b: Buffer): EntityAnnotationsRecord => codecs().entityAnnotations.decode(b);
export const decodeDeadLetter = (b: Buffer): DeadLetterRecord => codecs().deadLetter.decode(b);

export async function tempDir(prefix: string): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `${prefix}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Logger that keeps every line (for the "no text in logs" check) and prints nothing. */
export function capturingLogger(lines: string[]): Logger {
  return createJsonLogger({ level: 'debug', sink: (l) => lines.push(l) });
}

/** A model loader whose models throw on any sentence containing `marker` (a poison document). */
export function poisoningLoader(inner: ModelLoader, marker: string): ModelLoader {
  return {
    async load(request) {
      const model = await inner.load(request);
      const poisoned = new WeakSet<InjectedSentence>();
      const wrapped = delegatingModel(model, {
        inject: (s, tokens, matches, triples) => {
          const result = model.inject(s, tokens, matches, triples);
          if (s.text.includes(marker)) for (const w of result.windows) poisoned.add(w);
          return result;
        },
        classify: async (sentences) => {
          if (sentences.some((s) => poisoned.has(s))) throw new RangeError('Attempt to access memory outside buffer bounds');
          return model.classify(sentences);
        },
      });
      return wrapped;
    },
  };
}

/**
 * A TCP relay in front of a server, so a test can cut the network path to it (connections reset,
 * new ones refused) and restore it, without stopping the shared server other tests use.
 */
export class TcpCut {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  async open(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  /** Drops every connection and stops accepting new ones (the port then refuses connections). */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async close(): Promise<void> {
    await this.cut();
  }
}

/** Creates the test's topics up front, so collectors can subscribe before the stage starts. */
export async function createTopics(kafka: Kafka, names: TestNames, partitions = 2): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: [names.input, names.output, names.deadLetter, names.feedback, names.modelUpdates].map((topic) => ({
        topic,
        numPartitions: topic === names.modelUpdates ? 1 : partitions,
        replicationFactor: 1,
      })),
    });
  } finally {
    await admin.disconnect();
  }
}
