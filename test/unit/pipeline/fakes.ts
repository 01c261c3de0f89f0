/**
 * Test doubles for the pipeline's ports: a character tokenizer, a dictionary "model" whose logits tag
 * known terms, and an in-memory knowledge source whose store can be switched off.
 */
import type { DecodedSpan, InjectedSentence, ModelVersion, Sentence, Token, Triple } from '../../../src/domain/index.ts';
import { KnowledgeUnavailableError, ModelError } from '../../../src/errors/index.ts';
import { decodeSentence } from '../../../src/model/decode.ts';
import type { CachedTriples, InjectionResult, KnowledgeSource, ModelLoader, ModelRequest, ModelRuntime, NameMatch } from '../../../src/pipeline/ports.ts';

export const LABELS = ['O', 'B-Disease', 'I-Disease', 'B-Symptom', 'I-Symptom'];

export interface FakeModelOptions {
  name?: string;
  hash?: string;
  /** term -> type; the model tags every occurrence. */
  terms?: Record<string, string>;
  /** Windows of at most this many original tokens (special tokens excluded). */
  window?: number;
  /** Text containing this character makes classify throw. */
  poison?: string;
  /** Every classify call throws. */
  broken?: boolean;
  usesKnowledge?: boolean;
}

export class FakeModel implements ModelRuntime {
  readonly version: ModelVersion;
  readonly engine = 'fake-engine';
  readonly usesKnowledge: boolean;
  readonly terms: Record<string, string>;
  readonly window: number;
  classifyCalls: number[] = [];
  disposed = false;
  injected: { sentence: Sentence; matches: readonly NameMatch[] }[] = [];

  constructor(private readonly options: FakeModelOptions = {}) {
    this.version = { name: options.name ?? 'fake-model', hash: options.hash ?? 'aaaaaaaaaaaa' };
    this.usesKnowledge = options.usesKnowledge ?? true;
    this.terms = options.terms ?? { 感冒: 'Disease', 发热: 'Symptom', 咳嗽: 'Symptom' };
    this.window = options.window ?? 64;
  }

  tokenize(text: string): Token[] {
    return Array.from({ length: text.length }, (_, i) => ({ text: text[i], id: text.charCodeAt(i), start: i, end: i + 1 }));
  }

  inject(sentence: Sentence, tokens: readonly Token[], matches: readonly NameMatch[]): InjectionResult {
    this.injected.push({ sentence, matches });
    const windows: InjectedSentence[] = [];
    // Overlapping windows (stride = window / 2) like a real windowing scheme, so overlaps are exercised.
    const stride = Math.max(1, Math.floor(this.window / 2));
    for (let from = 0; from < tokens.length; from += stride) {
      const slice = tokens.slice(from, from + this.window);
      const n = slice.length + 2;
      const w: InjectedSentence = {
        tokenIds: new Int32Array(n),
        softPositions: Int32Array.from({ length: n }, (_, i) => i),
        segmentIds: new Int32Array(n),
        branch: new Int32Array(n).fill(-1),
        anchor: new Int32Array(n).fill(-1),
        charStart: new Int32Array(n).fill(-1),
        charEnd: new Int32Array(n).fill(-1),
      };
      slice.forEach((t, i) => {
        w.tokenIds[i + 1] = t.id;
        w.charStart[i + 1] = sentence.start + t.start;
        w.charEnd[i + 1] = sentence.start + t.end;
      });
      (w as InjectedSentence & { text: string }).text = slice.map((t) => t.text).join('');
      windows.push(w);
      if (from + this.window >= tokens.length) break;
    }
    return { windows, knowledgeDropped: false };
  }

  async classify(sentences: readonly InjectedSentence[]): Promise<Float32Array[]> {
    this.classifyCalls.push(sentences.length);
    if (this.options.broken) throw new ModelError('engine exploded');
    return sentences.map((s) => {
      const text = (s as InjectedSentence & { text: string }).text;
      if (this.options.poison && text.includes(this.options.poison)) throw new ModelError('tensor shape mismatch');
      const L = LABELS.length;
      const T = s.tokenIds.length;
      const logits = new Float32Array(T * L);
      for (let t = 0; t < T; t++) logits[t * L] = 5; // O everywhere by default
      for (const [term, type] of Object.entries(this.terms)) {
        for (let at = text.indexOf(term); at >= 0; at = text.indexOf(term, at + 1)) {
          for (let k = 0; k < term.length; k++) {
            const row = (at + k + 1) * L;
            logits[row] = 0;
            logits[row + LABELS.indexOf(`${k === 0 ? 'B' : 'I'}-${type}`)] = 5;
          }
        }
      }
      return logits;
    });
  }

  decode(sentence: InjectedSentence, logits: Float32Array): DecodedSpan[] {
    return decodeSentence(sentence, logits, LABELS);
  }

  async dispose(): Promise<void> {
    this.disposed = true;
  }
}

export class FakeKnowledge implements KnowledgeSource {
  up = true;
  lookups = 0;
  probes = 0;
  noNames = false;
  private readonly cache = new Map<string, readonly Triple[]>();

  constructor(private readonly graph: Record<string, Triple[]> = {
    感冒: [{ subject: '感冒', relation: '类别', object: '疾病' }],
    发热: [{ subject: '发热', relation: '类别', object: '症状' }],
    咳嗽: [{ subject: '咳嗽', relation: '类别', object: '症状' }],
    头部: [{ subject: '头部', relation: '类别', object: '部位' }],
  }) {}

  version(): string {
    return 'kg-v1';
  }

  match(text: string): NameMatch[] {
    if (this.noNames) throw new KnowledgeUnavailableError('no names yet');
    const out: NameMatch[] = [];
    for (const name of Object.keys(this.graph)) {
      for (let at = text.indexOf(name); at >= 0; at = text.indexOf(name, at + 1)) out.push({ start: at, end: at + name.length, names: [name] });
    }
    return out.sort((a, b) => a.start - b.start);
  }

  async lookup(names: readonly string[]): Promise<ReadonlyMap<string, readonly Triple[]>> {
    this.lookups++;
    if (!this.up) throw new KnowledgeUnavailableError('connection refused');
    const out = new Map<string, readonly Triple[]>();
    for (const n of names) {
      const t = this.graph[n] ?? [];
      this.cache.set(n, t);
      out.set(n, t);
    }
    return out;
  }

  lookupCached(names: readonly string[]): CachedTriples {
    const triples = new Map<string, readonly Triple[]>();
    const missing: string[] = [];
    for (const n of names) {
      const t = this.cache.get(n);
      if (t) triples.set(n, t);
      else missing.push(n);
    }
    return { triples, missing };
  }

  async probe(): Promise<void> {
    this.probes++;
    if (!this.up) throw new KnowledgeUnavailableError('connection refused');
  }
}

export class FakeLoader implements ModelLoader {
  requests: ModelRequest[] = [];
  constructor(private readonly models: Record<string, FakeModel | Error>) {}
  async load(request: ModelRequest): Promise<ModelRuntime> {
    this.requests.push(request);
    const m = this.models[request.location];
    if (!m) throw new ModelError(`no artifact at ${request.location}`);
    if (m instanceof Error) throw m;
    return m;
  }
}

export function doc(id: string, text: string, extra: Partial<{ patientRef: string; createdAt: number }> = {}) {
  return { id, sourceSystem: 'test', patientRef: extra.patientRef ?? `P-${id}`, text, language: 'zh', createdAt: extra.createdAt ?? 1_700_000_000_000, section: null };
}
