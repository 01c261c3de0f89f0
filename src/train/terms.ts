/**
 * A term list as knowledge: the entity surfaces of a corpus's TRAINING split with their most frequent
 * type, written as .spo triples (surface, 词表, type name) that the knowledge layer injects like any graph.
 * Hospitals keep such lists; the relation 词表 ("term list") differs from the graph's 类别 so the model
 * can learn how far to trust each source. To keep it from trusting the list blindly, training can drop a
 * random share of its surfaces (`dropTerms`), a different share each epoch; evaluation uses the whole list.
 */
import { mulberry32 } from '../domain/random.ts';
import type { NerSentence } from './datasets.ts';

export const TERM_RELATION = '词表';

/** Entity type -> the object written into the triples (the Chinese names Medical.spo uses). */
export const TERM_TYPE_NAMES: Readonly<Record<string, string>> = {
  BodyPart: '部位',
  Symptom: '症状',
  Disease: '疾病',
  Examine: '检查',
  Cure: '治疗',
  PER: '人名',
  ORG: '机构',
  LOC: '地名',
};

/** Surface -> its most frequent entity type in `sentences` (ties: the type listed first in `types`). */
export function collectTerms(sentences: readonly NerSentence[], types: readonly string[]): Map<string, string> {
  const counts = new Map<string, Map<string, number>>();
  for (const s of sentences) {
    let start = -1;
    let type = '';
    const flush = (end: number) => {
      if (start < 0) return;
      const surface = s.chars.slice(start, end).join('');
      const byType = counts.get(surface) ?? new Map<string, number>();
      byType.set(type, (byType.get(type) ?? 0) + 1);
      counts.set(surface, byType);
      start = -1;
    };
    s.labels.forEach((label, i) => {
      if (label.startsWith('I-') && start >= 0 && label.slice(2) === type) return;
      flush(i);
      if (label !== 'O') {
        start = i;
        type = label.slice(2);
      }
    });
    flush(s.labels.length);
  }
  const terms = new Map<string, string>();
  for (const [surface, byType] of counts) {
    if (/[\t\r\n]/.test(surface) || surface.trim() !== surface || surface.length === 0) continue;
    let best = '';
    let bestCount = -1;
    for (const t of types) {
      const c = byType.get(t) ?? 0;
      if (c > bestCount) {
        best = t;
        bestCount = c;
      }
    }
    if (bestCount > 0) terms.set(surface, best);
  }
  return terms;
}

/** The terms without a seeded random `fraction` of them (the same seed drops the same surfaces). */
export function dropTerms(terms: ReadonlyMap<string, string>, fraction: number, seed: number): Map<string, string> {
  if (!(fraction >= 0 && fraction < 1)) throw new RangeError(`drop fraction must be in [0, 1), got ${fraction}`);
  const random = mulberry32(seed);
  const kept = new Map<string, string>();
  for (const [surface, type] of [...terms].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (random() >= fraction) kept.set(surface, type);
  }
  return kept;
}

/** .spo text of a term list, one triple per surface, sorted by surface. */
export function termsToSpo(terms: ReadonlyMap<string, string>): string {
  const lines = [...terms]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([surface, type]) => `${surface}\t${TERM_RELATION}\t${TERM_TYPE_NAMES[type] ?? type}`);
  return lines.length ? `${lines.join('\n')}\n` : '';
}
