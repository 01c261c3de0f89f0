/**
 * `rmbert demo`: the whole stage end to end on the local servers. Loads the bundled graph into Neo4j
 * (skipped when the same version is already there), creates this run's topics, produces the sample
 * EMR records, runs the stage in this process until every record has its result, prints the entities,
 * stops the stage and deletes the run's topics. scripts/demo.sh (npm run demo) starts the servers
 * first when they are not running and stops them again afterwards.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, flagValues, configFlagOptions, isolatedRunOverrides, PACKAGE_ROOT, type StageConfig } from '../../config/index.ts';
import type { Document } from '../../domain/index.ts';
import { ConfigError, RmBertError } from '../../errors/index.ts';
import { kgVersionOf, loadSpoFile, Neo4jKnowledgeGraph, readSpoFile } from '../../knowledge/index.ts';
import { createJsonLogger } from '../../pipeline/logging.ts';
import type { DeadLetterRecord, EntityAnnotationsRecord } from '../../stream/codecs.ts';
import { StreamClient } from '../../stream/client.ts';
import { probeBrokers } from '../../stream/probe.ts';
import { writeDemoArtifact } from '../demo-model.ts';
import { modelDirectoryCatalog } from '../stage-wiring.ts';
import { startServe } from './serve.ts';

export const summary = 'run the stage end to end on the local Kafka and Neo4j with the sample EMR records (npm run demo)';

const HELP = `usage: rmbert demo [options]

Runs the streaming stage end to end on the local servers (scripts/infra.sh up; \`npm run demo\` starts
and stops them for you): loads the bundled knowledge graph into Neo4j, creates topics for this run,
produces the sample EMR records, runs the stage until each record has its EntityAnnotations (or dead
letter), prints the entities, stops the stage and deletes the run's topics.

options:
  --samples FILE     EmrDocument records, one JSON object per line (default data/samples/emr-samples.jsonl)
  --model-dir DIR    model artifact (default: RMBERT_MODEL_DIR, else models/medical). Without a trained
                     model the demo runs on a small random-weight model and says so: its entities are noise.
  --kg-file FILE     graph to load (default: RMBERT_KG_FILE, else data/kg/Medical.spo)
  --json             print the EntityAnnotations records as JSON lines instead of the readable listing
  --timeout-s N      give up waiting for results after N seconds (default 180)
  -h, --help         this text

The stage settings (brokers, Neo4j address and credentials, engine, ...) come from the environment
variables and flags of \`rmbert serve\`, whose defaults are the local servers' addresses and password.
`;

async function readSamples(file: string): Promise<Document[]> {
  const lines = (await readFile(file, 'utf8')).split('\n').filter((l) => l.trim());
  return lines.map((line, i) => {
    const d = JSON.parse(line) as Partial<Document>;
    if (typeof d.id !== 'string' || typeof d.text !== 'string') throw new RmBertError(`${file}:${i + 1}: a sample needs "id" and "text"`);
    return {
      id: d.id,
      sourceSystem: d.sourceSystem ?? 'demo',
      patientRef: d.patientRef ?? `demo-${i}`,
      text: d.text,
      language: d.language ?? 'zh',
      createdAt: d.createdAt ?? Date.now(),
      section: d.section ?? null,
    };
  });
}

/** Loads the graph file into Neo4j unless the graph already holds exactly that version. */
async function ensureGraph(config: StageConfig, file: string): Promise<string> {
  const graph = new Neo4jKnowledgeGraph({ uri: config.neo4j.uri, user: config.neo4j.user, password: config.neo4j.password, graphName: config.knowledge.graphName });
  try {
    await graph.init();
    const triples = [];
    for await (const chunk of readSpoFile(file)) triples.push(...chunk.triples);
    const fileVersion = kgVersionOf(triples);
    const stamp = await graph.stamp();
    if (stamp?.version === fileVersion) {
      console.error(`demo: graph "${graph.graphName}" already holds ${path.basename(file)} (version ${fileVersion.slice(0, 12)})`);
      return fileVersion;
    }
    console.error(`demo: loading ${file} into Neo4j graph "${graph.graphName}"...`);
    const report = await loadSpoFile(file, graph, { replace: true });
    console.error(`demo: ${report.stamp.triples} triples loaded in ${(report.elapsedMs / 1000).toFixed(1)} s`);
    return report.stamp.version;
  } finally {
    await graph.close();
  }
}

/**
 * A short marker of what the text asserts about an entity, e.g. [absent, historical: 否认 病史]; empty
 * when nothing differs from present/certain/current/patient or when it was not assessed (null).
 */
export function assertionMarker(a: EntityAnnotationsRecord['entities'][number]['assertion']): string {
  if (!a) return '';
  const values = [
    a.polarity === 'absent' ? 'absent' : '',
    a.certainty === 'possible' ? 'possible' : '',
    a.temporality === 'historical' ? 'historical' : '',
    a.experiencer === 'other' ? 'other experiencer' : '',
  ].filter(Boolean);
  if (values.length === 0) return '';
  const triggers = [...new Set(a.triggers.map((t) => t.text))];
  return ` [${values.join(', ')}${triggers.length ? `: ${triggers.join(' ')}` : ''}]`;
}

