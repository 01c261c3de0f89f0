/**
 * Composition of the stage's concrete adapters: model artifacts and engines (src/model) and the
 * knowledge graph (src/knowledge) behind the pipeline's ports. Used by `rmbert serve`, `annotate`,
 * `demo`, the integration tests and the stream benchmark.
 */
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { AssertionAnnotator, loadTriggerLexicon, mergeLexicons, type TriggerLexicon } from '../assertion/index.ts';
import type { EngineChoice, StageConfig } from '../config/index.ts';
import type { InjectedSentence, Sentence, Token, Triple } from '../domain/index.ts';
import { ConfigError, KnowledgeUnavailableError, ModelError, SchemaError } from '../errors/index.ts';
import {
  InMemoryKnowledgeGraph,
  KnowledgeService,
  loadSpoFile,
  Neo4jKnowledgeGraph,
  SentenceTreeBuilder,
  triplesForMatch,
  type KnowledgeGraph,
  type KnowledgeMetrics,
} from '../knowledge/index.ts';
import { canonicalJson, loadArtifact, MANIFEST_FILE, readManifest, sha256Hex, tokenizerOptionsOf } from '../model/artifact.ts';
import { BioDecoder, crfScoresFrom } from '../model/decode.ts';
import { selectEngine } from '../model/engine-select.ts';
import { BertTokenizer } from '../model/tokenizer.ts';
import type { InferenceEngine, ModelArtifact } from '../model/types.ts';
import { safeErrorMessage } from '../pipeline/logging.ts';
import type { ModelCatalog, ModelCatalogEntry } from '../pipeline/model-swap.ts';
import type {
  AssertionAssessor,
  CachedTriples,
  InjectionResult,
  KnowledgeSource,
  Logger,
  ModelLoader,
  ModelRequest,
  ModelRuntime,
  NameMatch,
  StageMetrics,
} from '../pipeline/ports.ts';

// ---------------------------------------------------------------------------------------------
// Model artifacts

/** Hex sha256 of an artifact's manifest content (its `files` map, canonical JSON); the version hash is its first 12 characters. */
export async function manifestSha256(dir: string): Promise<string> {
  const manifest = await readManifest(dir);
  return sha256Hex(canonicalJson(manifest.files));
}

/**
 * The artifact a model directory offers: the directory itself when it holds a manifest, else the
 * newest (by manifest modification time, then name) of its sub-directories that do.
 */
export function modelDirectoryCatalog(dir: string): ModelCatalog {
  return {
    async latest(): Promise<ModelCatalogEntry | null> {
      if (!existsSync(dir)) return null;
      if (existsSync(path.join(dir, MANIFEST_FILE))) return { location: path.resolve(dir), sha256: await manifestSha256(dir) };
      const candidates: { location: string; mtimeMs: number; name: string }[] = [];
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        // Hidden entries are artifacts being written (writeArtifact renames them into place when complete).
        if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
        const manifest = path.join(dir, entry.name, MANIFEST_FILE);
        if (!existsSync(manifest)) continue;
        candidates.push({ location: path.resolve(dir, entry.name), mtimeMs: (await stat(manifest)).mtimeMs, name: entry.name });
      }
      if (candidates.length === 0) return null;
      candidates.sort((a, b) => b.mtimeMs - a.mtimeMs || (a.name < b.name ? 1 : -1));
      return { location: candidates[0].location, sha256: await manifestSha256(candidates[0].location) };
    },
  };
}

let sharedTokenizer: Promise<BertTokenizer> | null = null;
function tokenizer(): Promise<BertTokenizer> {
  sharedTokenizer ??= BertTokenizer.load();
  return sharedTokenizer;
}

/** A loaded artifact + engine + tokenizer + sentence-tree builder + decoder, behind the pipeline's ModelRuntime port. */
class ArtifactModel implements ModelRuntime {
  readonly version;
  readonly engine: string;
  readonly usesKnowledge: boolean;
  private readonly decoder: BioDecoder;
  private readonly builder: SentenceTreeBuilder;

  constructor(
    readonly artifact: ModelArtifact,
    private readonly inference: InferenceEngine,
    private readonly tok: BertTokenizer,
  ) {
    this.version = artifact.version;
    this.engine = inference.name;
    const k = artifact.config.knowledge;
    this.usesKnowledge = k.enabled && k.maxEntities > 0;
    this.builder = new SentenceTreeBuilder(tok, { knowledge: k.enabled, inject: k.inject, maxEntities: k.maxEntities, maxLength: k.maxLength });
    this.decoder = new BioDecoder(artifact.config.labels, crfScoresFrom(artifact.weights, artifact.config.labels.length));
  }

