export { PromStageMetrics, STAGES, ERROR_CLASSES, type PromStageMetricsOptions } from './stage-metrics.ts';
export { startMetricsServer, type MetricsServer, type MetricsServerOptions, type Readiness } from './server.ts';
export { PromTrainerMetrics, type TrainerRoundScores, type TrainerStoreCounts } from './trainer-metrics.ts';
