/**
 * `rmbert train`: the trainer sidecar. Composition root: the stage's configuration (Kafka, topics,
 * model directory, graph file) plus the trainer's own settings, the Feedback consumer and round
 * committer (src/stream/trainer-io.ts), the continual-learning round (src/train/continual.ts) and the
 * loop that ties them (src/train/sidecar.ts).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { configFlagOptions, configHelp, describeConfig, flagValues, loadConfig, type StageConfig } from '../../config/index.ts';
import { loadTrainerConfig, trainerConfigHelp, trainerFlagOptions, type TrainerConfig } from '../../config/trainer.ts';
import { ConfigError, RmBertError } from '../../errors/index.ts';
import { MANIFEST_FILE } from '../../model/artifact.ts';
import { selectBackend } from '../../model/backend.ts';
import { BertTokenizer } from '../../model/tokenizer.ts';
import { createJsonLogger, safeErrorMessage } from '../../pipeline/logging.ts';
import type { Logger } from '../../pipeline/ports.ts';
import { segmentSentences } from '../../pipeline/segment.ts';
import { createKafka } from '../../stream/kafka.ts';
import { ensureTopics } from '../../stream/topics.ts';
import { FeedbackConsumer, TrainerCommitter, type FeedbackRaw } from '../../stream/trainer-io.ts';
import { ContinualTrainer } from '../../train/continual.ts';
import { readKbertTsv } from '../../train/datasets.ts';
import { TrainerSidecar, type RoundReport, type SidecarSettings } from '../../train/sidecar.ts';
import { manifestSha256, modelDirectoryCatalog } from '../stage-wiring.ts';
import { run as runFeedbackCommand } from './train-feedback.ts';
import { PromTrainerMetrics, startMetricsServer, type MetricsServer } from '../../metrics/index.ts';
import { FeedbackStore } from '../../train/feedback-store.ts';
import { LabelChecker } from '../../train/label-check.ts';

export const summary = 'run the trainer sidecar: learn from clinician feedback with RecAdam, promote only a model at least as good';

/** The stage's default consumer group: the trainer must never join it (it would take input partitions). */
const STAGE_DEFAULT_GROUP = 'rmbert-stage';

const HELP = `usage: rmbert train [--once] [options]
       rmbert train feedback list|export|prune|release ...   (the feedback store: rmbert train feedback --help)

Reads Feedback records (Avro single-object encoding: a document's text and its complete, corrected
gold entities; see "Feedback wire format" in the README) from the feedback topic in the trainer's own
consumer group. Unusable records (undecodable, empty text, an entity span outside the text or not
matching it, overlapping entities, an entity type the model does not know) are logged without their
text and sent to the feedback dead-letter topic (--feedback-dlq-topic).

Usable feedback is written to the trainer's store on disk (--state-dir) before its offset is
committed, and stays there until pruned: refused rounds, failed rounds and restarts lose nothing.
The latest correction of a document wins. A document whose entity types contradict the knowledge
graph's type or the training set's label of the same surface is quarantined for review, not trained
on (--label-check). When a document is first stored, a stratified share (--holdout-percent of each
corrected term's documents) is held out for good: scored in every round, never trained on.

When --min-examples documents were stored since the last round (or the oldest has waited
--max-wait-minutes), one round:
  1. fine-tune the model in service (the newest artifact in the model directory) on every stored
     training document plus a sample of the original training data (--replay-ratio, --replay-max)
     with RecAdam, theta* = its weights (the classification head included), the annealing schedule
     scaled to the round (--anneal-t0-fraction, --anneal-span), for at most --epochs / --max-steps /
     --max-minutes; the same store and settings give the same challenger;
  2. score champion and challenger (strict micro F1) on the frozen gold set and on the holdout;
  3. promote only if every check passes: gold F1 within --gold-tolerance, holdout F1 >= champion +
     --gate-margin, no gold entity type down more than --type-tolerance, no frequent gold surface
     losing more than --surface-max-loss of its found mentions, the weights moved at most
     --max-distance; then write a versioned artifact <model-dir>/<name>-<major>.<minor>.<patch+1> and
     publish a ModelUpdate on the model-updates topic. A refusal logs the failed checks with figures.

The graph for knowledge injection and the label check is read from --kg-file into memory (Neo4j is
not used; --no-kg: only a model trained without knowledge can be continued). The model directory
must be a directory of versioned artifacts (what \`rmbert serve\` serves the newest of), not an
artifact itself. The consumer group (--group-id, RMBERT_GROUP_ID) must be the trainer's own; its
default here is rmbert-trainer. /metrics, /healthz and /readyz are served on --metrics-port (default
9465 for the trainer; 0 = any free port). Logs are JSON lines on stdout without document text.
SIGTERM/SIGINT stop at the next training step without recording the round in progress, and exit 0.

modes:
  --once
      read the feedback topic up to its end, store it and commit, run one round if at least
      --min-examples documents were stored since the last round, then exit (tests, cron)
  --progress
      a progress bar of the training steps on stderr

trainer options:
${trainerConfigHelp()}

stage options (shared with rmbert serve). The trainer uses the Kafka connection, the feedback and
model-updates topics, --group-id, --create-topics, --model-dir, --kg-file, --no-kg, --max-text-chars,
--metrics-port, --log-level and --instance-id; the others (Neo4j, --embedded, micro-batches, engine,
input, output and documents' dead-letter topics) are validated but have no effect here:
${configHelp()}
  -h, --help
      this text

exit status: 0 finished (promoted, refused, nothing to do, or stopped by a signal), 1 failed,
2 bad configuration.
`;

