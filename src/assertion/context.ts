/**
 * ConText for Chinese clinical text: each entity gets polarity, certainty, temporality and experiencer
 * from the triggers around it in its sentence. Scope rules, in the order they matter (details and the
 * reasons in data/assertion/GUIDELINE.md):
 *   - a forward trigger covers the entities after it up to the end of its clause (，) or sentence
 *     (。；！？), as its `reach` says; a backward trigger covers the entities before it, likewise;
 *     bidirectional does both;
 *   - 、 joins a list and never ends a scope (否认高血压、糖尿病病史 negates both);
 *   - a forward trigger with nothing after it in its clause looks back instead, because Chinese puts the
 *     object first in findings such as 肝脾肋下未触及 and 病理征未引出;
 *   - pseudo-triggers (无明显诱因, 不除外) and terminations (但, 伴, 出现) close scopes of their property;
 *   - a trigger inside an entity is part of the entity's name (四肢无力), not a trigger;
 *   - location types (BodyPart) are where a finding is; negation and uncertainty about the finding are
 *     not about the place, so they keep polarity present and certainty certain.
 * The nearest covering trigger of each property decides.
 */
import type { AssertionTrigger, EntityAssertion, Span } from '../domain/index.ts';
import { normalizeCodeUnit } from '../domain/text.ts';
import { lexiconKey, loadTriggerLexicon } from './lexicon.ts';
import type { AssertionProperty, TriggerLexicon, TriggerRule } from './lexicon.ts';

export interface AssertionEntity extends Span {
  /** Entity type as the NER model emits it (BodyPart, Symptom, Disease, Examine, Cure). */
  type?: string;
}

export type { AssertionTrigger } from '../domain/index.ts';
/** The domain's EntityAssertion: what the output record carries. */
export type Assertion = EntityAssertion;

export interface AssertionOptions {
  /** Entity types that name a place rather than a finding; default BodyPart. */
  locationTypes?: readonly string[];
}

interface TrieNode {
  children: Map<number, TrieNode>;
  rules: TriggerRule[] | undefined;
}

interface FoundTrigger {
  start: number;
  end: number;
  rule: TriggerRule;
}

const PROPERTY_INDEX: Record<AssertionProperty, number> = { negation: 0, uncertainty: 1, history: 2, family: 3 };
const PROPERTY_COUNT = 4;

const CODE = (c: string): number => c.charCodeAt(0);
const SENTENCE_END = new Set([CODE('。'), CODE(';'), CODE('!'), CODE('?'), CODE('\n'), CODE('\r')]);
const COMMA = CODE(',');
const DOT = CODE('.');
const ENUMERATION_MARK = CODE('、');
const COLON = CODE(':');
/** What may stand between the items of a list besides the items themselves (高血压，糖尿病病史). */
const LIST_FILLER = new Set([...'、及和与或并等史病 '].map(CODE));
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isBlank = (c: number): boolean => c === 0x20 || c === 0x09;

export class AssertionAnnotator {
  private readonly root: TrieNode = { children: new Map(), rules: undefined };
  private readonly locationTypes: ReadonlySet<string>;

  constructor(lexicon: TriggerLexicon, options: AssertionOptions = {}) {
    this.locationTypes = new Set(options.locationTypes ?? ['BodyPart']);
    for (const rule of lexicon.rules) {
      const key = lexiconKey(rule.trigger);
      let node = this.root;
      for (let i = 0; i < key.length; i++) {
        const c = key.charCodeAt(i);
        let next = node.children.get(c);
        if (next === undefined) {
          next = { children: new Map(), rules: undefined };
          node.children.set(c, next);
        }
        node = next;
      }
      (node.rules ??= []).push(rule);
    }
  }

  /** The shipped lexicon (data/assertion/triggers.tsv). */
  static withDefaultLexicon(options: AssertionOptions = {}): AssertionAnnotator {
    return new AssertionAnnotator(loadTriggerLexicon(), options);
  }

