/**
 * Finds knowledge-graph concept names in text with an Aho-Corasick automaton.
 *
 * Written here rather than taken from npm: the maintained JavaScript implementations report every
 * overlapping match as objects and know nothing of token boundaries, while the sentence tree needs
 * leftmost-longest, non-overlapping matches that start and end on token boundaries, for a few
 * hundred thousand sentences a second. The automaton is stored in typed arrays: an open-addressing
 * hash of (node, code unit) -> node for the goto function, plus failure and dictionary-suffix links.
 *
 * Text and names are compared after `normalizeCodeUnit` (full-width -> ASCII, upper -> lower case),
 * the tokenizer's normalisation, which maps code units one to one, so offsets stay those of the text.
 */
import type { Token } from '../domain/index.ts';
import { normalizeCodeUnit, normalizeText } from '../domain/text.ts';

export interface ConceptMatch {
  /** [start, end) in UTF-16 code units of the text given to `match`. */
  start: number;
  end: number;
  /** The normalised name that matched. */
  key: string;
  /** The graph's names that normalise to `key` (usually one), sorted. */
  names: readonly string[];
}

export interface MatchOptions {
  /**
   * Tokens of the text (offsets into it). When given, a match must start where a word starts and
   * end where a word ends: on a token boundary that does not split a word-piece sequence
   * (a "##" token glued to the previous one). Without tokens, only surrogate pairs are kept whole.
   */
  tokens?: readonly Token[];
  /** 'leftmost-longest' (default): non-overlapping, at each start the longest name wins. 'all': every match. */
  mode?: 'leftmost-longest' | 'all';
}

const EMPTY = -1;

function hashPair(node: number, code: number): number {
  return (Math.imul(node, 0x9e3779b1) ^ Math.imul(code + 1, 0x85ebca77)) >>> 0;
}

function isContinuation(token: Token, previous: Token | undefined): boolean {
  return previous !== undefined && previous.end === token.start && token.text.charCodeAt(0) === 0x23 && token.text.charCodeAt(1) === 0x23;
}

export class ConceptMatcher {
  /** Number of distinct normalised names. */
  readonly size: number;
  private readonly keys: string[];
  private readonly namesOf: string[][];
  // Goto function: open-addressing hash table, power-of-two capacity.
  private readonly slotNode: Int32Array;
  private readonly slotCode: Int32Array;
  private readonly slotNext: Int32Array;
  private readonly slotMask: number;
  private readonly fail: Int32Array;
  private readonly depth: Int32Array;
  /** Index into `keys` of the name ending at this node, or -1. */
  private readonly output: Int32Array;
  /** Nearest proper suffix node (via failure links) that ends a name; 0 = none. */
  private readonly dictLink: Int32Array;
  // Scratch buffers reused across calls (matching is synchronous).
  private startOk = new Uint8Array(0);
  private endOk = new Uint8Array(0);
  private bestLen = new Int32Array(0);
  private bestKey = new Int32Array(0);

  private constructor(
    keys: string[],
    namesOf: string[][],
    table: { node: Int32Array; code: Int32Array; next: Int32Array },
    fail: Int32Array,
    depth: Int32Array,
    output: Int32Array,
    dictLink: Int32Array,
  ) {
    this.keys = keys;
    this.namesOf = namesOf;
    this.size = keys.length;
    this.slotNode = table.node;
    this.slotCode = table.code;
    this.slotNext = table.next;
    this.slotMask = table.node.length - 1;
    this.fail = fail;
    this.depth = depth;
    this.output = output;
    this.dictLink = dictLink;
  }

  /** Builds the automaton over the given concept names (duplicates and empty names are ignored). */
  static build(names: Iterable<string>): ConceptMatcher {
    const byKey = new Map<string, Set<string>>();
    for (const name of names) {
      const key = normalizeText(name);
      if (key.length === 0) continue;
      let set = byKey.get(key);
      if (!set) byKey.set(key, (set = new Set()));
      set.add(name);
    }
    const keys = [...byKey.keys()];
    const namesOf = keys.map((k) => [...byKey.get(k)!].sort());

    // Trie with per-node child maps (build time only).
    const children: Map<number, number>[] = [new Map()];
    const depthList: number[] = [0];
    const outputList: number[] = [EMPTY];
    keys.forEach((key, keyIndex) => {
      let node = 0;
      for (let i = 0; i < key.length; i++) {
        const c = key.charCodeAt(i);
        let next = children[node].get(c);
        if (next === undefined) {
          next = children.length;
          children.push(new Map());
          depthList.push(depthList[node] + 1);
          outputList.push(EMPTY);
          children[node].set(c, next);
        }
        node = next;
      }
      outputList[node] = keyIndex;
    });
    const nodeCount = children.length;
    const edgeCount = nodeCount - 1;

    let capacity = 16;
    while (capacity < edgeCount * 2) capacity *= 2;
    const table = { node: new Int32Array(capacity).fill(EMPTY), code: new Int32Array(capacity), next: new Int32Array(capacity) };
    const mask = capacity - 1;
    for (let node = 0; node < nodeCount; node++) {
      for (const [c, next] of children[node]) {
        let slot = hashPair(node, c) & mask;
        while (table.node[slot] !== EMPTY) slot = (slot + 1) & mask;
        table.node[slot] = node;
        table.code[slot] = c;
        table.next[slot] = next;
      }
    }

    const fail = new Int32Array(nodeCount);
    const dictLink = new Int32Array(nodeCount);
    const output = Int32Array.from(outputList);
    // Breadth-first, so a node's failure target is finished before the node.
    const queue = new Int32Array(nodeCount);
    let head = 0;
    let tail = 0;
    for (const child of children[0].values()) queue[tail++] = child;
    while (head < tail) {
      const u = queue[head++];
      for (const [c, v] of children[u]) {
        let f = fail[u];
        let target = -1;
        for (;;) {
          const t = children[f].get(c);
          if (t !== undefined) {
            target = t;
            break;
          }
          if (f === 0) break;
          f = fail[f];
        }
        fail[v] = target >= 0 ? target : 0;
        dictLink[v] = output[fail[v]] !== EMPTY ? fail[v] : dictLink[fail[v]];
        queue[tail++] = v;
      }
    }
    return new ConceptMatcher(keys, namesOf, table, fail, Int32Array.from(depthList), output, dictLink);
  }

