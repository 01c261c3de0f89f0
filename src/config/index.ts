/**
 * Configuration entry points. This module is the only place in src/ that reads process.env.
 */
import os from 'node:os';
import { SETTINGS, buildConfig, type ConfigSources, type StageConfig } from './schema.ts';

export * from './schema.ts';

/** node:util parseArgs option specs for every setting's flag (booleans take no value, the rest a string). */
export function configFlagOptions(): Record<string, { type: 'string' | 'boolean' }> {
  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const s of SETTINGS) options[s.flag] = { type: s.kind === 'bool' ? 'boolean' : 'string' };
  return options;
}

/** Help text for the settings: flag, environment variable, default and meaning. */
export function configHelp(): string {
  return SETTINGS.map((s) => {
    const value = s.kind === 'bool' ? '' : s.kind === 'enum' ? ` <${s.values!.filter((v) => v).join('|')}>` : ' <value>';
    const def = s.kind === 'secret' ? '' : s.default ? ` (default ${s.default})` : '';
    return `  --${s.flag}${value}\n      ${s.env}: ${s.doc}${def}`;
  }).join('\n');
}

/**
 * The stage configuration from process.env and parsed flags, validated once, typed and frozen.
 * Throws ConfigError listing every problem.
 */
export function loadConfig(flags: ConfigSources['flags'] = {}, overrides: ConfigSources['overrides'] = {}): StageConfig {
  return buildConfig({ env: process.env, flags, overrides, hostname: os.hostname(), pid: process.pid });
}

