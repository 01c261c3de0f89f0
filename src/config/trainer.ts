/**
 * Settings of the trainer sidecar (`rmbert train`), in the same style as the stage's table in
 * schema.ts: environment variable, flag, kind, default, bounds, validated once into a typed, frozen
 * object, every problem reported together in one ConfigError. The Kafka connection, topics, consumer
 * group, model directory and graph file come from the stage's settings (schema.ts); these are the
 * trainer's own.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors/index.ts';
import { SETTINGS } from './schema.ts';

export type AnnealChoice = 'sigmoid' | 'linear' | 'constant';
export type TrainerBackendChoice = 'auto' | 'node-gpu' | 'node' | 'wasm' | 'cpu';

export interface TrainerConfig {
  /** A round starts once this many feedback documents were stored since the last round. */
  minExamples: number;
  /** A round also starts when the oldest document stored since the last round has waited this long; 0 = never. */
  maxWaitMinutes: number;
  /** Consumption pauses while this many records wait to be stored. */
  maxBuffer: number;
  /** The trainer's state directory: the feedback store (feedback-store.json) with its holdout. */
  stateDir: string;
  /** Share of each corrected term's documents held out for evaluation, never trained on (stratified, persisted). */
  holdoutPercent: number;
  /** Frozen gold set (K-BERT NER TSV): the resolved path. */
  goldFile: string;
  /** Original training sentences replayed in every round (K-BERT NER TSV): the resolved path. */
  replayFile: string;
  replayRatio: number;
  replayMax: number;
  /** Training-set lexicon (surface, type, count) the label check compares feedback with: the resolved path. */
  lexiconFile: string;
  labelCheck: 'on' | 'off';
  /** Holdout: the challenger's strict micro F1 must be >= the champion's + this. */
  gateMargin: number;
  goldTolerance: number;
  typeTolerance: number;
  typeMinEntities: number;
  surfaceMaxLoss: number;
  surfaceMinMentions: number;
  maxDistance: number;
  feedbackDlqTopic: string;
  learningRate: number;
  gamma: number;
  anneal: AnnealChoice;
  annealT0Fraction: number;
  annealSpan: number;
  epochs: number;
  maxSteps: number;
  maxMinutes: number;
  batchTokens: number;
  batchSize: number;
  seed: number;
  backend: TrainerBackendChoice;
  /** --once: longest wait for reading the feedback topic up to its end. */
  readTimeoutMs: number;
}

type Kind = 'int' | 'float' | 'enum' | 'string';

export interface TrainerSetting {
  key: keyof TrainerConfig;
  env: string;
  flag: string;
  kind: Kind;
  default: string;
  values?: readonly string[];
  min?: number;
  max?: number;
  doc: string;
}

/** The gold set shipped with the product (a seeded subset of the medical dev split, 200 sentences). */
export const SHIPPED_GOLD_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../data/gold/medical-gold.tsv');

/**
 * The default gold set: always the shipped one, so that the gate scores the same in a checkout, an
 * image and CI. A larger set (e.g. the whole dev split) is a deliberate choice: --gold-file.
 */
export function defaultGoldFile(): string {
  return SHIPPED_GOLD_FILE;
}

/** The replay sample and lexicon shipped with the product (from the medical training split; see data/replay/PROVENANCE.md). */
export const SHIPPED_REPLAY_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../data/replay/medical-train-sample.tsv');
export const SHIPPED_LEXICON_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../data/replay/medical-train-lexicon.tsv');

