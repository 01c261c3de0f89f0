/**
 * The long part of the reliability suite (issue 15): `rmbert serve` processes against the real local
 * Kafka (and, for the faults, private Kafka and Neo4j instances started by scripts/infra.sh on their
 * own ports), records counted by read_committed consumers.
 *
 *   node --import tsx benchmarks/reliability.ts [--only takeover,heavy,faults] [--quick]
 *
 * Sections:
 *   takeover  time from a member's SIGKILL to the first committed output of a partition it owned,
 *             (a) a restarted process taking over, (b) a surviving second member taking over, for
 *             several session timeouts
 *   heavy     latency of normal documents next to a stream of heavy ones (the heavy-document lane)
 *   faults    the fault suite: SIGKILL mid-transaction, broker stop/start, Neo4j stop/start, oversized
 *             and dense records, a generated hostile corpus; every input id counted in the outputs and
 *             the dead-letter topic
 *
 * Needs the local servers (bash scripts/infra.sh up). Writes benchmarks/results/reliability.json (and
 * .md); a run of some sections keeps the other sections' last results in the file.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { LOCAL_NEO4J_PASSWORD, buildConfig, type StageConfig } from '../src/config/index.ts';
import type { Document } from '../src/domain/index.ts';
import { SILENT_LOGGER } from '../src/pipeline/logging.ts';
import { StreamClient, type ReceivedRecord } from '../src/stream/client.ts';
import type { DeadLetterRecord, EntityAnnotationsRecord } from '../src/stream/codecs.ts';
import { Neo4jKnowledgeGraph, loadSpoFile } from '../src/knowledge/index.ts';
import { accountHostile, hostileCorpus, type Placed } from '../test/integration/harness/hostile.ts';
import { writeTestGraph } from '../test/integration/stream/harness.ts';
import { freePort, serveEnv, spawnServe, waitFor, waitReady, type ServeProcess } from '../test/integration/harness/serve.ts';
import { BROKERS, ROOT, loadAverage, machineDescription } from './engines-common.ts';

export const RESULTS = path.join(ROOT, 'benchmarks/results');
const RESULT_FILE = path.join(RESULTS, 'reliability.json');
const MODEL_DIR = path.join(ROOT, 'models/medical');
const SAMPLES_FILE = path.join(ROOT, 'data/samples/emr-samples.jsonl');

const execFileP = promisify(execFile);
const log = (line: string) => process.stderr.write(`reliability: ${line}\n`);
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function samples(): Document[] {
  return readFileSync(SAMPLES_FILE, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Document);
}

let runCounter = 0;
export function runNames(prefix: string) {
  const base = `rel-${prefix}-${Date.now().toString(36)}-${(runCounter++).toString(36)}`;
  return {
    input: `${base}.documents`,
    output: `${base}.entities`,
    deadLetter: `${base}.dlq`,
    feedback: `${base}.feedback`,
    modelUpdates: `${base}.model-updates`,
    group: `${base}.group`,
  };
}
export type RunNames = ReturnType<typeof runNames>;

/** A tools client (create/delete topics, produce, read_committed readers) on a run's topics. */
export function clientConfig(names: RunNames, brokers: readonly string[] = BROKERS, partitions = 4): StageConfig {
  return buildConfig({
    env: {},
    overrides: {
      'kafka.brokers': brokers,
      'topics.input': names.input,
      'topics.output': names.output,
      'topics.deadLetter': names.deadLetter,
      'topics.feedback': names.feedback,
      'topics.modelUpdates': names.modelUpdates,
      groupId: names.group,
      transactionalIdPrefix: names.group,
      topicPartitions: partitions,
      embedded: true,
    },
  });
}

