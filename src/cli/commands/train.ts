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
import { TrainerSidecar, type RoundReport } from '../../train/sidecar.ts';
import { manifestSha256, modelDirectoryCatalog } from '../stage-wiring.ts';

export const summary = 'run the trainer sidecar: learn from clinician feedback with RecAdam, promote only a model at least as good';

/** The stage's default consumer group: the trainer must never join it (it would take input partitions). */
const STAGE_DEFAULT_GROUP = 'rmbert-stage';

const HELP = `usage: rmbert train [--once] [options]

Reads Feedback records (Avro: a document's text and its complete, corrected gold entities) from the
feedback topic in the trainer's own consumer group. Unusable records (undecodable, empty text, an
entity span outside the text or not matching it, overlapping entities, an entity type the model does
not know) are logged without their text and sent to the dead-letter topic. The latest correction of a
document wins; documents whose id hashes into --holdout-percent are held out for evaluation.

When --min-examples documents are buffered (or the oldest has waited --max-wait-minutes), one round:
  1. fine-tune the model in service (the newest artifact in the model directory) on the buffered
     feedback with RecAdam, theta* = its weights (all of them, the classification head included),
     for at most --epochs / --max-steps / --max-minutes;
  2. score champion and challenger (strict micro F1) on the frozen gold set and on the holdout;
  3. promote only if the challenger is at least as good on both (+ --gate-margin): write a versioned
     artifact <model-dir>/<name>-<major>.<minor>.<patch+1> and publish a ModelUpdate (version, location,
     manifest sha256, metrics) on the model-updates topic; otherwise log the figures and discard it.
The dead letters, the ModelUpdate and the feedback offsets are committed in one Kafka transaction after
the round: a crash or a stop before that loses nothing (the records are read again). Held-out
documents of committed rounds are kept in memory (up to --holdout-max) and scored in later rounds;
after a restart the holdout is rebuilt from the feedback read from then on.

The graph for knowledge injection is read from --kg-file into memory (Neo4j is not used; --no-kg: only
a model trained without knowledge can be continued). The model directory must be a directory of
versioned artifacts (what \`rmbert serve\` serves the newest of), not an artifact itself. The consumer
group (--group-id, RMBERT_GROUP_ID) must be the trainer's own; its default here is rmbert-trainer.
Logs are JSON lines on stdout without document text. SIGTERM/SIGINT stop at the next training step
without committing the round in progress, and exit 0.

modes:
  --once
      read the feedback topic up to its end, run one round if at least --min-examples documents are
      there (otherwise commit nothing), then exit (tests, cron)
  --progress
      a progress bar of the training steps on stderr

trainer options:
${trainerConfigHelp()}

stage options (shared with rmbert serve). The trainer uses the Kafka connection, the feedback,
model-updates and dead-letter topics, --group-id, --create-topics, --model-dir, --kg-file, --no-kg,
--max-text-chars, --log-level and --instance-id; the others (Neo4j, --embedded, micro-batches, engine,
metrics server, input and output topics) are validated but have no effect here:
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
  const config = loadConfig(flags, { embedded: true }, { groupId: 'rmbert-trainer', 'kafka.clientId': 'rmbert-trainer' });
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
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

interface Built {
  sidecar: TrainerSidecar<FeedbackRaw>;
  committer: TrainerCommitter;
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
  const kafka = createKafka(config.kafka, logger);
  if (config.createTopics) await ensureTopics(kafka, config, logger);
  const committer = new TrainerCommitter(kafka, config, logger);
  const sidecar = new TrainerSidecar<FeedbackRaw>({
    source: new FeedbackConsumer(kafka, config, logger),
    committer,
    champion: modelDirectoryCatalog(config.model.dir),
    trainer: continual,
    championTypes: (dir) => ContinualTrainer.artifactTypes(dir),
    manifestSha256,
    segment: (text) => segmentSentences('', text),
    logger: logger.child({ component: 'trainer' }),
    progress,
    settings: {
      minExamples: trainer.minExamples,
      maxWaitMinutes: trainer.maxWaitMinutes,
      maxBuffer: trainer.maxBuffer,
      holdoutPercent: trainer.holdoutPercent,
      holdoutMax: trainer.holdoutMax,
      gateMargin: trainer.gateMargin,
      maxTextChars: config.maxTextChars,
      modelDir: path.resolve(config.model.dir),
      commitRetries: config.kafka.retries,
      commitBackoffMs: { initial: config.kafka.initialRetryMs, max: config.kafka.maxRetryMs },
      round: {
        learningRate: trainer.learningRate,
        gamma: trainer.gamma,
        anneal: trainer.anneal,
        k: trainer.annealK,
        t0: trainer.annealT0,
        epochs: trainer.epochs,
        maxSteps: trainer.maxSteps,
        maxMinutes: trainer.maxMinutes,
        batchTokens: trainer.batchTokens,
        batchSize: trainer.batchSize,
        seed: trainer.seed,
      },
    },
  });
  return { sidecar, committer };
}