// Defaults of the round and gate: chosen by the sweep in benchmarks/learning-loop.ts on synthetic
// sentences (never the test set); the figures are in benchmarks/results/learning-loop-sweep.json.
export const TRAINER_SETTINGS: readonly TrainerSetting[] = [
  { key: 'minExamples', env: 'RMBERT_TRAINER_MIN_EXAMPLES', flag: 'min-examples', kind: 'int', default: '20', min: 1, max: 1_000_000, doc: 'start a round once this many feedback documents were stored since the last round (quarantined and held-out ones count)' },
  { key: 'maxWaitMinutes', env: 'RMBERT_TRAINER_MAX_WAIT_MINUTES', flag: 'max-wait-minutes', kind: 'float', default: '60', min: 0, max: 10_080, doc: 'also start a round when the oldest document stored since the last round has waited this long; 0 = only --min-examples starts rounds' },
  { key: 'maxBuffer', env: 'RMBERT_TRAINER_MAX_BUFFER', flag: 'max-buffer', kind: 'int', default: '5000', min: 1, max: 1_000_000, doc: 'records read and not yet stored, at most; reading pauses until they are stored' },
  { key: 'stateDir', env: 'RMBERT_TRAINER_STATE_DIR', flag: 'state-dir', kind: 'string', default: 'trainer-state', doc: "the trainer's state directory: the feedback store with its holdout (keep it on a volume; one trainer per directory)" },
  { key: 'holdoutPercent', env: 'RMBERT_TRAINER_HOLDOUT_PERCENT', flag: 'holdout-percent', kind: 'int', default: '20', min: 0, max: 50, doc: "percentage of each corrected term's documents held out for evaluation, chosen when a document is first stored and kept for good" },
  { key: 'goldFile', env: 'RMBERT_TRAINER_GOLD_FILE', flag: 'gold-file', kind: 'string', default: '', doc: 'frozen gold set (K-BERT NER TSV: header text_a<TAB>label); empty = the package\'s data/gold/medical-gold.tsv (200 sentences of the medical dev split)' },
  { key: 'replayFile', env: 'RMBERT_TRAINER_REPLAY_FILE', flag: 'replay-file', kind: 'string', default: '', doc: "original training sentences replayed beside the feedback (K-BERT NER TSV); empty = the package's data/replay/medical-train-sample.tsv (1,000 sentences of the medical training split)" },
  { key: 'replayRatio', env: 'RMBERT_TRAINER_REPLAY_RATIO', flag: 'replay-ratio', kind: 'float', default: '2', min: 0, max: 100, doc: 'replayed training sentences per feedback sentence in a round (0 = no replay)' },
  { key: 'replayMax', env: 'RMBERT_TRAINER_REPLAY_MAX', flag: 'replay-max', kind: 'int', default: '400', min: 0, max: 1_000_000, doc: 'replayed training sentences per round, at most' },
  { key: 'lexiconFile', env: 'RMBERT_TRAINER_LEXICON_FILE', flag: 'lexicon-file', kind: 'string', default: '', doc: "the training set's entity surfaces with their type counts (surface<TAB>type<TAB>count, header line) for the label check; empty = the package's data/replay/medical-train-lexicon.tsv" },
  { key: 'labelCheck', env: 'RMBERT_TRAINER_LABEL_CHECK', flag: 'label-check', kind: 'enum', values: ['on', 'off'], default: 'on', doc: 'quarantine feedback whose entity types contradict the knowledge graph (--kg-file) or the training-set lexicon' },
  { key: 'gateMargin', env: 'RMBERT_TRAINER_GATE_MARGIN', flag: 'gate-margin', kind: 'float', default: '0', min: -1, max: 1, doc: "promote only if the challenger's strict micro F1 on the holdout is >= the champion's + this (a negative margin, written --gate-margin=-0.01, tolerates a loss)" },
  { key: 'goldTolerance', env: 'RMBERT_TRAINER_GOLD_TOLERANCE', flag: 'gold-tolerance', kind: 'float', default: '0.005', min: -1, max: 1, doc: "the challenger's gold-set strict micro F1 may fall at most this much below the champion's (0.005 = half a point)" },
  { key: 'typeTolerance', env: 'RMBERT_TRAINER_TYPE_TOLERANCE', flag: 'type-tolerance', kind: 'float', default: '0.02', min: 0, max: 1, doc: 'gold-set F1 of any entity type may fall at most this much' },
  { key: 'typeMinEntities', env: 'RMBERT_TRAINER_TYPE_MIN_ENTITIES', flag: 'type-min-entities', kind: 'int', default: '50', min: 1, max: 1_000_000, doc: 'types with fewer gold entities are not checked one by one (below 50, one entity moves F1 by 2 points or more)' },
  { key: 'surfaceMaxLoss', env: 'RMBERT_TRAINER_SURFACE_MAX_LOSS', flag: 'surface-max-loss', kind: 'float', default: '0.34', min: 0, max: 1, doc: 'a gold surface (with enough mentions) may lose at most this share of the mentions the champion found' },
  { key: 'surfaceMinMentions', env: 'RMBERT_TRAINER_SURFACE_MIN_MENTIONS', flag: 'surface-min-mentions', kind: 'int', default: '3', min: 1, max: 1_000_000, doc: 'gold surfaces with fewer mentions are not checked one by one' },
  { key: 'maxDistance', env: 'RMBERT_TRAINER_MAX_DISTANCE', flag: 'max-distance', kind: 'float', default: '0.05', min: 0, max: 100, doc: 'largest move of one round, ||theta - theta*||_1 / ||theta*||_1 (0 = no cap)' },
  { key: 'feedbackDlqTopic', env: 'RMBERT_TRAINER_DLQ_TOPIC', flag: 'feedback-dlq-topic', kind: 'string', default: 'emr.feedback.dlq', doc: "dead-letter topic of unusable feedback records (the documents' dead-letter topic is the stage's)" },
  { key: 'learningRate', env: 'RMBERT_TRAINER_LR', flag: 'lr', kind: 'float', default: '2e-4', min: 1e-9, max: 1, doc: 'peak learning rate (linear warm-up over 10% of the steps, then linear decay); lr x gamma must be <= 1' },
  { key: 'gamma', env: 'RMBERT_TRAINER_GAMMA', flag: 'gamma', kind: 'float', default: '1000', min: 0, max: 1e9, doc: "RecAdam's quadratic-penalty coefficient (pull towards the champion's weights)" },
  { key: 'anneal', env: 'RMBERT_TRAINER_ANNEAL', flag: 'anneal', kind: 'enum', values: ['sigmoid', 'linear', 'constant'], default: 'sigmoid', doc: 'RecAdam annealing of lambda(t)' },
  { key: 'annealT0Fraction', env: 'RMBERT_TRAINER_ANNEAL_T0_FRACTION', flag: 'anneal-t0-fraction', kind: 'float', default: '0.2', min: 0, max: 1, doc: "annealing midpoint t0 as a fraction of the round's planned steps (the schedule scales with the round)" },
  { key: 'annealSpan', env: 'RMBERT_TRAINER_ANNEAL_SPAN', flag: 'anneal-span', kind: 'float', default: '10', min: 0, max: 1000, doc: "sigmoid steepness over the whole round: k = span / planned steps" },
  { key: 'epochs', env: 'RMBERT_TRAINER_EPOCHS', flag: 'epochs', kind: 'int', default: '5', min: 1, max: 1000, doc: 'passes over the round\'s feedback and replay, at most' },
  { key: 'maxSteps', env: 'RMBERT_TRAINER_MAX_STEPS', flag: 'max-steps', kind: 'int', default: '1000', min: 1, max: 10_000_000, doc: 'optimizer steps per round, at most' },
  { key: 'maxMinutes', env: 'RMBERT_TRAINER_MAX_MINUTES', flag: 'max-minutes', kind: 'float', default: '20', min: 0.01, max: 10_080, doc: 'training minutes per round, at most (evaluation not counted)' },
  { key: 'batchTokens', env: 'RMBERT_TRAINER_BATCH_TOKENS', flag: 'batch-tokens', kind: 'int', default: '1024', min: 16, max: 1_000_000, doc: 'padded tokens per training batch, at most' },
  { key: 'batchSize', env: 'RMBERT_TRAINER_BATCH_SIZE', flag: 'batch-size', kind: 'int', default: '16', min: 1, max: 4096, doc: 'sentences per training batch, at most' },
  { key: 'seed', env: 'RMBERT_TRAINER_SEED', flag: 'seed', kind: 'int', default: '1', min: 0, max: 2_147_483_647, doc: 'seed of the replay sample, the batch order and dropout (the same feedback and settings give the same challenger)' },
  { key: 'backend', env: 'RMBERT_TRAINER_BACKEND', flag: 'backend', kind: 'enum', values: ['auto', 'node-gpu', 'node', 'wasm', 'cpu'], default: 'auto', doc: 'TensorFlow.js backend for training' },
  { key: 'readTimeoutMs', env: 'RMBERT_TRAINER_READ_TIMEOUT_MS', flag: 'read-timeout-ms', kind: 'int', default: '60000', min: 100, max: 3_600_000, doc: 'with --once: longest wait for reading the feedback topic up to its end' },
];