/** Output and dead-letter records as a read_committed consumer sees them, with the time each arrived. */
export class Tally {
  readonly outputs: ReceivedRecord<EntityAnnotationsRecord>[] = [];
  readonly dead: ReceivedRecord<DeadLetterRecord>[] = [];
  /** Records already seen (partition:offset): a reader that rebalances reads some again; those are not duplicates in the topic. */
  private readonly seen = new Set<string>();
  static async start(client: StreamClient): Promise<Tally> {
    const t = new Tally();
    await client.readAnnotations((r) => {
      if (t.first(`o${r.partition}:${r.offset}`)) t.outputs.push(r);
    });
    await client.readDeadLetters((r) => {
      if (t.first(`d${r.partition}:${r.offset}`)) t.dead.push(r);
    });
    return t;
  }
  private first(at: string): boolean {
    if (this.seen.has(at)) return false;
    this.seen.add(at);
    return true;
  }
  /** The ids counted more than once, with where each copy is (for the log). */
  duplicates(): string[] {
    const where = new Map<string, string[]>();
    for (const o of this.outputs) {
      // A paged output counts once, by its part 0.
      if (o.record.part > 0) continue;
      where.set(o.record.documentId, [...(where.get(o.record.documentId) ?? []), `out ${o.partition}:${o.offset}`]);
    }
    for (const d of this.dead) where.set(d.key ?? '', [...(where.get(d.key ?? '') ?? []), `dlq ${d.partition}:${d.offset}`]);
    return [...where].filter(([, w]) => w.length > 1).map(([id, w]) => `${id} (${w.join(', ')})`);
  }
  /** Each id's count over outputs (part 0 of a paged output only) and dead letters. */
  counts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const o of this.outputs) {
      // A paged output counts once, by its part 0.
      if (o.record.part > 0) continue;
      counts.set(o.record.documentId, (counts.get(o.record.documentId) ?? 0) + 1);
    }
    for (const d of this.dead) counts.set(d.key ?? '', (counts.get(d.key ?? '') ?? 0) + 1);
    return counts;
  }
  /** Waits until `ids` all came out, then until nothing more arrives for `quietMs`. */
  async settle(ids: readonly string[], timeoutMs: number, quietMs = 3000): Promise<boolean> {
    const done = await waitFor('all ids out', () => ids.every((id) => this.counts().has(id)), timeoutMs, 250).then(
      () => true,
      () => false,
    );
    let last = -1;
    await waitFor('quiet', () => {
      const n = this.outputs.length + this.dead.length;
      const quiet = n === last;
      last = n;
      return quiet;
    }, 120_000, quietMs).catch(() => undefined);
    return done;
  }
  account(ids: readonly string[]): { recordsIn: number; lost: number; duplicated: number; unknown: number; deadLettered: number } {
    const counts = this.counts();
    const known = new Set(ids);
    return {
      recordsIn: ids.length,
      lost: ids.filter((id) => !counts.has(id)).length,
      duplicated: [...counts.values()].filter((n) => n > 1).length,
      unknown: [...counts.keys()].filter((id) => !known.has(id)).length,
      deadLettered: new Set(this.dead.map((d) => d.key)).size,
    };
  }
}

// ---------------------------------------------------------------- takeover

interface TakeoverRun {
  variant: 'restart' | 'survivor';
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** SIGKILL to the first committed output made after the kill in a partition the dead member owned. */
  takeoverSeconds: number | null;
  deadPartitions: number[];
  load1m: number;
  recordsIn: number;
  lost: number;
  duplicated: number;
}

