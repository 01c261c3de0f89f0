/**
 * The trigger lexicon: data, not code, so that a hospital can add its own phrasing
 * (data/assertion/triggers.tsv; columns and meaning in its header and in data/assertion/GUIDELINE.md).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { normalizeText } from '../domain/text.ts';
import { SchemaError } from '../errors/index.ts';

export type AssertionProperty = 'negation' | 'uncertainty' | 'history' | 'family';
export type TriggerDirection = 'forward' | 'backward' | 'bidirectional';
/**
 * trigger: opens a scope. pseudo: a phrase that contains a trigger but asserts nothing (无明显诱因); it
 * consumes the text and closes open scopes of its property. termination: closes scopes of its property.
 */
export type TriggerKind = 'trigger' | 'pseudo' | 'termination';
/** clause: the scope stops at ，as well as at sentence punctuation; sentence: only at 。；！？. */
export type TriggerReach = 'clause' | 'sentence';

export interface TriggerRule {
  /** As written in the lexicon. */
  trigger: string;
  property: AssertionProperty;
  direction: TriggerDirection;
  kind: TriggerKind;
  reach: TriggerReach;
  /** Entity types the rule applies to; empty means every type. */
  types: readonly string[];
  note: string;
}

export interface TriggerLexicon {
  readonly rules: readonly TriggerRule[];
}

export const ASSERTION_PROPERTIES: readonly AssertionProperty[] = ['negation', 'uncertainty', 'history', 'family'];
const DIRECTIONS: readonly TriggerDirection[] = ['forward', 'backward', 'bidirectional'];
const KINDS: readonly TriggerKind[] = ['trigger', 'pseudo', 'termination'];
const REACHES: readonly TriggerReach[] = ['clause', 'sentence'];

export const DEFAULT_LEXICON_PATH = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../data/assertion/triggers.tsv',
);

function oneOf<T extends string>(value: string, allowed: readonly T[], what: string, where: string): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new SchemaError(`${where}: ${what} must be one of ${allowed.join(', ')}, got "${value}"`);
}

/** Parses the TSV text. The header row is required so that a file with shuffled columns fails loudly. */
export function parseTriggerLexicon(tsv: string, source = 'lexicon'): TriggerLexicon {
  const rules: TriggerRule[] = [];
  let header: string[] | undefined;
  const lines = tsv.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === '' || line.startsWith('#')) continue;
    const cells = line.split('\t');
    const where = `${source}:${i + 1}`;
    if (header === undefined) {
      header = cells.map((c) => c.trim());
      for (const required of ['trigger', 'property', 'direction', 'kind']) {
        if (!header.includes(required)) throw new SchemaError(`${where}: header lacks column "${required}"`);
      }
      continue;
    }
    const cell = (name: string): string => {
      const at = header!.indexOf(name);
      return at < 0 ? '' : (cells[at] ?? '').trim();
    };
    const trigger = cell('trigger');
    if (trigger === '') throw new SchemaError(`${where}: empty trigger`);
    rules.push({
      trigger,
      property: oneOf(cell('property'), ASSERTION_PROPERTIES, 'property', where),
      direction: oneOf(cell('direction'), DIRECTIONS, 'direction', where),
      kind: oneOf(cell('kind'), KINDS, 'kind', where),
      reach: cell('reach') === '' ? 'clause' : oneOf(cell('reach'), REACHES, 'reach', where),
      types: cell('types') === '' ? [] : cell('types').split(',').map((t) => t.trim()).filter((t) => t !== ''),
      note: cell('note'),
    });
  }
  if (header === undefined) throw new SchemaError(`${source}: no header row`);
  return { rules };
}

export function loadTriggerLexicon(file = DEFAULT_LEXICON_PATH): TriggerLexicon {
  return parseTriggerLexicon(readFileSync(file, 'utf8'), file);
}

/** Several lexicons (the shipped one plus a hospital's additions) act as one. */
export function mergeLexicons(...lexicons: TriggerLexicon[]): TriggerLexicon {
  return { rules: lexicons.flatMap((l) => l.rules) };
}

/** Lexicon keys are compared in normalised form so that ？ and ? (，and ,) are one trigger. */
export function lexiconKey(trigger: string): string {
  return normalizeText(trigger);
}