export interface TrainerConfigSources {
  env?: Readonly<Record<string, string | undefined>>;
  /** By flag name; they win over the environment. */
  flags?: Readonly<Record<string, string | boolean | undefined>>;
  /** By key; they win over flags and environment (tests, embedding). */
  overrides?: Readonly<Partial<Record<keyof TrainerConfig, string | number>>>;
}

function parseValue(s: TrainerSetting, raw: string, origin: string, problems: string[]): string | number | undefined {
  const where = `trainer.${s.key} (${origin})`;
  const v = raw.trim();
  switch (s.kind) {
    case 'string':
      return v;
    case 'enum':
      if (!s.values!.includes(v.toLowerCase())) {
        problems.push(`${where}: "${raw}" is not one of ${s.values!.join(', ')}`);
        return undefined;
      }
      return v.toLowerCase();
    case 'int':
    case 'float': {
      const ok = s.kind === 'int' ? /^-?\d+$/.test(v) : v !== '' && Number.isFinite(Number(v));
      if (!ok) {
        problems.push(`${where}: "${raw}" is not ${s.kind === 'int' ? 'an integer' : 'a number'}`);
        return undefined;
      }
      const n = Number(v);
      if ((s.min !== undefined && n < s.min) || (s.max !== undefined && n > s.max)) {
        problems.push(`${where}: ${n} is outside ${s.min ?? '-inf'}..${s.max ?? 'inf'}`);
        return undefined;
      }
      return n;
    }
  }
}