async function takeoverRun(variant: 'restart' | 'survivor', sessionTimeoutMs: number, heartbeatIntervalMs: number): Promise<TakeoverRun> {
  const names = runNames(`takeover-${variant}-${sessionTimeoutMs}`);
  const config = clientConfig(names);
  const client = new StreamClient(config, SILENT_LOGGER);
  await client.createTopics(4);
  const tally = await Tally.start(client);
  const env = async (instance: string) =>
    serveEnv(names, {
      brokers: BROKERS,
      modelDir: MODEL_DIR,
      port: await freePort(),
      extra: {
        RMBERT_INSTANCE_ID: instance,
        RMBERT_KAFKA_SESSION_TIMEOUT_MS: String(sessionTimeoutMs),
        RMBERT_KAFKA_HEARTBEAT_INTERVAL_MS: String(heartbeatIntervalMs),
        RMBERT_MODEL_POLL_MS: '0',
      },
    });
  const partitionsOf = (s: ServeProcess) => ((s.logLines('joined consumer group').filter((l) => l.lane === 'normal').at(-1)?.partitions as number[] | undefined) ?? []).slice().sort();
  const procs: ServeProcess[] = [];
  const a = spawnServe(await env('a'));
  procs.push(a);
  const ids: string[] = [];
  let producing = true;
  let seq = 0;
  const docs = samples();
  const producer = (async () => {
    while (producing) {
      const batch = Array.from({ length: 8 }, () => ({ ...docs[seq % docs.length], id: `tk-${seq++}` }));
      await client.produceDocuments(batch);
      ids.push(...batch.map((d) => d.id));
      await sleep(100);
    }
  })();
  try {
    await waitReady(a);
    if (variant === 'survivor') {
      const b = spawnServe(await env('b'));
      procs.push(b);
      await waitReady(b);
      await waitFor('both members assigned', () => partitionsOf(a).length > 0 && partitionsOf(b).length > 0 && partitionsOf(a).length + partitionsOf(b).length === 4, 60_000);
    } else {
      await waitFor('A assigned', () => partitionsOf(a).length === 4, 60_000);
    }
    // Steady flow for a few seconds before the kill.
    await sleep(5000);
    const dead = partitionsOf(a);
    a.child.kill('SIGKILL');
    const killedAt = Date.now();
    await a.exited;
    if (variant === 'restart') {
      const a2 = spawnServe(await env('a2'));
      procs.push(a2);
    }
    let takeoverSeconds: number | null = null;
    await waitFor(
      'an output of the dead member\'s partitions',
      () => {
        // Output records carry the time their producer made them: after the kill, only the new owner's.
        const first = tally.outputs.find((o) => o.timestamp > killedAt && dead.includes(o.partition));
        if (first) takeoverSeconds = (first.receivedAt - killedAt) / 1000;
        return first !== undefined;
      },
      180_000,
      50,
    ).catch(() => undefined);
    const load1m = loadAverage()[0];
    producing = false;
    await producer;
    const settled = await tally.settle(ids, 120_000);
    if (!settled) log(`${variant} ${sessionTimeoutMs}: not every id came out`);
    const account = tally.account(ids);
    if (account.duplicated > 0) log(`duplicated: ${tally.duplicates().slice(0, 10).join('; ')}`);
    log(`${variant}, session ${sessionTimeoutMs} ms: takeover ${takeoverSeconds ?? 'none'} s (dead member had ${dead.join(',')}); ${account.recordsIn} in, ${account.lost} lost, ${account.duplicated} duplicated; load ${load1m}`);
    return { variant, sessionTimeoutMs, heartbeatIntervalMs, takeoverSeconds, deadPartitions: dead, load1m: round(load1m, 2), recordsIn: account.recordsIn, lost: account.lost, duplicated: account.duplicated };
  } finally {
    producing = false;
    await producer.catch(() => undefined);
    for (const p of procs) {
      if (p.child.exitCode === null && p.child.signalCode === null) {
        p.child.kill('SIGTERM');
        await Promise.race([p.exited, sleep(30_000)]);
        p.kill();
      }
    }
    await client.deleteTopics().catch(() => undefined);
    await client.close();
  }
}

async function takeoverSection(quick: boolean) {
  const settings: [number, number][] = quick ? [[10_000, 1000]] : [[30_000, 3000], [10_000, 1000], [6000, 500]];
  const runs: TakeoverRun[] = [];
  for (const [session, heartbeat] of settings) {
    for (const variant of ['restart', 'survivor'] as const) runs.push(await takeoverRun(variant, session, heartbeat));
  }
  const atDefault = runs.filter((r) => r.sessionTimeoutMs === 10_000 && r.takeoverSeconds !== null).map((r) => r.takeoverSeconds!);
  return {
    definition: 'SIGKILL of a member to the arrival at a read_committed consumer of the first output, made after the kill (record timestamp), of a partition the dead member owned; restart: a new process started right after the kill; survivor: a second member already in the group. Input: 80 records/s of the sample documents, 4 partitions, models/medical, embedded graph.',
    runs,
    takeoverSecondsAtDefault: atDefault.length > 0 ? Math.max(...atDefault) : null,
  };
}

// ---------------------------------------------------------------- heavy documents

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** A heavy document: sample sentences over and over up to `chars` characters (valid text, many sentences). */
function heavyText(chars: number): string {
  const texts = samples().map((d) => d.text);
  let text = '';
  for (let i = 0; text.length < chars; i++) text += texts[i % texts.length];
  return text.slice(0, chars);
}

interface HeavyRun {
  name: string;
  env: Record<string, string>;
  normalRecords: number;
  heavyRecords: number;
  normalLatencyMs: { p50: number; p90: number; p99: number; max: number };
  heavyLatencyMs: number[];
  lost: number;
  duplicated: number;
  load1m: number;
}