export interface TrainerSetup {
  config: StageConfig;
  trainer: TrainerConfig;
}

/** The stage configuration as the trainer reads it: its own group by default, the graph from the file. */
export function loadTrainerSetup(values: Record<string, string | boolean | undefined>): TrainerSetup {
  const flags = flagValues(values);
  const config = loadConfig(flags, { embedded: true }, { groupId: 'rmbert-trainer', 'kafka.clientId': 'rmbert-trainer', 'metrics.port': '9465' });
  const problems: string[] = [];
  if (config.groupId === STAGE_DEFAULT_GROUP) {
    problems.push(`groupId: "${STAGE_DEFAULT_GROUP}" is the stage's consumer group; the trainer needs its own (RMBERT_GROUP_ID=rmbert-trainer)`);
  }
  if (existsSync(path.join(config.model.dir, MANIFEST_FILE))) {
    problems.push(
      `model.dir: ${config.model.dir} is itself a model artifact (the stage's default); the trainer writes new versions beside the one in service, so it needs a directory of versioned artifacts, shared with the stage: ` +
        `mkdir -p DIR && cp -r ${config.model.dir} DIR/, then RMBERT_MODEL_DIR=DIR for both rmbert serve and rmbert train`,
    );
  }
  const trainerFlags = Object.fromEntries(Object.entries(values).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
  let trainer: TrainerConfig | null = null;
  try {
    trainer = loadTrainerConfig(trainerFlags);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(...error.problems);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { config, trainer: trainer! };
}

function errorClass(error: unknown): string {
  return error instanceof Error ? error.name : 'Error';
}

export async function run(argv: string[]): Promise<number> {
  if (argv[0] === 'feedback') return runFeedbackCommand(argv.slice(1));
  let values: Record<string, string | boolean | undefined>;
  try {
    const parsed = parseArgs({
      args: argv,
      options: { ...configFlagOptions(), ...trainerFlagOptions(), once: { type: 'boolean' }, progress: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: false,
    });
    values = parsed.values as Record<string, string | boolean | undefined>;
  } catch (error) {
    console.error(`rmbert train: ${(error as Error).message}\nRun \`rmbert train --help\` for the options.`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  let setup: TrainerSetup;
  try {
    setup = loadTrainerSetup(values);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`rmbert train: ${error.message}`);
      return 2;
    }
    throw error;
  }
  const { config, trainer } = setup;
  const logger = createJsonLogger({ level: config.logLevel, fields: { service: 'rmbert-trainer', instance: config.instanceId } });
  logger.info('starting', { mode: values.once ? 'once' : 'continuous', config: describeConfig(config), trainer: { ...trainer } });

  const stop = new AbortController();
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn('second signal: exiting now', { signal });
      process.exit(1);
    }
    signalled = true;
    logger.info('signal received: stopping (the round in progress is not committed)', { signal });
    stop.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  let built: Built | null = null;
  try {
    try {
      built = await build(config, trainer, logger, Boolean(values.progress));
    } catch (error) {
      logger.error('could not start', { errorClass: errorClass(error), error: safeErrorMessage(error) });
      if (error instanceof RmBertError) console.error(`rmbert train: ${error.message}`);
      return error instanceof ConfigError ? 2 : 1;
    }
    const { sidecar } = built;
    if (values.once) {
      const report: RoundReport = await sidecar.runOnce(trainer.readTimeoutMs, stop.signal);
      logger.info('done', { outcome: report.outcome, ...sidecar.counters });
      return report.outcome === 'failed' ? 1 : 0;
    }
    await sidecar.run(stop.signal);
    return 0;
  } catch (error) {
    logger.error('trainer failed', { errorClass: errorClass(error), error: safeErrorMessage(error) });
    if (error instanceof RmBertError) console.error(`rmbert train: ${error.message}`);
    return 1;
  } finally {
    await built?.committer.close();
    await built?.server?.close();
    built?.store.unlock();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

/** The sidecar's settings from the trainer's configuration (also what benchmarks/learning-loop.ts runs). */
export function sidecarSettings(trainer: TrainerConfig, maxTextChars: number, modelDir: string): SidecarSettings {
  return {
    minExamples: trainer.minExamples,
    maxWaitMinutes: trainer.maxWaitMinutes,
    maxBuffer: trainer.maxBuffer,
    gate: {
      goldTolerance: trainer.goldTolerance,
      holdoutMargin: trainer.gateMargin,
      typeTolerance: trainer.typeTolerance,
      typeMinEntities: trainer.typeMinEntities,
      surfaceMaxLoss: trainer.surfaceMaxLoss,
      surfaceMinMentions: trainer.surfaceMinMentions,
      maxRelativeDistance: trainer.maxDistance,
    },
    replayRatio: trainer.replayRatio,
    replayMax: trainer.replayMax,
    maxTextChars,
    modelDir,
    round: {
      learningRate: trainer.learningRate,
      gamma: trainer.gamma,
      anneal: trainer.anneal,
      k: 0,
      t0: 0,
      annealRound: { t0Fraction: trainer.annealT0Fraction, span: trainer.annealSpan },
      epochs: trainer.epochs,
      maxSteps: trainer.maxSteps,
      maxMinutes: trainer.maxMinutes,
      batchTokens: trainer.batchTokens,
      batchSize: trainer.batchSize,
      seed: trainer.seed,
    },
  };
}

interface Built {
  sidecar: TrainerSidecar<FeedbackRaw>;
  committer: TrainerCommitter;
  server: MetricsServer | null;
  store: FeedbackStore;
}

async function build(config: StageConfig, trainer: TrainerConfig, logger: Logger, progress: boolean): Promise<Built> {
  const backend = await selectBackend(trainer.backend, (line) => logger.debug(line));
  logger.info('training backend selected', { backend: backend.engineName, skipped: backend.skipped });
  const tokenizer = await BertTokenizer.load();
  const gold = readKbertTsv(trainer.goldFile);
  logger.info('gold set loaded', { file: trainer.goldFile, sentences: gold.stats.sentences, entities: gold.stats.totalEntities });
  const continual = new ContinualTrainer({
    tokenizer,
    kgFile: config.knowledge.enabled ? config.knowledge.kgFile : null,
    gold: { name: path.basename(trainer.goldFile), sentences: gold.sentences },
    log: (msg, fields) => logger.warn(msg, fields),
  });
  const replay = readKbertTsv(trainer.replayFile);
  logger.info('replay sample loaded', { file: trainer.replayFile, sentences: replay.stats.sentences });
  const kgFile = config.knowledge.enabled ? config.knowledge.kgFile : null;
  const checker = trainer.labelCheck === 'on' ? LabelChecker.fromFiles(kgFile, trainer.lexiconFile) : null;
  const store = FeedbackStore.open(trainer.stateDir, { holdoutPercent: trainer.holdoutPercent });
  store.lock();
  logger.info('feedback store opened', { file: store.file, ...store.counts() });
  const metrics = new PromTrainerMetrics({ processMetrics: true });
  let server: MetricsServer;
  try {
    server = await startMetricsServer({ registry: metrics.registry, port: config.metrics.port, host: config.metrics.host, readiness: () => metrics.readinessNow() });
  } catch (error) {
    store.unlock();
    throw new ConfigError([`metrics.port: cannot listen on ${config.metrics.host}:${config.metrics.port} (${(error as Error).message}); the trainer serves /metrics on its own port (--metrics-port, default 9465)`]);
  }
  logger.info('metrics server listening', { url: server.url });
  try {
    // The trainer's dead letters are feedback records: they go to their own topic, not the documents' one.
    const trainerView: StageConfig = { ...config, topics: { ...config.topics, deadLetter: trainer.feedbackDlqTopic } };
    const kafka = createKafka(config.kafka, logger);
    if (config.createTopics) await ensureTopics(kafka, trainerView, logger);
    const committer = new TrainerCommitter(kafka, trainerView, logger);
    const sidecar = new TrainerSidecar<FeedbackRaw>({
      source: new FeedbackConsumer(kafka, trainerView, logger),
      store,
      ...(checker ? { labelCheck: (d) => checker.check(d) } : {}),
      replay: replay.sentences,
      metrics,
      committer,
      champion: modelDirectoryCatalog(config.model.dir),
      trainer: continual,
      championTypes: (dir) => ContinualTrainer.artifactTypes(dir),
      manifestSha256,
      segment: (text) => segmentSentences('', text),
      logger: logger.child({ component: 'trainer' }),
      progress,
      settings: {
        ...sidecarSettings(trainer, config.maxTextChars, path.resolve(config.model.dir)),
        commitRetries: config.kafka.retries,
        commitBackoffMs: { initial: config.kafka.initialRetryMs, max: config.kafka.maxRetryMs },
      },
    });
    return { sidecar, committer, server, store };
  } catch (error) {
    await server.close();
    store.unlock();
    throw error;
  }
}
