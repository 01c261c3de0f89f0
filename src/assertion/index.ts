export { AssertionAnnotator } from './context.ts';
export type { Assertion, AssertionEntity, AssertionOptions, AssertionTrigger } from './context.ts';
export {
  ASSERTION_PROPERTIES,
  DEFAULT_LEXICON_PATH,
  lexiconKey,
  loadTriggerLexicon,
  mergeLexicons,
  parseTriggerLexicon,
} from './lexicon.ts';
export type { AssertionProperty, TriggerDirection, TriggerKind, TriggerLexicon, TriggerReach, TriggerRule } from './lexicon.ts';