async function heavyRun(name: string, extra: Record<string, string>, options: { seconds: number; normalPerSecond: number; heavyEverySeconds: number; heavyChars: number }): Promise<HeavyRun> {
  const names = runNames(`heavy-${name}`);
  const client = new StreamClient(clientConfig(names), SILENT_LOGGER);
  await client.createTopics(4);
  const tally = await Tally.start(client);
  const serve = spawnServe(serveEnv(names, { brokers: BROKERS, modelDir: MODEL_DIR, port: await freePort(), extra: { RMBERT_MODEL_POLL_MS: '0', ...extra } }));
  const producedAt = new Map<string, number>();
  const docs = samples();
  const text = heavyText(options.heavyChars);
  const loads: number[] = [];
  try {
    await waitReady(serve);
    const started = Date.now();
    let n = 0;
    let h = 0;
    const tickMs = 100;
    for (let tick = 0; Date.now() - started < options.seconds * 1000; tick++) {
      const batch: Document[] = [];
      const due = Math.floor(((tick + 1) * tickMs * options.normalPerSecond) / 1000) - n;
      for (let i = 0; i < due; i++, n++) batch.push({ ...docs[n % docs.length], id: `normal-${n}` });
      if (options.heavyEverySeconds > 0 && Date.now() - started >= h * options.heavyEverySeconds * 1000 + 2000) batch.push({ ...docs[0], id: `heavy-${h++}`, text });
      const at = Date.now();
      if (batch.length > 0) await client.produceDocuments(batch);
      for (const d of batch) producedAt.set(d.id, at);
      if (tick % 50 === 0) loads.push(loadAverage()[0]);
      const next = started + (tick + 1) * tickMs;
      await sleep(Math.max(0, next - Date.now()));
    }
    const ids = [...producedAt.keys()];
    const settled = await tally.settle(ids, 600_000);
    if (!settled) log(`heavy ${name}: not every id came out`);
    const firstArrival = new Map<string, number>();
    for (const o of tally.outputs) if (!firstArrival.has(o.record.documentId)) firstArrival.set(o.record.documentId, o.receivedAt);
    const latency = (id: string) => (firstArrival.has(id) ? firstArrival.get(id)! - producedAt.get(id)! : NaN);
    const normal = ids.filter((id) => id.startsWith('normal-')).map(latency).filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
    const heavyIds = ids.filter((id) => id.startsWith('heavy-'));
    const account = tally.account(ids);
    const run: HeavyRun = {
      name,
      env: extra,
      normalRecords: n,
      heavyRecords: heavyIds.length,
      normalLatencyMs: { p50: percentile(normal, 50), p90: percentile(normal, 90), p99: percentile(normal, 99), max: normal.at(-1) ?? NaN },
      heavyLatencyMs: heavyIds.map(latency),
      lost: account.lost,
      duplicated: account.duplicated,
      load1m: round(loads.reduce((a, b) => a + b, 0) / Math.max(1, loads.length), 2),
    };
    log(`heavy ${name}: normal p50 ${run.normalLatencyMs.p50} ms, p99 ${run.normalLatencyMs.p99} ms, max ${run.normalLatencyMs.max} ms; heavy ${run.heavyLatencyMs.join(', ')} ms; lost ${run.lost}, duplicated ${run.duplicated}; load ${run.load1m}`);
    return run;
  } finally {
    serve.child.kill('SIGTERM');
    await Promise.race([serve.exited, sleep(30_000)]);
    serve.kill();
    await client.deleteTopics().catch(() => undefined);
    await client.close();
  }
}

async function heavySection(quick: boolean) {
  const options = quick ? { seconds: 30, normalPerSecond: 5, heavyEverySeconds: 15, heavyChars: 50_000 } : { seconds: 75, normalPerSecond: 5, heavyEverySeconds: 25, heavyChars: 90_000 };
  const runs: HeavyRun[] = [];
  // The floor: normal documents alone.
  runs.push(await heavyRun('no-heavy-documents', {}, { ...options, heavyEverySeconds: 0 }));
  // Before issue 15 item 2: micro-batches cut on records and bytes only, every document in its partition's micro-batch.
  runs.push(await heavyRun('records-and-bytes-only', { RMBERT_BATCH_MAX_COST: '100000000', RMBERT_HEAVY_DOC_COST: '0' }, options));
  // Cost-based micro-batches, no lane.
  runs.push(await heavyRun('cost-cut-no-lane', { RMBERT_HEAVY_DOC_COST: '0' }, options));
  // The defaults: cost-based micro-batches and the heavy-document lane.
  runs.push(await heavyRun('heavy-lane', {}, options));
  return {
    definition: `normal documents (the sample EMRs, 30-120 characters) at ${options.normalPerSecond}/s and one heavy document of ${options.heavyChars} characters (the sample texts over and over) every ${options.heavyEverySeconds} s for ${options.seconds} s (no-heavy-documents: the normal ones alone), on 4 partitions, one rmbert serve (models/medical, ONNX Runtime, embedded graph); latency = arrival of the output at a read_committed consumer - production of the input`,
    options,
    runs,
    heavyLaneNormalP99Ms: runs.find((r) => r.name === 'heavy-lane')?.normalLatencyMs.p99 ?? null,
  };
}

