/**
 * `rmbert serve`: the streaming stage. Composition root: configuration, logger, metrics server,
 * knowledge graph (Neo4j, or in memory in embedded mode), model loader and catalog, then the stage.
 */
import { parseArgs } from 'node:util';
import { configFlagOptions, configHelp, describeConfig, flagValues, loadConfig, type StageConfig } from '../../config/index.ts';
import { ConfigError, RmBertError } from '../../errors/index.ts';
import { PromStageMetrics, startMetricsServer, type MetricsServer } from '../../metrics/index.ts';
import { createJsonLogger, safeErrorMessage } from '../../pipeline/logging.ts';
import type { Logger } from '../../pipeline/ports.ts';
import { probeBrokers } from '../../stream/probe.ts';
import { startStage, type StageHandle } from '../../stream/stage.ts';
import { EXIT_DEADLINE, EXIT_FAILED, stageDeadlineMs, stopAndExit } from '../shutdown.ts';
import { createAssertionAssessor, createModelLoader, modelDirectoryCatalog, openKnowledge, type GraphKnowledge } from '../stage-wiring.ts';

export const summary = 'run the streaming stage: EMR documents from Kafka, entities out exactly once, /metrics';

const HELP = `usage: rmbert serve [options]

Reads EmrDocument records (Avro) from the input topic in a consumer group, annotates them in
micro-batches (sentences, knowledge-graph matches from Neo4j, knowledge-injected BERT), and publishes
EntityAnnotations keyed by document id to the output topic. Results, dead letters and input offsets
are committed in one Kafka transaction per micro-batch (exactly once for read_committed consumers).
Bad records go to the dead-letter topic. A ModelUpdate on the model-updates topic, or a new artifact
in the model directory, swaps the model between micro-batches. SIGTERM/SIGINT finish the in-flight
micro-batch, commit and exit 0 within the shutdown deadline, in every state (the process is ended
explicitly: after a broker outage a client socket can otherwise keep it alive).

Serves /metrics (Prometheus), /healthz and /readyz on the metrics port. Logs are JSON lines on stdout.
Every option can also be set by its environment variable; flags win.

options:
${configHelp()}
  -h, --help
      this text

exit status: 0 stopped cleanly (the in-flight micro-batch committed), 1 failed, 2 bad configuration,
3 the shutdown did not finish within the deadline (input not committed is processed again by the
next stage).
`;

export interface ServeSession {
  config: StageConfig;
  stage: StageHandle;
  metrics: PromStageMetrics;
  server: MetricsServer;
  knowledge: GraphKnowledge | null;
  logger: Logger;
  /** Stops the stage (within `stageDeadlineMs`, default the configured deadline), then the metrics server and the graph connection. */
  stop(stageDeadlineMs?: number): Promise<{ clean: boolean }>;
}

/** Starts everything `serve` runs, in this process (also used by `rmbert demo`). */
export async function startServe(config: StageConfig, logger: Logger): Promise<ServeSession> {
  // Before any server is contacted: a lexicon that does not parse is a configuration error.
  const assertions = createAssertionAssessor(config.assertion, logger);
  await probeBrokers(config.kafka, logger);
  const metrics = new PromStageMetrics();
  let stage: StageHandle | null = null;
  const server = await startMetricsServer({
    registry: metrics.registry,
    port: config.metrics.port,
    host: config.metrics.host,
    readiness: () => stage?.readiness() ?? { ready: false, checks: { started: false } },
  });
  logger.info('metrics server listening', { url: server.url });
  let knowledge: GraphKnowledge | null = null;
  try {
    if (config.knowledge.enabled) knowledge = await openKnowledge(config, logger, metrics);
    stage = await startStage(config, {
      logger,
      metrics,
      modelLoader: createModelLoader({ engine: config.model.engine, logger }),
      modelCatalog: modelDirectoryCatalog(config.model.dir),
      knowledge,
      assertions,
    });
  } catch (error) {
    await knowledge?.close().catch(() => undefined);
    await server.close();
    throw error;
  }
  const running = stage;
  const graph = knowledge;
  let stopping: Promise<{ clean: boolean }> | null = null;
  return {
    config,
    stage: running,
    metrics,
    server,
    knowledge: graph,
    logger,
    stop(stageDeadline?: number) {
      stopping ??= (async () => {
        const result = await running.stop(stageDeadline);
        await graph?.close().catch(() => undefined);
        await server.close();
        return result;
      })();
      return stopping;
    },
  };
}

export async function run(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    const parsed = parseArgs({ args: argv, options: { ...configFlagOptions(), help: { type: 'boolean', short: 'h' } }, allowPositionals: false });
    values = parsed.values as Record<string, string | boolean | undefined>;
  } catch (error) {
    console.error(`rmbert serve: ${(error as Error).message}\nRun \`rmbert serve --help\` for the options.`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  let config: StageConfig;
  try {
    config = loadConfig(flagValues(values));
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`rmbert serve: ${error.message}`);
      return 2;
    }
    throw error;
  }
  const logger = createJsonLogger({ level: config.logLevel, fields: { service: 'rmbert-stage', instance: config.instanceId } });
  logger.info('starting', { config: describeConfig(config) });
  let session: ServeSession;
  try {
    session = await startServe(config, logger);
  } catch (error) {
    logger.error('could not start', { errorClass: error instanceof Error ? error.name : 'Error', error: safeErrorMessage(error) });
    if (error instanceof RmBertError) console.error(`rmbert serve: ${error.message}`);
    // A configuration found wrong only by a server (rejected credentials) is still a configuration error.
    return error instanceof ConfigError ? 2 : 1;
  }

  return new Promise<number>((resolve) => {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        logger.warn('second signal: exiting now', { signal });
        process.exit(1);
      }
      signalled = true;
      logger.info('signal received: stopping', { signal, deadlineMs: config.shutdownDeadlineMs });
      const deadlineMs = config.shutdownDeadlineMs;
      void stopAndExit(() => session.stop(stageDeadlineMs(deadlineMs)), EXIT_DEADLINE, { deadlineMs, logger }).then(resolve);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    // A programming error must not end the process without leaving the consumer group: the member's
    // partitions would wait for its session to expire. Stop as after a failure (exit 1).
    const onFatal = (error: unknown) => {
      if (signalled) return;
      signalled = true;
      logger.error('uncaught error: stopping', { errorClass: error instanceof Error ? error.name : 'Error', error: safeErrorMessage(error) });
      const deadlineMs = config.shutdownDeadlineMs;
      void stopAndExit(async () => ({ ...(await session.stop(stageDeadlineMs(deadlineMs))), clean: false }), EXIT_FAILED, { deadlineMs, logger }).then(resolve);
    };
    process.once('uncaughtException', onFatal);
    process.once('unhandledRejection', onFatal);
    session.stage.finished.catch((error: unknown) => {
      logger.error('stage failed', { error: safeErrorMessage(error) });
      const deadlineMs = config.shutdownDeadlineMs;
      void stopAndExit(async () => ({ ...(await session.stop(stageDeadlineMs(deadlineMs))), clean: false }), EXIT_FAILED, { deadlineMs, logger }).then(resolve);
    });
  });
}