/** Validates every trainer setting; throws one ConfigError listing every problem. */
export function buildTrainerConfig(sources: TrainerConfigSources = {}): TrainerConfig {
  const problems: string[] = [];
  const env = sources.env ?? {};
  const flags = sources.flags ?? {};
  const overrides = sources.overrides ?? {};
  const known = new Set<string>(TRAINER_SETTINGS.map((s) => s.key));
  for (const key of Object.keys(overrides)) if (!known.has(key)) problems.push(`trainer.${key}: unknown setting`);
  const out: Record<string, string | number> = {};
  for (const s of TRAINER_SETTINGS) {
    let value: string | number | undefined;
    const o = overrides[s.key];
    if (o !== undefined) value = typeof o === 'number' ? o : parseValue(s, o, 'override', problems);
    else if (flags[s.flag] !== undefined && typeof flags[s.flag] === 'string') value = parseValue(s, flags[s.flag] as string, `--${s.flag}`, problems);
    else if (env[s.env] !== undefined) value = parseValue(s, env[s.env]!, s.env, problems);
    else value = parseValue(s, s.default, 'default', problems);
    if (value !== undefined) out[s.key] = value;
  }
  const gold = (out.goldFile as string | undefined) || defaultGoldFile();
  out.goldFile = path.resolve(gold);
  if (!existsSync(out.goldFile)) problems.push(`trainer.goldFile: ${out.goldFile} does not exist (RMBERT_TRAINER_GOLD_FILE or --gold-file)`);
  out.replayFile = path.resolve((out.replayFile as string | undefined) || SHIPPED_REPLAY_FILE);
  if (!existsSync(out.replayFile)) problems.push(`trainer.replayFile: ${out.replayFile} does not exist (RMBERT_TRAINER_REPLAY_FILE or --replay-file)`);
  out.lexiconFile = path.resolve((out.lexiconFile as string | undefined) || SHIPPED_LEXICON_FILE);
  if (!existsSync(out.lexiconFile)) problems.push(`trainer.lexiconFile: ${out.lexiconFile} does not exist (RMBERT_TRAINER_LEXICON_FILE or --lexicon-file)`);
  out.stateDir = path.resolve((out.stateDir as string | undefined) || 'trainer-state');
  if (!out.feedbackDlqTopic) problems.push('trainer.feedbackDlqTopic: empty (RMBERT_TRAINER_DLQ_TOPIC or --feedback-dlq-topic)');
  const lr = out.learningRate as number | undefined;
  const gamma = out.gamma as number | undefined;
  if (lr !== undefined && gamma !== undefined && lr * gamma > 1) {
    // Each step moves theta - theta* by the factor 1 - lr (1 - lambda) gamma: above 1 it overshoots the champion's weights.
    problems.push(`trainer.learningRate x trainer.gamma = ${lr * gamma} > 1: the pull towards the champion would overshoot every step; lower --lr or --gamma`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(out as unknown as TrainerConfig);
}

/** The trainer configuration from process.env and parsed flags. */
export function loadTrainerConfig(flags: TrainerConfigSources['flags'] = {}, overrides: TrainerConfigSources['overrides'] = {}): TrainerConfig {
  return buildTrainerConfig({ env: process.env, flags, overrides });
}

/** node:util parseArgs option specs for the trainer's flags. */
export function trainerFlagOptions(): Record<string, { type: 'string' }> {
  return Object.fromEntries(TRAINER_SETTINGS.map((s) => [s.flag, { type: 'string' as const }]));
}

/** Help text for the trainer's settings: flag, environment variable, default and meaning. */
export function trainerConfigHelp(): string {
  return TRAINER_SETTINGS.map((s) => {
    const value = s.kind === 'enum' ? ` <${s.values!.join('|')}>` : ' <value>';
    const def = s.default ? ` (default ${s.default})` : '';
    return `  --${s.flag}${value}\n      ${s.env}: ${s.doc}${def}`;
  }).join('\n');
}

/** Flags of the trainer that would clash with the stage's settings' flags (empty: none). */
export function trainerFlagClashes(): string[] {
  const stage = new Set(SETTINGS.flatMap((s) => [s.flag, `no-${s.flag}`]));
  return TRAINER_SETTINGS.filter((s) => stage.has(s.flag)).map((s) => s.flag);
}