// ---------------------------------------------------------------- faults

const INFRA = path.join(ROOT, 'scripts/infra.sh');

/** A private Kafka and Neo4j (scripts/infra.sh on free ports and its own state directory): the shared ones are never stopped. */
class PrivateServers {
  private constructor(
    readonly dir: string,
    private readonly env: Record<string, string>,
    readonly brokers: string[],
    readonly neo4jUri: string,
  ) {}
  static async start(): Promise<PrivateServers> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-reliability-infra-'));
    // The shared state's resolved classpaths, so that no Maven run is needed.
    const shared = path.join(process.env.RMBERT_INFRA_DIR ?? path.join(ROOT, '.infra'), 'classpath');
    if (existsSync(shared)) await cp(shared, path.join(dir, 'classpath'), { recursive: true });
    const [kafka, controller, neo4j] = [await freePort(), await freePort(), await freePort()];
    const env = { RMBERT_INFRA_DIR: dir, RMBERT_KAFKA_PORT: String(kafka), RMBERT_KAFKA_CONTROLLER_PORT: String(controller), RMBERT_NEO4J_PORT: String(neo4j), RMBERT_INFRA_CDS: '0' };
    const servers = new PrivateServers(dir, env, [`127.0.0.1:${kafka}`], `bolt://127.0.0.1:${neo4j}`);
    await servers.infra('up');
    return servers;
  }
  async infra(action: 'up' | 'down', which?: 'kafka' | 'neo4j'): Promise<void> {
    await execFileP('bash', [INFRA, action, ...(which ? [which] : [])], { env: { ...process.env, ...this.env }, timeout: 300_000 });
  }
  async close(): Promise<void> {
    await this.infra('down').catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}

interface Shutdown {
  what: string;
  code: number | null;
  seconds: number;
}

/** SIGTERM and the time to exit (the process is killed 60 s after the signal if still running). */
async function terminate(serve: ServeProcess, what: string): Promise<Shutdown> {
  const at = Date.now();
  serve.child.kill('SIGTERM');
  const code = await Promise.race([serve.exited, sleep(60_000).then(() => 'hung' as const)]);
  const seconds = (Date.now() - at) / 1000;
  if (code === 'hung') serve.kill();
  log(`${what}: exit ${code} ${round(seconds, 1)} s after SIGTERM`);
  return { what, code: code === 'hung' ? -1 : code, seconds: round(seconds, 2) };
}