function readable(doc: Document, a: EntityAnnotationsRecord): string {
  const lines = [`${doc.id}${doc.section ? ` [${doc.section}]` : ''}  ${doc.text}`];
  if (a.entities.length === 0) lines.push('    (no entities)');
  for (const e of a.entities) {
    const linked = e.linked.length ? `  KG: ${e.linked.map((l) => `${l.relation} ${l.object}`).join(', ')}` : '';
    lines.push(`    ${String(e.start).padStart(3)}-${String(e.end).padEnd(3)} ${e.type.padEnd(9)} ${e.text}${assertionMarker(e.assertion)}  (${e.score.toFixed(2)})${linked}`);
  }
  const flags = [a.kgDegraded ? 'kgDegraded' : '', a.windowed ? 'windowed' : '', a.truncated ? 'knowledge truncated' : ''].filter(Boolean);
  if (flags.length) lines.push(`    flags: ${flags.join(', ')}`);
  return lines.join('\n');
}

export async function run(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: argv,
      options: {
        ...configFlagOptions(),
        samples: { type: 'string' },
        json: { type: 'boolean' },
        'timeout-s': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values as Record<string, string | boolean | undefined>;
  } catch (error) {
    console.error(`rmbert demo: ${(error as Error).message}\nRun \`rmbert demo --help\` for the options.`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const timeoutMs = Number(values['timeout-s'] ?? 180) * 1000;
  if (!(timeoutMs > 0)) {
    console.error('rmbert demo: --timeout-s must be a positive number');
    return 2;
  }
  const runId = `rmbert-demo-${Date.now().toString(36)}`;
  let config: StageConfig;
  try {
    config = loadConfig(flagValues(values), {
      ...isolatedRunOverrides(runId),
      'metrics.port': 0,
      'metrics.host': '127.0.0.1',
    });
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`rmbert demo: ${error.message}`);
      return 2;
    }
    throw error;
  }
  const samplesFile = (values.samples as string | undefined) ?? path.join(PACKAGE_ROOT, 'data/samples/emr-samples.jsonl');
  const samples = await readSamples(samplesFile);

  // Without a trained model the demo still runs end to end, on a random-weight one, and says so.
  let scratch: string | null = null;
  if (!(await modelDirectoryCatalog(config.model.dir).latest())) {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'rmbert-demo-model-'));
    console.error(`demo: no trained model in ${config.model.dir}; using a small RANDOM-WEIGHT model: the entities below are noise.`);
    console.error('demo: train one (rmbert finetune) or point RMBERT_MODEL_DIR at an artifact for real results.');
    await writeDemoArtifact(path.join(scratch, 'random'));
    config = { ...config, model: { ...config.model, dir: scratch } };
  }

  const logger = createJsonLogger({ level: 'warn', sink: (l) => process.stderr.write(`${l}\n`) });
  const client = new StreamClient(config, logger);
  let session: Awaited<ReturnType<typeof startServe>> | null = null;
  // Cleaning up after a broker that never answered would wait out kafkajs's retries again.
  let topicsCreated = false;
  try {
    // Before anything waits out kafkajs's retries on a broker that is not there.
    await probeBrokers(config.kafka, logger);
    if (config.knowledge.enabled && !config.embedded) await ensureGraph(config, config.knowledge.kgFile);
    await client.createTopics();
    topicsCreated = true;
    session = await startServe(config, logger);
    const serving = session.stage.models.current;
    console.error(`demo: stage running (model ${serving.version.name}+${serving.version.hash}, engine ${serving.engine}; metrics ${session.server.url}/metrics)`);

    const results = new Map<string, EntityAnnotationsRecord>();
    const dead: DeadLetterRecord[] = [];
    await client.readAnnotations((r) => results.set(r.record.documentId, r.record));
    await client.readDeadLetters((r) => dead.push(r.record));
    const started = Date.now();
    await client.produceDocuments(samples);
    console.error(`demo: produced ${samples.length} records to ${config.topics.input}; waiting for the results...`);
    while (results.size + dead.length < samples.length && Date.now() - started < timeoutMs) await new Promise((r) => setTimeout(r, 100));
    const elapsed = Date.now() - started;

    if (values.json) {
      for (const d of samples) if (results.has(d.id)) console.log(JSON.stringify(results.get(d.id)));
    } else {
      console.log('');
      for (const d of samples) {
        const a = results.get(d.id);
        if (a) console.log(`${readable(d, a)}\n`);
      }
      const first = results.values().next().value as EntityAnnotationsRecord | undefined;
      if (first) console.log(`model ${first.modelVersion}, engine ${first.engine}, knowledge graph ${first.kgVersion ? first.kgVersion.slice(0, 12) : '(none)'}`);
    }
    for (const d of dead) console.error(`demo: dead-lettered offset ${d.sourceOffset}: ${d.errorClass}: ${d.message}`);
    const complete = results.size + dead.length >= samples.length;
    console.error(`demo: ${results.size} annotated, ${dead.length} dead-lettered, ${samples.length} produced, in ${(elapsed / 1000).toFixed(1)} s`);
    if (!complete) console.error(`demo: timed out after ${timeoutMs / 1000} s waiting for results`);
    return complete ? 0 : 1;
  } catch (error) {
    if (error instanceof RmBertError) {
      console.error(`rmbert demo: ${error.message}`);
      if (/unavailable|ECONNREFUSED|connect/i.test(error.message)) console.error('demo: are the servers up? Run `bash scripts/infra.sh up` (npm run demo does it for you).');
      return error instanceof ConfigError ? 2 : 1;
    }
    throw error;
  } finally {
    if (session) {
      const { clean } = await session.stop();
      console.error(`demo: stage stopped${clean ? '' : ' (not cleanly)'}`);
    }
    await client.stopReading();
    if (topicsCreated) await client.deleteTopics().catch(() => undefined);
    await client.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