  private goto(node: number, code: number): number {
    const mask = this.slotMask;
    let slot = hashPair(node, code) & mask;
    for (;;) {
      const n = this.slotNode[slot];
      if (n === EMPTY) return EMPTY;
      if (n === node && this.slotCode[slot] === code) return this.slotNext[slot];
      slot = (slot + 1) & mask;
    }
  }

  private prepareBoundaries(text: string, tokens: readonly Token[] | undefined): void {
    const n = text.length;
    if (this.startOk.length < n + 1) {
      const cap = Math.max(n + 1, this.startOk.length * 2);
      this.startOk = new Uint8Array(cap);
      this.endOk = new Uint8Array(cap);
      this.bestLen = new Int32Array(cap);
      this.bestKey = new Int32Array(cap);
    }
    const startOk = this.startOk;
    const endOk = this.endOk;
    this.bestLen.fill(0, 0, n + 1);
    if (tokens) {
      startOk.fill(0, 0, n + 1);
      endOk.fill(0, 0, n + 1);
      for (let k = 0; k < tokens.length; k++) {
        const tok = tokens[k];
        if (tok.start < 0 || tok.end > n || tok.start >= tok.end) continue;
        if (!isContinuation(tok, tokens[k - 1])) startOk[tok.start] = 1;
        const next = tokens[k + 1];
        if (next === undefined || !isContinuation(next, tok)) endOk[tok.end] = 1;
      }
      return;
    }
    startOk.fill(1, 0, n + 1);
    endOk.fill(1, 0, n + 1);
    for (let i = 1; i < n; i++) {
      const c = text.charCodeAt(i);
      // Inside a surrogate pair: neither a start nor an end.
      if (c >= 0xdc00 && c <= 0xdfff) {
        const p = text.charCodeAt(i - 1);
        if (p >= 0xd800 && p <= 0xdbff) {
          startOk[i] = 0;
          endOk[i] = 0;
        }
      }
    }
  }

  /** Concept names found in `text`, in text order. */
  match(text: string, options: MatchOptions = {}): ConceptMatch[] {
    const n = text.length;
    if (n === 0 || this.size === 0) return [];
    this.prepareBoundaries(text, options.tokens);
    const all = options.mode === 'all';
    const { startOk, endOk, bestLen, bestKey, fail, depth, output, dictLink } = this;
    const found: ConceptMatch[] = [];

    let node = 0;
    for (let i = 0; i < n; i++) {
      const c = normalizeCodeUnit(text.charCodeAt(i));
      for (;;) {
        const next = this.goto(node, c);
        if (next !== EMPTY) {
          node = next;
          break;
        }
        if (node === 0) break;
        node = fail[node];
      }
      const end = i + 1;
      if (node === 0 || endOk[end] === 0) continue;
      for (let t = output[node] !== EMPTY ? node : dictLink[node]; t !== 0; t = dictLink[t]) {
        const len = depth[t];
        const start = end - len;
        if (startOk[start] === 0) continue;
        if (all) found.push(this.makeMatch(start, end, output[t]));
        else if (len > bestLen[start]) {
          bestLen[start] = len;
          bestKey[start] = output[t];
        }
      }
    }

    if (all) return found.sort((a, b) => a.start - b.start || b.end - a.end);
    for (let i = 0; i < n; ) {
      const len = bestLen[i];
      if (len > 0) {
        found.push(this.makeMatch(i, i + len, bestKey[i]));
        i += len;
      } else i++;
    }
    return found;
  }

  private makeMatch(start: number, end: number, keyIndex: number): ConceptMatch {
    return { start, end, key: this.keys[keyIndex], names: this.namesOf[keyIndex] };
  }
}
