/**
 * `rmbert review`: the clinician review page. Composition root: the stage's Kafka settings and topics,
 * the page's own settings (src/config/review.ts), the review queue on disk (src/review/queue.ts), the
 * Kafka reader and Feedback producer (src/stream/review-io.ts) and the HTTP server (src/review/server.ts).
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { configFlagOptions, flagValues, loadConfig, type StageConfig } from '../../config/index.ts';
import { loadReviewConfig, REVIEW_SETTINGS, reviewConfigHelp, reviewFlagOptions, type ReviewConfig } from '../../config/review.ts';
import { ConfigError, RmBertError } from '../../errors/index.ts';
import { createJsonLogger, safeErrorMessage } from '../../pipeline/logging.ts';
import type { Logger } from '../../pipeline/ports.ts';
import { ReviewQueue, type IncomingAnnotations, type IncomingDocument } from '../../review/queue.ts';
import { createReviewServer } from '../../review/server.ts';
import { pollTrainer, TrainerPanel } from '../../review/trainer-panel.ts';
import type { EmrDocumentRecord, EntityAnnotationsRecord } from '../../stream/codecs.ts';
import { createKafka } from '../../stream/kafka.ts';
import { probeBrokers } from '../../stream/probe.ts';
import { FeedbackSender, missingTopics, ModelUpdatesReader, ReviewSourceReader, type ReviewInput } from '../../stream/review-io.ts';

export const summary = 'the clinician review page: see and correct the stage\'s entities, each review sent as one Feedback record';

const HELP = `usage: rmbert review [options]

Serves the review page (http://127.0.0.1:8765 by default). It reads the stage's input topic (documents,
RMBERT_INPUT_TOPIC) and output topic (entities, RMBERT_OUTPUT_TOPIC), committed records only, joins each
document with its entities (all parts of a paged output), and keeps the documents waiting for review in
a bounded queue on disk (--state-dir; it survives restarts and holds document text: keep it private),
least confident first (a new consumer group, --review-group-id, starts at the beginning of both topics;
--join-window and --max-queue bound what is kept). A reviewer corrects the entities (add, retype, move boundaries, delete, undo) and
submits: the complete corrected list becomes one Feedback record on the feedback topic
(RMBERT_FEEDBACK_TOPIC), keyed by document id, with the reviewer's id as annotator and the model
version seen. Submitting a review again (a double click, a retry) never makes a second, different
record: the same list is answered as already sent, another list is refused (409).

Every request needs a reviewer: sign in on the page with a token of --tokens-file (or send
"Authorization: Bearer <token>"), or, with --proxy-user-header, an authenticating proxy's header.
Browser writes need the session's CSRF token and are refused cross-site. Logs carry no document text;
the patient reference is shown only with --show-patient-ref.

HTTP API (what the page uses; JSON): POST /api/login {token}; GET /api/session; GET /api/queue?type=&modelVersion=;
GET /api/items/<reviewId>; POST /api/items/<reviewId>/submit {entities: [{start, end, type}]} (UTF-16 offsets).

The Kafka connection and topics are \`rmbert serve\`'s settings (RMBERT_KAFKA_*, RMBERT_INPUT_TOPIC,
RMBERT_OUTPUT_TOPIC, RMBERT_FEEDBACK_TOPIC, or their flags: \`rmbert serve --help\`); the topics must exist
(\`rmbert serve\` creates them).

The trainer panel (/trainer, same sign-in) shows the trainer's rounds as they happen: every promoted
model from the model-updates topic (RMBERT_MODEL_UPDATES_TOPIC) with its round's scores, the version in
service, and, with --trainer-metrics-url, the trainer's /metrics read every --trainer-poll-ms: a round
in progress, refused rounds with the gate checks that refused them, failed rounds, the feedback store's
counts; champion and challenger F1 on the gold set and the feedback holdout, charted over rounds.

options of the page:
${reviewConfigHelp()}
  -h, --help
      this text

exit status: 0 stopped by SIGTERM/SIGINT, 1 failed (no broker, missing topics), 2 bad usage or configuration.
`;

function toIncomingDocument(r: EmrDocumentRecord): IncomingDocument {
  return { id: r.id, sourceSystem: r.sourceSystem, patientRef: r.patientRef, text: r.text, createdAt: r.createdAt, section: r.section ?? null };
}

function toIncomingAnnotations(r: EntityAnnotationsRecord): IncomingAnnotations {
  return {
    documentId: r.documentId,
    documentCreatedAt: r.documentCreatedAt,
    modelVersion: r.modelVersion,
    kgVersion: r.kgVersion,
    annotatedAt: r.annotatedAt,
    part: r.part ?? 0,
    parts: r.parts ?? 1,
    kgDegraded: r.kgDegraded,
    entities: r.entities.map((e) => ({
      start: e.start,
      end: e.end,
      text: e.text,
      type: e.type,
      score: e.score,
      linked: e.linked.map((l) => ({ relation: l.relation, object: l.object })),
      assertion: e.assertion ? { ...e.assertion, triggers: e.assertion.triggers.map((t) => ({ ...t })) } : null,
    })),
  };
}

/** Longest time the review queue on disk lags what was read (see saveIfDue below). */
const SAVE_INTERVAL_MS = 1000;