async function faultsSection(quick: boolean) {
  const scale = quick ? 0.5 : 1;
  const servers = await PrivateServers.start();
  const names = runNames('faults');
  const graphName = names.group;
  const config = clientConfig(names, servers.brokers);
  const client = new StreamClient(config, SILENT_LOGGER);
  const events: { t: number; event: string }[] = [];
  // The schedule's clock starts when both members are ready.
  let started = Date.now();
  const event = (e: string) => {
    events.push({ t: round((Date.now() - started) / 1000, 1), event: e });
    log(`t=${round((Date.now() - started) / 1000, 0)} s: ${e}`);
  };
  const procs: ServeProcess[] = [];
  const shutdowns: Shutdown[] = [];
  let unexpectedExits = 0;
  try {
    // The graph: the triples of Medical.spo about the sample texts, plus a slice of the rest.
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'rmbert-reliability-'));
    await writeTestGraph(samples().map((d) => d.text), path.join(tmp, 'graph.spo'), 2000);
    const graph = new Neo4jKnowledgeGraph({ uri: servers.neo4jUri, user: 'neo4j', password: LOCAL_NEO4J_PASSWORD, graphName });
    await graph.init();
    await loadSpoFile(path.join(tmp, 'graph.spo'), graph, { replace: true });
    const graphBefore = await graph.stats();
    await rm(tmp, { recursive: true, force: true });
    await client.createTopics(4);
    const tally = await Tally.start(client);
    const serveEnvFor = async (instance: string) =>
      serveEnv(names, {
        brokers: servers.brokers,
        modelDir: MODEL_DIR,
        port: await freePort(),
        extra: {
          RMBERT_INSTANCE_ID: instance,
          RMBERT_EMBEDDED: 'false',
          RMBERT_NEO4J_URI: servers.neo4jUri,
          RMBERT_NEO4J_PASSWORD: LOCAL_NEO4J_PASSWORD,
          RMBERT_KG_GRAPH: graphName,
          RMBERT_KG_RETRY_MAX_MS: '2000',
          RMBERT_MODEL_POLL_MS: '0',
        },
      });
    const spawnMember = async (instance: string) => {
      const p = spawnServe(await serveEnvFor(instance));
      procs.push(p);
      void p.exited.then((code) => {
        if (code !== 0 && code !== null && !p.child.killed) {
          unexpectedExits++;
          log(`${instance} exited by itself with ${code}: ${p.err().slice(-500)}`);
        }
      });
      return p;
    };
    let a = await spawnMember('a');
    let b = await spawnMember('b');
    await Promise.all([waitReady(a), waitReady(b)]);
    started = Date.now();
    event('two members ready');

    // The input: normal documents at 20/s, the hostile corpus spread over the run, an oversized record
    // (just under 1 MiB, text over the limit), ten entity-dense documents in a row, heavy documents.
    const docs = samples();
    const ids: string[] = [];
    const corpus = hostileCorpus({ maxTextChars: 100_000, prefix: names.group });
    const placed: Placed[] = [];
    let paused = false;
    let producing = true;
    let n = 0;
    let hostileAt = 0;
    const specials: { at: number; docs: Document[] }[] = [
      { at: 10, docs: [{ ...docs[0], id: 'oversized-0', text: '咳'.repeat(340_000) }] },
      { at: 30, docs: Array.from({ length: 10 }, (_, i) => ({ ...docs[1], id: `dense-${i}`, text: '痛。'.repeat(4300) })) },
      { at: 45, docs: [{ ...docs[2], id: 'heavy-0', text: heavyText(90_000) }] },
      { at: 95, docs: [{ ...docs[3], id: 'heavy-1', text: heavyText(60_000) }] },
    ];
    const producer = (async () => {
      for (let tick = 0; producing; tick++) {
        if (!paused) {
          const t = (Date.now() - started) / 1000;
          const batch: Document[] = Array.from({ length: 2 }, () => ({ ...docs[n % docs.length], id: `normal-${n++}` }));
          for (const sp of specials) if (sp.at * scale <= t && sp.docs.length > 0) batch.push(...sp.docs.splice(0));
          try {
            await client.produceDocuments(batch);
            ids.push(...batch.map((d) => d.id));
            // About two hostile cases a second.
            const want = Math.min(corpus.length, Math.floor(tick / 5) * 1 + 1);
            while (hostileAt < want) {
              const c = corpus[hostileAt++];
              const [where] = await client.produceRaw([{ key: c.key, value: c.value, partition: c.n % 4 }]);
              placed.push({ ...c, ...where });
            }
          } catch (error) {
            log(`produce failed (${(error as Error).message}); the batch is dropped from the count`);
          }
        }
        await sleep(100);
      }
    })();

    const at = async (seconds: number) => {
      const wait = started + seconds * scale * 1000 - Date.now();
      if (wait > 0) await sleep(wait);
    };
    // SIGKILL of a member mid-stream (mid-transaction, most likely), and its restart.
    await at(20);
    const deadPartitions = ((a.logLines('joined consumer group').filter((l) => l.lane === 'normal').at(-1)?.partitions as number[] | undefined) ?? []).slice();
    a.child.kill('SIGKILL');
    const killedAt = Date.now();
    event('SIGKILL member a');
    await a.exited;
    await sleep(2000);
    a = await spawnMember('a2');
    event('member a2 started');
    // Ready before the next fault (a stage that cannot reach a broker at start exits 1 by design).
    await waitReady(a);
    event('member a2 ready');
    let takeoverSeconds: number | null = null;
    void waitFor('takeover', () => {
      const first = tally.outputs.find((o) => o.timestamp > killedAt + 100 && deadPartitions.includes(o.partition));
      if (first) takeoverSeconds = (first.receivedAt - killedAt) / 1000;
      return first !== undefined;
    }, 120_000, 100).catch(() => undefined);

    // Broker stopped (the producer pauses meanwhile) and started again.
    await at(50);
    paused = true;
    await servers.infra('down', 'kafka');
    event('broker stopped');
    await sleep(15_000 * scale);
    await servers.infra('up', 'kafka');
    paused = false;
    event('broker started');

    // Neo4j stopped and started again.
    await at(90);
    await servers.infra('down', 'neo4j');
    event('neo4j stopped');
    await sleep(20_000 * scale);
    await servers.infra('up', 'neo4j');
    event('neo4j started');

    // SIGTERM of a member after all this, mid-stream; then it is started again.
    await at(130);
    shutdowns.push(await terminate(b, 'member b, mid-stream after the outages'));
    b = await spawnMember('b2');
    event('member b2 started');
    await waitReady(b);
    event('member b2 ready');
    await at(145);
    producing = false;
    await producer;
    // The rest of the corpus, so that every case is in every run.
    while (hostileAt < corpus.length) {
      const c = corpus[hostileAt++];
      const [where] = await client.produceRaw([{ key: c.key, value: c.value, partition: c.n % 4 }]);
      placed.push({ ...c, ...where });
    }
    event(`input stopped: ${ids.length} documents and ${placed.length} hostile records`);

    // Every normal, special and hostile id out (or the bounded wait over).
    const hostileLost = () => accountHostile(placed, names.input, tally.outputs, tally.dead).unhandled.filter((u) => u.endsWith(': lost')).length;
    const drained = (await tally.settle(ids, 300_000)) && (await waitFor('hostile cases out', () => hostileLost() === 0, 120_000, 500).then(() => true, () => false));
    const account = tally.account(ids);
    const stalled = ids.filter((id) => !tally.counts().has(id)).length + hostileLost();
    event(`drained: ${drained}, ${stalled} normal/special documents not out`);
    shutdowns.push(await terminate(a, 'member a2 at the end'));
    shutdowns.push(await terminate(b, 'member b2 at the end'));
    await tally.settle([], 10_000, 2000);
    const hostile = accountHostile(placed, names.input, tally.outputs, tally.dead);
    const final = tally.account(ids);
    const graphAfter = await graph.stats().catch(() => null);
    await graph.close();
    log(`faults: ${final.recordsIn + placed.length} records in, lost ${final.lost}, duplicated ${final.duplicated}, hostile unhandled ${hostile.unhandled.length} of ${hostile.cases}`);
    return {
      definition: 'Two rmbert serve members (models/medical, Neo4j graph) on a private Kafka and Neo4j (scripts/infra.sh, own ports and state); input: normal documents at 20/s, the hostile corpus at ~2 records/s on explicit partitions, an oversized record (340,000 characters, just under 1 MiB), ten entity-dense documents (8,600 characters of 痛。) in a row, heavy documents (90,000 and 60,000 characters). Faults: SIGKILL of a member mid-stream and restart, broker stopped 15 s, Neo4j stopped 20 s, SIGTERM of a member mid-stream. Every id counted in the outputs (read_committed) and the dead-letter topic.',
      scale,
      events,
      documents: final.recordsIn,
      hostileRecords: placed.length,
      recordsIn: final.recordsIn + placed.length,
      lost: final.lost + hostile.unhandled.filter((u) => u.endsWith(': lost')).length,
      duplicated: final.duplicated + hostile.unhandled.filter((u) => u.includes('outputs and')).length,
      stalledRecords: stalled,
      drainedBeforeDeadline: drained,
      deadLettered: account.deadLettered,
      hostileCases: hostile.cases,
      hostileUnhandled: hostile.unhandled.length,
      hostileUnhandledCases: hostile.unhandled.slice(0, 20),
      shutdowns,
      shutdownSecondsMax: Math.max(...shutdowns.map((s) => s.seconds)),
      shutdownCodes: shutdowns.map((s) => s.code),
      takeoverAfterKillSeconds: takeoverSeconds,
      unexpectedExits,
      graphUnchanged: JSON.stringify(graphAfter) === JSON.stringify(graphBefore),
    };
  } finally {
    for (const p of procs) p.kill();
    await client.deleteTopics().catch(() => undefined);
    await client.close();
    await servers.close();
  }
}