  tokenize(text: string): Token[] {
    return this.tok.tokenize(text);
  }

  inject(sentence: Sentence, tokens: readonly Token[], matches: readonly NameMatch[], triples: ReadonlyMap<string, readonly Triple[]>): InjectionResult {
    const maxEntities = this.builder.options.maxEntities;
    const trees = this.builder.build({
      text: sentence.text,
      start: sentence.start,
      tokens,
      matches: matches.map((m) => ({ start: m.start, end: m.end, triples: triplesForMatch(m, triples, maxEntities) })),
    });
    return { windows: trees, knowledgeDropped: trees.some((t) => t.droppedBranches > 0) };
  }

  classify(sentences: readonly InjectedSentence[]): Promise<Float32Array[]> {
    return this.inference.classify(sentences);
  }

  decode(sentence: InjectedSentence, logits: Float32Array) {
    return this.decoder.decode(sentence, logits);
  }

  async dispose(): Promise<void> {
    await this.inference.dispose();
  }
}

export interface ModelLoaderOptions {
  engine: EngineChoice;
  logger: Logger;
}

/** Loads an artifact directory: manifest hash check against the request, full file verification, engine build, a warm-up through the whole path. */
export function createModelLoader(options: ModelLoaderOptions): ModelLoader {
  return {
    async load(request: ModelRequest): Promise<ModelRuntime> {
      const dir = request.location;
      if (!existsSync(dir)) throw new ModelError(`no model artifact at ${dir}`);
      if (request.sha256) {
        const actual = await manifestSha256(dir);
        const wanted = request.sha256.toLowerCase();
        if (!/^[0-9a-f]{12,64}$/.test(wanted) || !actual.startsWith(wanted)) {
          throw new ModelError(`artifact ${dir}: manifest sha256 ${actual} differs from the announced ${request.sha256}; refusing it`);
        }
      }
      const artifact = await loadArtifact(dir);
      if (artifact.config.labels.length === 0) throw new ModelError(`artifact ${dir} has no token-classification head (labels is empty); it cannot tag entities`);
      // The artifact's own tokenization (config.tokenizer: full-width folding, on unless it says otherwise).
      const tok = (await tokenizer()).withOptions(tokenizerOptionsOf(artifact.config));
      const selection = await selectEngine(artifact, { engine: options.engine, logger: (line) => options.logger.debug(line) });
      options.logger.info('inference engine selected', { engine: selection.engine.name, reason: selection.reason, skipped: selection.skipped });
      const engine = selection.engine;
      const model = new ArtifactModel(artifact, engine, tok);
      try {
        // Warm-up through tokenizer, tree builder, engine and decoder, so a model that cannot serve is refused before it does.
        const sentence = { docId: 'warm-up', start: 0, end: 8, text: '患者咳嗽伴发热。' };
        const tokens = model.tokenize(sentence.text);
        const { windows } = model.inject(sentence, tokens, [], new Map());
        const logits = await model.classify(windows);
        windows.forEach((w, i) => model.decode(w, logits[i]));
      } catch (error) {
        await model.dispose().catch(() => undefined);
        throw new ModelError(`artifact ${dir} failed its warm-up: ${safeErrorMessage(error)}`, { cause: error });
      }
      return model;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Knowledge

/** Triples fetched (and cached) per name; each model injects at most its own maxEntities of them. */
const FETCH_PER_NAME = 8;

export interface GraphKnowledgeOptions {
  cacheSize: number;
  metrics?: StageMetrics;
  logger: Logger;
  /** Version-stamp polling interval (0 = off). */
  versionPollMs?: number;
}

/**
 * The knowledge graph behind the pipeline's KnowledgeSource port. When the graph cannot be read at
 * start, the source serves no knowledge (match throws KnowledgeUnavailableError, so outputs are
 * marked kgDegraded) until a probe succeeds in opening it.
 */
export class GraphKnowledge implements KnowledgeSource {
  private service: KnowledgeService | null = null;
  private opening: Promise<void> | null = null;
  private readonly knowledgeMetrics: KnowledgeMetrics;

  constructor(
    readonly graph: KnowledgeGraph,
    private readonly options: GraphKnowledgeOptions,
  ) {
    const m = options.metrics;
    this.knowledgeMetrics = {
      onCacheHit: (n) => m?.kgCache(n, 0),
      onCacheMiss: (n) => m?.kgCache(0, n),
      onQuery: () => undefined,
    };
  }

  /**
   * Opens the service (reads the concept names for the matcher); false when the graph is unreachable
   * (an outage: the stage serves without knowledge and keeps trying). Rejected credentials are a
   * configuration error, not an outage: retrying cannot fix them, so they are thrown.
   */
  async open(): Promise<boolean> {
    try {
      await this.ensureOpen();
      return true;
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      this.options.logger.warn('knowledge graph unreachable at start; serving without knowledge until it answers', { error: safeErrorMessage(error) });
      return false;
    }
  }

  private ensureOpen(): Promise<void> {
    if (this.service) return Promise.resolve();
    this.opening ??= KnowledgeService.open(this.graph, { maxEntities: FETCH_PER_NAME, cacheSize: Math.max(1, this.options.cacheSize), metrics: this.knowledgeMetrics })
      .then((service) => {
        this.service = service;
        if (this.options.versionPollMs && this.options.versionPollMs > 0) service.startPolling(this.options.versionPollMs);
        // Counted as `rmbert kg info` counts: concepts are every node (objects such as 疾病 included),
        // subjects the names the matcher looks for in text.
        const { stamp, matcher } = service.current;
        this.options.logger.info('knowledge graph opened', { kgVersion: service.current.version, concepts: stamp?.concepts ?? null, triples: stamp?.triples ?? null, subjects: matcher.size });
      })
      .finally(() => {
        this.opening = null;
      });
    return this.opening;
  }

  isOpen(): boolean {
    return this.service !== null;
  }

  version(): string {
    return this.service?.current.version ?? '';
  }

  match(text: string, tokens: readonly Token[]): NameMatch[] {
    if (!this.service) throw new KnowledgeUnavailableError('the knowledge graph has not been read yet');
    return this.service.current.matcher.match(text, { tokens }).map((m) => ({ start: m.start, end: m.end, names: m.names }));
  }

  async lookup(names: readonly string[]): Promise<ReadonlyMap<string, readonly Triple[]>> {
    if (!this.service) throw new KnowledgeUnavailableError('the knowledge graph has not been read yet');
    return this.service.current.lookup.lookup(names);
  }

  lookupCached(names: readonly string[]): CachedTriples {
    if (!this.service) return { triples: new Map(), missing: [...names] };
    return this.service.current.lookup.lookupCached(names);
  }

  async probe(): Promise<void> {
    if (!this.service) {
      await this.ensureOpen();
      return;
    }
    await this.graph.stamp();
  }

  async close(): Promise<void> {
    await this.service?.close();
    await this.graph.close();
  }
}

/** The stage's knowledge source from its configuration: Neo4j, or the in-memory graph from a file in embedded mode. */
export async function openKnowledge(config: StageConfig, logger: Logger, metrics?: StageMetrics): Promise<GraphKnowledge> {
  let graph: KnowledgeGraph;
  if (config.embedded) {
    const memory = new InMemoryKnowledgeGraph(config.knowledge.graphName);
    const report = await loadSpoFile(config.knowledge.kgFile, memory);
    logger.info('in-memory knowledge graph loaded', { file: config.knowledge.kgFile, triples: report.stamp.triples, kgVersion: report.stamp.version });
    graph = memory;
  } else {
    graph = new Neo4jKnowledgeGraph({
      uri: config.neo4j.uri,
      user: config.neo4j.user,
      password: config.neo4j.password,
      graphName: config.knowledge.graphName,
      ...(config.neo4j.database ? { database: config.neo4j.database } : {}),
    });
  }
  const knowledge = new GraphKnowledge(graph, { cacheSize: config.knowledge.cacheSize, metrics, logger, versionPollMs: config.knowledge.versionPollMs });
  await knowledge.open();
  return knowledge;
}

// ---------------------------------------------------------------------------------------------
// Assertion

/**
 * The assertion step from the configuration: the shipped trigger lexicon plus the hospital's file, read
 * once here at start; null when assertions are off. A lexicon file that does not parse is a
 * configuration error (exit 2), found before the stage touches Kafka.
 */
export function createAssertionAssessor(config: StageConfig['assertion'], logger?: Logger): AssertionAssessor | null {
  if (!config.enabled) return null;
  const shipped = loadTriggerLexicon();
  let extra: TriggerLexicon = { rules: [] };
  if (config.lexiconFile !== null) {
    try {
      extra = loadTriggerLexicon(config.lexiconFile);
    } catch (error) {
      if (error instanceof SchemaError || (error as NodeJS.ErrnoException).code !== undefined) {
        throw new ConfigError([`assertion.lexiconFile: ${safeErrorMessage(error)} (RMBERT_ASSERTION_LEXICON)`]);
      }
      throw error;
    }
  }
  logger?.info('assertion lexicon loaded', { shippedRules: shipped.rules.length, extraRules: extra.rules.length, extraFile: config.lexiconFile });
  return new AssertionAnnotator(mergeLexicons(shipped, extra));
}