  /**
   * Assertions for `entities` (UTF-16 offsets into `text`, end exclusive), in the same order. `text` may
   * be one sentence or a whole document: scopes never cross sentence punctuation.
   */
  annotate(text: string, entities: readonly AssertionEntity[]): Assertion[] {
    const n = text.length;
    const codes = new Uint16Array(n);
    for (let i = 0; i < n; i++) codes[i] = normalizeCodeUnit(text.charCodeAt(i));
    const insideEntity = new Uint8Array(n);
    for (const e of entities) insideEntity.fill(1, Math.max(0, e.start), Math.min(n, e.end));

    // Prefix counts of boundaries: "is there a boundary between a and b" in O(1).
    const clauseBefore = new Uint32Array(n + 1);
    const sentenceBefore = new Uint32Array(n + 1);
    // A backward scope also stops at a colon: in 超声示：前列腺增生可能 the exam before the colon is
    // certain, only its findings are not.
    const backwardBefore = new Uint32Array(n + 1);
    for (let i = 0; i < n; i++) {
      let kind = boundaryAt(codes, i);
      if (kind === 1 && codes[i] === COMMA && commaJoinsList(codes, insideEntity, i)) kind = 0;
      sentenceBefore[i + 1] = sentenceBefore[i] + (kind === 2 ? 1 : 0);
      clauseBefore[i + 1] = clauseBefore[i] + (kind !== 0 ? 1 : 0);
      backwardBefore[i + 1] = backwardBefore[i] + (kind !== 0 || codes[i] === COLON ? 1 : 0);
    }

    const found = this.findTriggers(codes, insideEntity);
    const opening: FoundTrigger[][] = Array.from({ length: PROPERTY_COUNT }, () => []);
    const closing: FoundTrigger[][] = Array.from({ length: PROPERTY_COUNT }, () => []);
    for (const f of found) (f.rule.kind === 'trigger' ? opening : closing)[PROPERTY_INDEX[f.rule.property]].push(f);

    const boundaryBetween = (from: number, to: number, reach: TriggerRule['reach']): boolean => {
      const counts = reach === 'sentence' ? sentenceBefore : clauseBefore;
      return counts[to] - counts[from] > 0;
    };
    const boundaryBehind = (from: number, to: number, reach: TriggerRule['reach']): boolean =>
      boundaryBetween(from, to, reach) || backwardBefore[to] - backwardBefore[from] > 0;
    const closedBetween = (p: number, from: number, to: number): boolean => {
      for (const c of closing[p]) if (c.start >= from && c.end <= to) return true;
      return false;
    };
    const clauseIsEmptyAfter = (at: number): boolean => {
      for (let i = at; i < n; i++) {
        if (clauseBefore[i + 1] > clauseBefore[i]) return true;
        if (!isBlank(codes[i])) return false;
      }
      return true;
    };

    return entities.map((entity) => {
      const decided: (FoundTrigger | undefined)[] = new Array(PROPERTY_COUNT);
      const isLocation = entity.type !== undefined && this.locationTypes.has(entity.type);
      for (let p = 0; p < PROPERTY_COUNT; p++) {
        let best: FoundTrigger | undefined;
        let bestDistance = Infinity;
        for (const t of opening[p]) {
          const rule = t.rule;
          if (rule.types.length > 0) {
            if (entity.type === undefined || !rule.types.includes(entity.type)) continue;
          } else if (isLocation && p <= PROPERTY_INDEX.uncertainty) {
            // A rule that names BodyPart explicitly (左手环指远端缺如) still applies.
            continue;
          }
          const looksBack =
            rule.direction !== 'forward' || clauseIsEmptyAfter(t.end);
          const looksForward = rule.direction !== 'backward';
          let distance = Infinity;
          if (looksForward && entity.start >= t.end) {
            if (!boundaryBetween(t.end, entity.start, rule.reach) && !closedBetween(p, t.end, entity.start)) {
              distance = entity.start - t.end;
            }
          } else if (looksBack && entity.end <= t.start) {
            if (!boundaryBehind(entity.end, t.start, rule.reach) && !closedBetween(p, entity.end, t.start)) {
              distance = t.start - entity.end;
            }
          }
          if (distance < bestDistance) {
            bestDistance = distance;
            best = t;
          }
        }
        decided[p] = best;
      }
      const triggers: AssertionTrigger[] = [];
      for (const t of decided) {
        if (t !== undefined) triggers.push({ start: t.start, end: t.end, text: text.slice(t.start, t.end), property: t.rule.property });
      }
      return {
        polarity: decided[PROPERTY_INDEX.negation] ? 'absent' : 'present',
        certainty: decided[PROPERTY_INDEX.uncertainty] ? 'possible' : 'certain',
        temporality: decided[PROPERTY_INDEX.history] ? 'historical' : 'current',
        experiencer: decided[PROPERTY_INDEX.family] ? 'other' : 'patient',
        triggers,
      };
    });
  }

  /** Leftmost-longest, non-overlapping lexicon matches that do not touch an entity. */
  private findTriggers(codes: Uint16Array, insideEntity: Uint8Array): FoundTrigger[] {
    const out: FoundTrigger[] = [];
    const n = codes.length;
    let i = 0;
    while (i < n) {
      let node: TrieNode | undefined = this.root;
      let bestEnd = -1;
      let bestRules: TriggerRule[] | undefined;
      for (let j = i; j < n && node !== undefined; j++) {
        if (insideEntity[j]) break;
        node = node.children.get(codes[j]);
        if (node?.rules !== undefined) {
          bestEnd = j + 1;
          bestRules = node.rules;
        }
      }
      if (bestRules === undefined) {
        i++;
        continue;
      }
      for (const rule of bestRules) out.push({ start: i, end: bestEnd, rule });
      i = bestEnd;
    }
    return out;
  }
}

/**
 * A comma followed by nothing but entities and list words (否认高血压，糖尿病病史; 无咳嗽，咳痰，无…) joins
 * a list rather than ending a clause, so the scopes around it carry over.
 */
function commaJoinsList(codes: Uint16Array, insideEntity: Uint8Array, comma: number): boolean {
  let sawEntity = false;
  for (let j = comma + 1; j < codes.length; j++) {
    if (boundaryAt(codes, j) !== 0) break;
    if (insideEntity[j]) sawEntity = true;
    else if (!LIST_FILLER.has(codes[j])) return false;
  }
  return sawEntity;
}

/** 0: none; 1: ends a clause (，, or an enumeration mark such as the 2. in 1.X2.Y); 2: ends a sentence. */
function boundaryAt(codes: Uint16Array, i: number): 0 | 1 | 2 {
  const c = codes[i];
  if (SENTENCE_END.has(c)) return 2;
  if (c === COMMA) return 1;
  if (c === DOT) {
    // 14.39 is a number; 岁.既往 ends a sentence; 2.胆管结石 starts a list item.
    const before = i > 0 ? codes[i - 1] : 0;
    const after = i + 1 < codes.length ? codes[i + 1] : 0;
    if (isDigit(before) && isDigit(after)) return 0;
    return isDigit(before) ? 1 : 2;
  }
  if (c === ENUMERATION_MARK && i > 0 && isDigit(codes[i - 1])) return 1;
  return 0;
}