// ---------------------------------------------------------------- main

type Sections = Record<string, unknown>;

function readPrevious(): { sections: Sections } {
  if (!existsSync(RESULT_FILE)) return { sections: {} };
  try {
    const previous = JSON.parse(readFileSync(RESULT_FILE, 'utf8')) as { sections?: Sections };
    return { sections: previous.sections ?? {} };
  } catch {
    return { sections: {} };
  }
}

function markdown(result: { command: string; machine: string; loadAverageBefore: number[]; loadAverageAfter: number[]; summary: Record<string, unknown>; sections: Sections }): string {
  const lines: string[] = ['# Reliability (issue 15)', '', `Command: \`${result.command}\` (each section keeps the command that produced it in the JSON).`, ''];
  lines.push(`Machine: ${result.machine}; 2 cores shared with model training, load average ${result.loadAverageBefore.join(' / ')} before, ${result.loadAverageAfter.join(' / ')} after (1/5/15 min).`, '');
  lines.push('| summary | value |', '|---|---|');
  for (const [k, v] of Object.entries(result.summary)) lines.push(`| ${k} | ${v ?? 'not measured'} |`);
  const takeover = result.sections.takeover as { definition: string; runs: TakeoverRun[] } | undefined;
  if (takeover) {
    lines.push('', '## Takeover after SIGKILL', '', takeover.definition, '', '| variant | session timeout | heartbeat | takeover (s) | load (1 min) | records | lost | duplicated |', '|---|---|---|---|---|---|---|---|');
    for (const r of takeover.runs) lines.push(`| ${r.variant} | ${r.sessionTimeoutMs / 1000} s | ${r.heartbeatIntervalMs} ms | ${r.takeoverSeconds ?? 'none'} | ${r.load1m} | ${r.recordsIn} | ${r.lost} | ${r.duplicated} |`);
  }
  const heavy = result.sections.heavy as { definition: string; runs: HeavyRun[] } | undefined;
  if (heavy) {
    lines.push('', '## Normal documents next to heavy ones', '', heavy.definition, '', '| configuration | normal p50 (ms) | p90 | p99 | max | heavy documents (ms) | load (1 min, mean) | lost | duplicated |', '|---|---|---|---|---|---|---|---|---|');
    for (const r of heavy.runs) lines.push(`| ${r.name} | ${r.normalLatencyMs.p50} | ${r.normalLatencyMs.p90} | ${r.normalLatencyMs.p99} | ${r.normalLatencyMs.max} | ${r.heavyLatencyMs.join(', ')} | ${r.load1m} | ${r.lost} | ${r.duplicated} |`);
  }
  const faults = result.sections.faults as Record<string, unknown> | undefined;
  if (faults) {
    lines.push('', '## Fault suite', '', String(faults.definition), '', '| measure | value |', '|---|---|');
    for (const k of ['recordsIn', 'documents', 'hostileRecords', 'lost', 'duplicated', 'stalledRecords', 'hostileCases', 'hostileUnhandled', 'shutdownSecondsMax', 'shutdownCodes', 'takeoverAfterKillSeconds', 'unexpectedExits', 'graphUnchanged']) {
      lines.push(`| ${k} | ${JSON.stringify(faults[k])} |`);
    }
    const events = faults.events as { t: number; event: string }[] | undefined;
    if (events) lines.push('', 'Events: ' + events.map((e) => `${e.t} s ${e.event}`).join('; ') + '.');
  }
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { only: { type: 'string' }, quick: { type: 'boolean' }, help: { type: 'boolean' } } });
  if (values.help) {
    console.log('usage: node --import tsx benchmarks/reliability.ts [--only takeover,heavy,faults] [--quick]');
    return;
  }
  const only = new Set((values.only ?? 'takeover,heavy,faults').split(',').map((s) => s.trim()));
  const quick = values.quick ?? false;
  const command = `node --import tsx benchmarks/reliability.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`;
  const started = Date.now();
  const loadBefore = loadAverage();
  const { sections } = readPrevious();
  if (only.has('takeover')) sections.takeover = { command, at: new Date().toISOString(), ...(await takeoverSection(quick)) };
  if (only.has('faults')) sections.faults = { command, at: new Date().toISOString(), ...(await faultsSection(quick)) };
  if (only.has('heavy')) sections.heavy = { command, at: new Date().toISOString(), ...(await heavySection(quick)) };
  const takeover = sections.takeover as { takeoverSecondsAtDefault?: number | null } | undefined;
  const heavy = sections.heavy as { heavyLaneNormalP99Ms?: number | null } | undefined;
  const faults = sections.faults as Record<string, unknown> | undefined;
  const summary = {
    recordsIn: faults?.recordsIn ?? null,
    lost: faults?.lost ?? null,
    duplicated: faults?.duplicated ?? null,
    stalledRecords: faults?.stalledRecords ?? null,
    hostileCases: faults?.hostileCases ?? null,
    hostileUnhandled: faults?.hostileUnhandled ?? null,
    shutdownSecondsMax: faults?.shutdownSecondsMax ?? null,
    takeoverSeconds: takeover?.takeoverSecondsAtDefault ?? null,
    heavyLaneNormalP99Ms: heavy?.heavyLaneNormalP99Ms ?? null,
  };
  const result = {
    command,
    machine: machineDescription(),
    loadAverageBefore: loadBefore.map((x) => round(x, 2)),
    loadAverageAfter: loadAverage().map((x) => round(x, 2)),
    minutes: round((Date.now() - started) / 60_000, 1),
    summary,
    sections,
  };
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(RESULT_FILE, `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(RESULT_FILE.replace(/\.json$/, '.md'), markdown(result));
  log(`wrote ${path.relative(ROOT, RESULT_FILE)}: ${JSON.stringify(summary)}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
