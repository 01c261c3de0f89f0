/**
 * Configuration entry points. This module is the only place in src/ that reads process.env.
 */
import os from 'node:os';
import { PACKAGE_ROOT, SETTINGS, buildConfig, buildGraphStoreConfig, type ConfigSources, type GraphStoreConfig, type StageConfig } from './schema.ts';

export * from './schema.ts';

/** node:util parseArgs option specs for every setting's flag; booleans that default to true also get --no-<flag>. */
export function configFlagOptions(): Record<string, { type: 'string' | 'boolean' }> {
  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const s of SETTINGS) {
    options[s.flag] = { type: s.kind === 'bool' ? 'boolean' : 'string' };
    if (s.kind === 'bool' && s.default === 'true') options[`no-${s.flag}`] = { type: 'boolean' };
  }
  return options;
}

/** Flag values by setting flag name from parseArgs values (folds --no-<flag> into <flag>: false). */
export function flagValues(parsed: Record<string, string | boolean | undefined>): Record<string, string | boolean | undefined> {
  const out: Record<string, string | boolean | undefined> = {};
  const flags = new Set(SETTINGS.map((s) => s.flag));
  for (const [k, v] of Object.entries(parsed)) {
    if (v === undefined) continue;
    if (flags.has(k)) out[k] = v;
    else if (k.startsWith('no-') && flags.has(k.slice(3)) && v === true) out[k.slice(3)] = false;
  }
  return out;
}

/** Help text for the settings: flag, environment variable, default and meaning. */
export function configHelp(): string {
  return SETTINGS.map((s) => {
    const value = s.kind === 'bool' ? '' : s.kind === 'enum' ? ` <${s.values!.filter((v) => v).join('|')}>` : ' <value>';
    // A secret's only non-empty default is the local server's public password, worth showing.
    const def = !s.default ? '' : s.packagePath ? ` (default ${s.default} in the package, ${PACKAGE_ROOT})` : ` (default ${s.default})`;
    const negative = s.kind === 'bool' && s.default === 'true' ? `, --no-${s.flag}` : '';
    return `  --${s.flag}${value}${negative}\n      ${s.env}: ${s.doc}${def}`;
  }).join('\n');
}

/**
 * The stage configuration from process.env and parsed flags, validated once, typed and frozen.
 * Throws ConfigError listing every problem.
 */
export function loadConfig(
  flags: ConfigSources['flags'] = {},
  overrides: ConfigSources['overrides'] = {},
  defaults: ConfigSources['defaults'] = {},
): StageConfig {
  return buildConfig({ env: process.env, flags, overrides, defaults, hostname: os.hostname(), pid: process.pid });
}

/** The Neo4j connection and graph name from process.env and flags (by setting flag name), validated and frozen. */
export function loadGraphStoreConfig(flags: ConfigSources['flags'] = {}): GraphStoreConfig {
  return buildGraphStoreConfig({ env: process.env, flags });
}

/**
 * Overrides that give one run (a demo, a benchmark) its own topics, consumer group and transactional
 * ids, so that it never shares state with another run on the same broker.
 */
export function isolatedRunOverrides(run: string): Record<string, string | number> {
  return {
    'topics.input': `${run}.documents`,
    'topics.output': `${run}.entities`,
    'topics.deadLetter': `${run}.dlq`,
    'topics.feedback': `${run}.feedback`,
    'topics.modelUpdates': `${run}.model-updates`,
    groupId: `${run}.stage`,
    transactionalIdPrefix: run,
    topicPartitions: 1,
  };
}
