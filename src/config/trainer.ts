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
  /** A round starts once this many feedback documents (not held out) are buffered. */
  minExamples: number;
  /** A round also starts when the oldest buffered training document has waited this long (and at least one is there); 0 = never. */
  maxWaitMinutes: number;
  /** Consumption pauses while this many records are buffered. */
  maxBuffer: number;
  /** Percentage of documents (chosen by a hash of the document id) held out for evaluation, never trained on. */
  holdoutPercent: number;
  /** Held-out documents kept across rounds (oldest dropped first). */
  holdoutMax: number;
  /** Frozen gold set (K-BERT NER TSV): the resolved path. */
  goldFile: string;
  /** The challenger's strict micro F1 must be >= the champion's + this on the gold set and on the holdout. */
  gateMargin: number;
  learningRate: number;
  gamma: number;
  anneal: AnnealChoice;
  annealK: number;
  annealT0: number;
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

export const TRAINER_SETTINGS: readonly TrainerSetting[] = [
  { key: 'minExamples', env: 'RMBERT_TRAINER_MIN_EXAMPLES', flag: 'min-examples', kind: 'int', default: '50', min: 1, max: 1_000_000, doc: 'start a round once this many feedback documents (not held out) are buffered' },
  { key: 'maxWaitMinutes', env: 'RMBERT_TRAINER_MAX_WAIT_MINUTES', flag: 'max-wait-minutes', kind: 'float', default: '60', min: 0, max: 10_080, doc: 'also start a round when the oldest buffered document has waited this long; 0 = only --min-examples starts rounds' },
  { key: 'maxBuffer', env: 'RMBERT_TRAINER_MAX_BUFFER', flag: 'max-buffer', kind: 'int', default: '5000', min: 1, max: 1_000_000, doc: 'records buffered at most; reading pauses until a round has used them' },
  { key: 'holdoutPercent', env: 'RMBERT_TRAINER_HOLDOUT_PERCENT', flag: 'holdout-percent', kind: 'int', default: '10', min: 0, max: 50, doc: 'percentage of documents (by a hash of the document id) held out for evaluation' },
  { key: 'holdoutMax', env: 'RMBERT_TRAINER_HOLDOUT_MAX', flag: 'holdout-max', kind: 'int', default: '2000', min: 0, max: 1_000_000, doc: 'held-out documents kept across rounds (oldest dropped first)' },
  { key: 'goldFile', env: 'RMBERT_TRAINER_GOLD_FILE', flag: 'gold-file', kind: 'string', default: '', doc: 'frozen gold set (K-BERT NER TSV: header text_a<TAB>label); empty = the package\'s data/gold/medical-gold.tsv (200 sentences of the medical dev split)' },
  { key: 'gateMargin', env: 'RMBERT_TRAINER_GATE_MARGIN', flag: 'gate-margin', kind: 'float', default: '0', min: -1, max: 1, doc: "promote only if the challenger's strict micro F1 is >= the champion's + this, on the gold set and on the holdout (0 = at least as good; a negative margin, written --gate-margin=-0.01, tolerates a loss)" },
  { key: 'learningRate', env: 'RMBERT_TRAINER_LR', flag: 'lr', kind: 'float', default: '5e-5', min: 1e-9, max: 1, doc: 'peak learning rate (linear warm-up over 10% of the steps, then linear decay); lr x gamma must be <= 1' },
  { key: 'gamma', env: 'RMBERT_TRAINER_GAMMA', flag: 'gamma', kind: 'float', default: '5000', min: 0, max: 1e9, doc: "RecAdam's quadratic-penalty coefficient (pull towards the champion's weights)" },
  { key: 'anneal', env: 'RMBERT_TRAINER_ANNEAL', flag: 'anneal', kind: 'enum', values: ['sigmoid', 'linear', 'constant'], default: 'sigmoid', doc: 'RecAdam annealing of lambda(t)' },
  { key: 'annealK', env: 'RMBERT_TRAINER_ANNEAL_K', flag: 'anneal-k', kind: 'float', default: '0.05', min: 0, max: 100, doc: 'sigmoid steepness k' },
  { key: 'annealT0', env: 'RMBERT_TRAINER_ANNEAL_T0', flag: 'anneal-t0', kind: 'int', default: '100', min: 0, max: 10_000_000, doc: 'annealing midpoint t0 in steps (a round is short: the paper\'s 1000 would keep the model at the champion)' },
  { key: 'epochs', env: 'RMBERT_TRAINER_EPOCHS', flag: 'epochs', kind: 'int', default: '3', min: 1, max: 1000, doc: 'passes over the round\'s feedback, at most' },
  { key: 'maxSteps', env: 'RMBERT_TRAINER_MAX_STEPS', flag: 'max-steps', kind: 'int', default: '300', min: 1, max: 10_000_000, doc: 'optimizer steps per round, at most' },
  { key: 'maxMinutes', env: 'RMBERT_TRAINER_MAX_MINUTES', flag: 'max-minutes', kind: 'float', default: '20', min: 0.01, max: 10_080, doc: 'training minutes per round, at most (evaluation not counted)' },
  { key: 'batchTokens', env: 'RMBERT_TRAINER_BATCH_TOKENS', flag: 'batch-tokens', kind: 'int', default: '1024', min: 16, max: 1_000_000, doc: 'padded tokens per training batch, at most' },
  { key: 'batchSize', env: 'RMBERT_TRAINER_BATCH_SIZE', flag: 'batch-size', kind: 'int', default: '16', min: 1, max: 4096, doc: 'sentences per training batch, at most' },
  { key: 'seed', env: 'RMBERT_TRAINER_SEED', flag: 'seed', kind: 'int', default: '1', min: 0, max: 2_147_483_647, doc: 'seed of the batch order and dropout' },
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
