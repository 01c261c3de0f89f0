/**
 * Does a correction agree with what the model was taught? A clinician's feedback that types a
 * surface differently from both the knowledge graph and the training set is more often a slip (or a
 * poisoned feed) than a discovery, and a gold set that happens not to contain the surface cannot tell.
 * Such documents are quarantined for review instead of trained on.
 *
 * Evidence for a surface, strongest first:
 *  1. the graph's types of that exact name (Medical.spo: name 类别 疾病|症状|部位|治疗|检查);
 *  2. the training set's labels of that exact surface (data/replay/medical-train-lexicon.tsv);
 *  3. only when neither knows the surface: the types of longer graph names and training entities
 *     that end with it (Chinese terms are head-final: 四肢乏力 and 全身乏力 are symptoms, so 乏力 is).
 * A label contradicts the evidence when the evidence holds enough mentions and the label's type
 * has (almost) none of them. A surface nobody knows is never a contradiction.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors/index.ts';
import type { FeedbackDocument } from './feedback.ts';
import { TERM_TYPE_NAMES } from './terms.ts';

export interface LabelCheckOptions {
  /** Exact training-set mentions needed before the lexicon can contradict a label (default 2). */
  minLexiconCount?: number;
  /** Longer names needed before head evidence can contradict a label (default 3). */
  minHeadCount?: number;
  /** A type with at most this share of the evidence counts as contradicted (default 0.1). */
  maxShare?: number;
}

type Counts = Map<string, number>;

function add(map: Map<string, Counts>, key: string, type: string, n: number): void {
  let c = map.get(key);
  if (!c) map.set(key, (c = new Map()));
  c.set(type, (c.get(type) ?? 0) + n);
}

function describe(c: Counts): string {
  return [...c]
    .sort((a, b) => b[1] - a[1])
    .map(([t, n]) => `${t} ${n}`)
    .join(', ');
}

export class LabelChecker {
  private readonly kg = new Map<string, Counts>();
  private readonly lexicon = new Map<string, Counts>();
  /** Suffix -> types of the longer names ending with it (graph and lexicon together). */
  private readonly heads = new Map<string, Counts>();
  private readonly minLexicon: number;
  private readonly minHead: number;
  private readonly maxShare: number;

  constructor(
    kgTriples: Iterable<readonly [string, string, string]>,
    lexicon: Iterable<readonly [string, string, number]>,
    options: LabelCheckOptions = {},
  ) {
    this.minLexicon = options.minLexiconCount ?? 2;
    this.minHead = options.minHeadCount ?? 3;
    this.maxShare = options.maxShare ?? 0.1;
    const typeOf = new Map(Object.entries(TERM_TYPE_NAMES).map(([type, zh]) => [zh, type]));
    const names: [string, string, number][] = [];
    for (const [s, , o] of kgTriples) {
      const type = typeOf.get(o);
      if (!type) continue;
      add(this.kg, s, type, 1);
      names.push([s, type, 1]);
    }
    for (const [surface, type, n] of lexicon) {
      add(this.lexicon, surface, type, n);
      names.push([surface, type, 1]);
    }
    for (const [name, type] of names) {
      const chars = Array.from(name);
      for (let i = 1; i < chars.length - 1; i++) add(this.heads, chars.slice(i).join(''), type, 1);
    }
  }

  /** From a `.spo` graph file and a lexicon TSV (surface, type, count; header line). */
  static fromFiles(kgFile: string | null, lexiconFile: string | null, options: LabelCheckOptions = {}): LabelChecker {
    const read = (file: string, what: string) => {
      try {
        return readFileSync(file, 'utf8');
      } catch (error) {
        throw new ConfigError([`${what}: cannot read ${file}: ${(error as Error).message}`]);
      }
    };
    const triples: [string, string, string][] = [];
    if (kgFile) {
      for (const line of read(kgFile, 'knowledge.kgFile').split('\n')) {
        const p = line.split('\t');
        if (p.length >= 3) triples.push([p[0].trim(), p[1].trim(), p[2].trim()]);
      }
    }
    const rows: [string, string, number][] = [];
    if (lexiconFile) {
      const lines = read(lexiconFile, 'trainer.lexiconFile').split('\n');
      for (const line of lines.slice(1)) {
        const p = line.split('\t');
        if (p.length >= 3 && Number.isFinite(Number(p[2]))) rows.push([p[0], p[1], Number(p[2])]);
      }
    }
    return new LabelChecker(triples, rows, options);
  }

  private contradicts(c: Counts | undefined, type: string, min: number): boolean {
    if (!c) return false;
    let total = 0;
    for (const n of c.values()) total += n;
    return total >= min && (c.get(type) ?? 0) <= this.maxShare * total;
  }

  /** One line per contradicted entity (they name the surface: for the store and reviewers, not for logs). */
  check(d: FeedbackDocument): string[] {
    const out: string[] = [];
    const seen = new Set<string>();
    for (const e of d.entities) {
      const key = `${e.type}|${e.text}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const kg = this.kg.get(e.text);
      const lex = this.lexicon.get(e.text);
      if (kg && !kg.has(e.type)) out.push(`${JSON.stringify(e.text)} labelled ${e.type}; the knowledge graph types it ${[...kg.keys()].join(', ')}`);
      else if (this.contradicts(lex, e.type, this.minLexicon)) out.push(`${JSON.stringify(e.text)} labelled ${e.type}; the training set labels it ${describe(lex!)}`);
      else if (!kg && !lex && this.contradicts(this.heads.get(e.text), e.type, this.minHead)) {
        out.push(`${JSON.stringify(e.text)} labelled ${e.type}; longer terms ending with it are ${describe(this.heads.get(e.text)!)}`);
      }
    }
    return out;
  }
}