export interface ReviewSession {
  url: string;
  stop(): Promise<void>;
}

export async function startReview(stage: StageConfig, config: ReviewConfig, logger: Logger): Promise<ReviewSession> {
  const queue = new ReviewQueue(config.stateDir, { maxQueue: config.maxQueue, joinWindow: config.joinWindow, maxReviewed: config.maxReviewed });
  queue.load();
  await probeBrokers(stage.kafka, logger);
  const kafka = createKafka(stage.kafka, logger, '-review');
  const { topics } = stage;
  const absent = await missingTopics(kafka, [topics.input, topics.output, topics.feedback, topics.modelUpdates]);
  if (absent.length > 0) throw new RmBertError(`topic ${absent.join(', ')} does not exist: start \`rmbert serve\` with the same settings first (it creates its topics)`);
  const sender = new FeedbackSender(kafka, stage);
  const panel = new TrainerPanel(config.trainerMetricsUrl);
  const server = createReviewServer({ config, queue, feedback: sender, logger, panel });
  // Its own group every start (never committed): the whole model-updates topic is read each time.
  const updates = new ModelUpdatesReader(kafka, stage, `${config.groupId}.model-updates.${process.pid}-${randomBytes(3).toString('hex')}`, logger);
  const reader = new ReviewSourceReader(kafka, stage, config.groupId, logger);
  await server.app.listen({ host: config.host, port: config.port });
  const address = server.app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  const resent = await server.resendPending().catch((error: unknown) => {
    logger.warn('could not resend the feedback left unacknowledged; a submit of the same review sends it', { error: safeErrorMessage(error) });
    return 0;
  });
  if (resent > 0) logger.info('resent feedback left unacknowledged by the last run', { records: resent });
  // The queue is written to disk at most once a second (and when a reader batch finds it due); the
  // reader commits offsets only after that, so a crash in between means reading those records again.
  let dirty = false;
  let savedAt = 0;
  const saveIfDue = (force: boolean): boolean => {
    if (!dirty) return true;
    if (!force && Date.now() - savedAt < SAVE_INTERVAL_MS) return false;
    queue.save();
    dirty = false;
    savedAt = Date.now();
    return true;
  };
  await reader.start(async (inputs: ReviewInput[]) => {
    for (const input of inputs) {
      if (input.kind === 'document') queue.addDocument(toIncomingDocument(input.record));
      else queue.addAnnotations(toIncomingAnnotations(input.record));
    }
    dirty ||= inputs.length > 0;
    return saveIfDue(false);
  });
  const flusher = setInterval(() => {
    if (dirty && saveIfDue(true)) void reader.commitStored();
  }, SAVE_INTERVAL_MS);
  await updates.start((u) => panel.addUpdate({ version: u.version, createdAt: u.createdAt, metrics: { ...u.metrics } }));
  const poller = config.trainerMetricsUrl ? pollTrainer(panel, config.trainerMetricsUrl, config.trainerPollMs) : null;
  logger.info('review page listening', { url, host: config.host, port, stateDir: config.stateDir, counts: queue.counts() });
  return {
    url,
    async stop() {
      poller?.stop();
      clearInterval(flusher);
      await server.app.close();
      saveIfDue(true);
      await reader.commitStored();
      await reader.stop();
      await updates.stop();
      await sender.close();
      queue.save();
    },
  };
}

export async function run(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options: { ...configFlagOptions(), ...reviewFlagOptions(), help: { type: 'boolean', short: 'h' } } }).values as Record<string, string | boolean | undefined>;
  } catch (error) {
    console.error(`rmbert review: ${(error as Error).message}\nRun \`rmbert review --help\` for the options.`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const reviewFlags = new Set(REVIEW_SETTINGS.map((s) => s.flag));
  const ownFlags = Object.fromEntries(Object.entries(values).filter(([k]) => reviewFlags.has(k)));
  let stage: StageConfig;
  let config: ReviewConfig;
  try {
    stage = loadConfig(flagValues(values));
    config = loadReviewConfig(ownFlags);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`rmbert review: ${error.message}`);
      return 2;
    }
    throw error;
  }
  const logger = createJsonLogger({ level: stage.logLevel, fields: { service: 'rmbert-review' } });
  let session: ReviewSession;
  try {
    session = await startReview(stage, config, logger);
  } catch (error) {
    logger.error('could not start', { errorClass: error instanceof Error ? error.name : 'Error', error: safeErrorMessage(error) });
    console.error(`rmbert review: ${error instanceof Error ? error.message : String(error)}`);
    return error instanceof ConfigError ? 2 : 1;
  }
  return new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info('signal received: stopping', { signal });
      const timer = setTimeout(() => process.exit(1), 10_000);
      timer.unref();
      const finish = (code: number) => {
        // kafkajs can keep a socket referenced after disconnecting: end explicitly once stopped.
        setTimeout(() => process.exit(code), 500).unref();
        resolve(code);
      };
      session.stop().then(
        () => finish(0),
        (error: unknown) => {
          logger.error('stop failed', { error: safeErrorMessage(error) });
          finish(1);
        },
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}
