/**
 * Model artifacts: a directory holding
 *   config.json          ArtifactConfig (model shape, labels, vocabulary hash, tokenizer and knowledge options)
 *   weights.safetensors  every weight, fp32 or fp16, Hugging Face names (see types.ts)
 *   manifest.json        { files: { name: sha256 }, version }
 * The version is `${config.name}+${hash}` where hash is the first 12 hex digits of the sha256 of the
 * canonical JSON of `files`, so any change to any file gives a new version. Artifacts are written
 * atomically (temp dir + rename) and verified completely on load: a tampered, truncated or mismatched
 * artifact is refused with a ModelError that names the file.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ModelVersion } from '../domain/index.ts';
import { ModelError, SchemaError } from '../errors/index.ts';
import { fromWeightMap, readSafetensors, toWeightMap, writeSafetensors } from './safetensors.ts';
import { SHIPPED_VOCAB_SHA256 } from './tokenizer.ts';
import type { TokenizerOptions } from './tokenizer.ts';
import type { ArtifactConfig, BertConfig, ModelArtifact, TokenizerConfig, WeightMap } from './types.ts';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'weights.safetensors';
export const MANIFEST_FILE = 'manifest.json';

export interface ArtifactManifest {
  /** sha256 (hex) of every file of the artifact except the manifest itself. */
  files: Record<string, string>;
  /** `${config.name}+${first 12 hex of sha256(canonicalJson(files))}`. */
  version: string;
}

export interface WriteArtifactOptions {
  dtype: 'F32' | 'F16';
  /** Replace an existing artifact at `dir` (default: refuse). */
  overwrite?: boolean;
  /** More files to ship and hash (e.g. "metrics.json"). */
  extraFiles?: Record<string, Uint8Array | string>;
}

export interface LoadArtifactOptions {
  /** The vocabulary hash the tokenizer in use has (default: the shipped vocabulary's). */
  vocabSha256?: string;
  /** The tokenizer in use folds full-width forms (checked against the config when given). */
  foldFullWidth?: boolean;
}

/**
 * The tokenizer options an artifact was made with. An artifact without config.tokenizer predates the
 * field: every such model saw text with full-width forms folded (the tokenizer's only mode then).
 */
export function tokenizerConfigOf(config: Pick<ArtifactConfig, 'tokenizer'>): TokenizerConfig {
  return { foldFullWidth: config.tokenizer?.foldFullWidth ?? true };
}

/** Full-width punctuation whose ids a model trained on folded text never sees ("，" is 8024 unfolded, "," folded). */
const FULL_WIDTH_PROBES = ['，', '：', '；', '（', '）'];

/**
 * True when a checkpoint's word embeddings show that it was trained on text with full-width forms folded:
 * the rows of "，：；（）" are all exactly the [UNK] row, which is how python/rmbert_train/export.py fills
 * the ids its pretraining corpus (`rmbert corpus`, folded) never had. A checkpoint trained on Hugging
 * Face's tokenization (bert-base-chinese) has learned rows of its own for them.
 */
export function embeddingsShowFoldedText(weights: WeightMap, vocab: { idOf(token: string): number | undefined; unkId: number }): boolean {
  const word = weights.get('bert.embeddings.word_embeddings.weight');
  if (!word || word.shape.length !== 2) return false;
  const [rows, hidden] = word.shape;
  const row = (id: number): Float32Array => word.data.subarray(id * hidden, (id + 1) * hidden);
  if (vocab.unkId >= rows) return false;
  const unk = row(vocab.unkId);
  return FULL_WIDTH_PROBES.every((token) => {
    const id = vocab.idOf(token);
    return id !== undefined && id < rows && id !== vocab.unkId && row(id).every((v, i) => Object.is(v, unk[i]));
  });
}

/** The options to give BertTokenizer (load, withOptions) for this artifact's model. */
export function tokenizerOptionsOf(config: Pick<ArtifactConfig, 'tokenizer'>): TokenizerOptions {
  return { foldFullWidth: tokenizerConfigOf(config).foldFullWidth };
}

// ---------------------------------------------------------------------------------------------
// Hashing and versions

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** JSON with object keys sorted at every level and no whitespace: the same bytes for the same content. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value as Record<string, unknown>).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function artifactVersion(name: string, files: Record<string, string>): ModelVersion {
  return { name, hash: sha256Hex(canonicalJson(files)).slice(0, 12) };
}

// ---------------------------------------------------------------------------------------------
// Config and weight shapes

function isPositiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
}

/** Every problem with a BertConfig (empty when it is valid). */
export function bertConfigProblems(model: unknown): string[] {
  if (model === null || typeof model !== 'object') return ['model is not an object'];
  const m = model as Record<string, unknown>;
  const problems: string[] = [];
  for (const key of ['vocabSize', 'hiddenSize', 'numLayers', 'numHeads', 'intermediateSize', 'maxPositions', 'typeVocabSize']) {
    if (!isPositiveInt(m[key])) problems.push(`model.${key} must be a positive integer (got ${JSON.stringify(m[key])})`);
  }
  if (typeof m.layerNormEps !== 'number' || !(m.layerNormEps > 0)) problems.push('model.layerNormEps must be a positive number');
  if (isPositiveInt(m.hiddenSize) && isPositiveInt(m.numHeads) && m.hiddenSize % m.numHeads !== 0) {
    problems.push(`model.hiddenSize ${m.hiddenSize} is not a multiple of model.numHeads ${m.numHeads}`);
  }
  return problems;
}

/** Every problem with a BIO label list (empty when valid): "O" first, then unique B-X / I-X tags. */
export function labelProblems(labels: unknown): string[] {
  if (!Array.isArray(labels) || !labels.every((l) => typeof l === 'string')) return ['labels must be a list of strings'];
  if (labels.length === 0) return [];
  const problems: string[] = [];
  if (labels[0] !== 'O') problems.push(`labels[0] must be "O" (got ${JSON.stringify(labels[0])})`);
  const seen = new Set<string>();
  labels.forEach((l: string, i) => {
    if (seen.has(l)) problems.push(`label ${JSON.stringify(l)} appears twice`);
    seen.add(l);
    if (i > 0 && !/^[BI]-.+$/.test(l)) problems.push(`label ${JSON.stringify(l)} is not B-<type> or I-<type>`);
  });
  return problems;
}

/** Validates a parsed config.json; `source` names the file in the error. */
export function parseArtifactConfig(raw: unknown, source = CONFIG_FILE): ArtifactConfig {
  const problems: string[] = [];
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ModelError(`${source}: not a JSON object`);
  const c = raw as Record<string, unknown>;
  if (typeof c.name !== 'string' || c.name.length === 0 || /[+\s]/.test(c.name)) {
    problems.push('name must be a non-empty string without "+" or spaces');
  }
  problems.push(...bertConfigProblems(c.model));
  problems.push(...labelProblems(c.labels));
  if (typeof c.vocabSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(c.vocabSha256)) problems.push('vocabSha256 must be 64 lower-case hex digits');
  if (c.tokenizer !== undefined) {
    const t = c.tokenizer as Record<string, unknown> | null;
    if (t === null || typeof t !== 'object' || Array.isArray(t)) problems.push('tokenizer must be an object');
    else if (typeof t.foldFullWidth !== 'boolean') problems.push('tokenizer.foldFullWidth must be true or false');
  }
  const k = c.knowledge as Record<string, unknown> | undefined;
  if (k === null || typeof k !== 'object') problems.push('knowledge must be an object');
  else {
    if (k.inject !== 'relation+object' && k.inject !== 'object') problems.push('knowledge.inject must be "relation+object" or "object"');
    if (typeof k.maxEntities !== 'number' || !Number.isInteger(k.maxEntities) || k.maxEntities < 0) problems.push('knowledge.maxEntities must be an integer >= 0');
    if (!isPositiveInt(k.maxLength)) problems.push('knowledge.maxLength must be a positive integer');
    if (typeof k.enabled !== 'boolean') problems.push('knowledge.enabled must be true or false');
    if (k.kgVersion !== undefined && typeof k.kgVersion !== 'string') problems.push('knowledge.kgVersion must be a string');
  }
  if (c.training !== undefined && (c.training === null || typeof c.training !== 'object')) problems.push('training must be an object');
  if (typeof c.createdAt !== 'string' || Number.isNaN(Date.parse(c.createdAt))) problems.push('createdAt must be an ISO date string');
  if (problems.length > 0) throw new ModelError(`${source} is invalid:\n  - ${problems.join('\n  - ')}`);
  return c as unknown as ArtifactConfig;
}

export interface WeightLayoutOptions {
  /** Number of token-classification labels; 0 = no classifier. */
  numLabels: number;
  /** Include the masked-LM head (cls.predictions.*). */
  mlmHead: boolean;
  /** Include a CRF output layer (crf.transitions, crf.start_transitions, crf.end_transitions); needs labels. */
  crf?: boolean;
}

/** The name and shape of every weight a model with this config has (Hugging Face names, see types.ts). */
export function expectedWeightShapes(config: BertConfig, options: WeightLayoutOptions): Map<string, number[]> {
  const h = config.hiddenSize;
  const shapes = new Map<string, number[]>();
  shapes.set('bert.embeddings.word_embeddings.weight', [config.vocabSize, h]);
  shapes.set('bert.embeddings.position_embeddings.weight', [config.maxPositions, h]);
  shapes.set('bert.embeddings.token_type_embeddings.weight', [config.typeVocabSize, h]);
  shapes.set('bert.embeddings.LayerNorm.weight', [h]);
  shapes.set('bert.embeddings.LayerNorm.bias', [h]);
  for (let i = 0; i < config.numLayers; i++) {
    const p = `bert.encoder.layer.${i}`;
    for (const m of ['query', 'key', 'value']) {
      shapes.set(`${p}.attention.self.${m}.weight`, [h, h]);
      shapes.set(`${p}.attention.self.${m}.bias`, [h]);
    }
    shapes.set(`${p}.attention.output.dense.weight`, [h, h]);
    shapes.set(`${p}.attention.output.dense.bias`, [h]);
    shapes.set(`${p}.attention.output.LayerNorm.weight`, [h]);
    shapes.set(`${p}.attention.output.LayerNorm.bias`, [h]);
    shapes.set(`${p}.intermediate.dense.weight`, [config.intermediateSize, h]);
    shapes.set(`${p}.intermediate.dense.bias`, [config.intermediateSize]);
    shapes.set(`${p}.output.dense.weight`, [h, config.intermediateSize]);
    shapes.set(`${p}.output.dense.bias`, [h]);
    shapes.set(`${p}.output.LayerNorm.weight`, [h]);
    shapes.set(`${p}.output.LayerNorm.bias`, [h]);
  }
  if (options.numLabels > 0) {
    shapes.set('classifier.weight', [options.numLabels, h]);
    shapes.set('classifier.bias', [options.numLabels]);
    if (options.crf) {
      shapes.set('crf.transitions', [options.numLabels, options.numLabels]);
      shapes.set('crf.start_transitions', [options.numLabels]);
      shapes.set('crf.end_transitions', [options.numLabels]);
    }
  }
  if (options.mlmHead) {
    shapes.set('cls.predictions.transform.dense.weight', [h, h]);
    shapes.set('cls.predictions.transform.dense.bias', [h]);
    shapes.set('cls.predictions.transform.LayerNorm.weight', [h]);
    shapes.set('cls.predictions.transform.LayerNorm.bias', [h]);
    shapes.set('cls.predictions.bias', [config.vocabSize]);
  }
  return shapes;
}

export const MLM_HEAD_PREFIX = 'cls.predictions.';

/**
 * Checks that `weights` are exactly the weights of a model with `config` and `numLabels` labels
 * (the MLM head is optional but all-or-nothing); lists every missing, unknown or mis-shaped weight.
 */
export function weightProblems(config: BertConfig, numLabels: number, weights: WeightMap): string[] {
  const mlmHead = [...weights.keys()].some((n) => n.startsWith(MLM_HEAD_PREFIX));
  const crf = [...weights.keys()].some((n) => n.startsWith('crf.'));
  const expected = expectedWeightShapes(config, { numLabels, mlmHead, crf });
  const problems: string[] = [];
  for (const [name, shape] of expected) {
    const w = weights.get(name);
    if (!w) problems.push(`missing weight ${name} [${shape.join(', ')}]`);
    else if (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i])) {
      problems.push(`weight ${name} has shape [${w.shape.join(', ')}], the config needs [${shape.join(', ')}]`);
    } else if (w.data.length !== shape.reduce((a, b) => a * b, 1)) {
      problems.push(`weight ${name} holds ${w.data.length} values, shape [${shape.join(', ')}] needs ${shape.reduce((a, b) => a * b, 1)}`);
    }
  }
  for (const name of weights.keys()) if (!expected.has(name)) problems.push(`unknown weight ${name}`);
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Writing

async function writeDurably(file: string, bytes: Uint8Array | string): Promise<void> {
  const handle = await open(file, 'w', 0o644);
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

function checkFileName(name: string): void {
  if (name === MANIFEST_FILE || name === CONFIG_FILE || name === WEIGHTS_FILE || name !== path.basename(name) || name.startsWith('.')) {
    throw new ModelError(`cannot add file "${name}" to an artifact (reserved or not a plain file name)`);
  }
}

/**
 * Writes an artifact directory atomically: everything goes to a hidden temp directory beside `dir`,
 * is synced, then renamed into place, so readers never see half an artifact. Refuses a config and
 * weights that do not fit together.
 */
export async function writeArtifact(dir: string, config: ArtifactConfig, weights: WeightMap, options: WriteArtifactOptions): Promise<ModelArtifact> {
  parseArtifactConfig(JSON.parse(JSON.stringify(config)), 'config');
  const problems = weightProblems(config.model, config.labels.length, weights);
  if (problems.length > 0) throw new ModelError(`weights do not match the config:\n  - ${problems.join('\n  - ')}`);
  const target = path.resolve(dir);
  if (!options.overwrite && (await exists(target))) throw new ModelError(`${target} already exists (pass overwrite to replace it)`);

  const files = new Map<string, Uint8Array | string>();
  files.set(CONFIG_FILE, JSON.stringify(config, null, 2) + '\n');
  files.set(
    WEIGHTS_FILE,
    writeSafetensors(fromWeightMap(weights), { dtype: options.dtype, metadata: { format: 'pt', name: config.name } }),
  );
  for (const [name, bytes] of Object.entries(options.extraFiles ?? {})) {
    checkFileName(name);
    files.set(name, bytes);
  }
  const hashes: Record<string, string> = {};
  for (const name of [...files.keys()].sort()) hashes[name] = sha256Hex(files.get(name)!);
  const version = artifactVersion(config.name, hashes);
  const manifest: ArtifactManifest = { files: hashes, version: `${version.name}+${version.hash}` };

  const parent = path.dirname(target);
  await mkdir(parent, { recursive: true });
  const temp = path.join(parent, `.${path.basename(target)}.tmp-${randomBytes(6).toString('hex')}`);
  await mkdir(temp);
  try {
    for (const [name, bytes] of files) await writeDurably(path.join(temp, name), bytes);
    await writeDurably(path.join(temp, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
    if (await exists(target)) {
      // rename() cannot replace a non-empty directory: move the old one aside first.
      const old = path.join(parent, `.${path.basename(target)}.old-${randomBytes(6).toString('hex')}`);
      await rename(target, old);
      await rename(temp, target);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(temp, target);
    }
  } catch (error) {
    await rm(temp, { recursive: true, force: true });
    throw new ModelError(`cannot write artifact ${target}: ${(error as Error).message}`, { cause: error });
  }
  return { dir: target, config, weights, version };
}

// ---------------------------------------------------------------------------------------------
// Reading

async function readArtifactFile(dir: string, name: string): Promise<Buffer> {
  try {
    return await readFile(path.join(dir, name));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ModelError(`artifact ${dir}: ${name} is missing`, { cause: error });
    throw new ModelError(`artifact ${dir}: cannot read ${name}: ${(error as Error).message}`, { cause: error });
  }
}

function parseJsonFile(dir: string, name: string, bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (error) {
    throw new ModelError(`artifact ${dir}: ${name} is not valid JSON: ${(error as Error).message}`, { cause: error });
  }
}

/** Reads and checks manifest.json (structure only, not the hashes). */
export async function readManifest(dir: string): Promise<ArtifactManifest> {
  const raw = parseJsonFile(dir, MANIFEST_FILE, await readArtifactFile(dir, MANIFEST_FILE)) as Partial<ArtifactManifest> | null;
  const files = raw?.files;
  if (
    !raw ||
    typeof raw.version !== 'string' ||
    !files ||
    typeof files !== 'object' ||
    !Object.values(files).every((h) => typeof h === 'string' && /^[0-9a-f]{64}$/.test(h))
  ) {
    throw new ModelError(`artifact ${dir}: ${MANIFEST_FILE} must be { files: { name: sha256 }, version }`);
  }
  for (const required of [CONFIG_FILE, WEIGHTS_FILE]) {
    if (!(required in files)) throw new ModelError(`artifact ${dir}: ${MANIFEST_FILE} does not list ${required}`);
  }
  return { files: { ...files }, version: raw.version };
}

/**
 * The tokenizer options of the artifact at `dir`, from its config.json alone (loadArtifact verifies the
 * rest), for building the tokenizer before the artifact is loaded.
 */
export async function readTokenizerOptions(dir: string): Promise<TokenizerOptions> {
  const root = path.resolve(dir);
  return tokenizerOptionsOf(parseArtifactConfig(parseJsonFile(root, CONFIG_FILE, await readArtifactFile(root, CONFIG_FILE)), `artifact ${root}: ${CONFIG_FILE}`));
}

/**
 * Loads and verifies an artifact: every file's sha256 against the manifest, the version against the
 * hashes, the config's structure, its vocabulary hash (and, when given, its full-width folding) against
 * the tokenizer's, and the weights
 * against the config (no missing, unknown or mis-shaped weight).
 */
export async function loadArtifact(dir: string, options: LoadArtifactOptions = {}): Promise<ModelArtifact> {
  const root = path.resolve(dir);
  const manifest = await readManifest(root);
  const contents = new Map<string, Buffer>();
  for (const [name, expected] of Object.entries(manifest.files)) {
    if (name !== path.basename(name) || name === MANIFEST_FILE) throw new ModelError(`artifact ${root}: ${MANIFEST_FILE} lists an invalid file name "${name}"`);
    const bytes = await readArtifactFile(root, name);
    const actual = sha256Hex(bytes);
    if (actual !== expected) {
      throw new ModelError(`artifact ${root}: ${name} has sha256 ${actual}, the manifest says ${expected} (file changed or corrupt)`);
    }
    contents.set(name, bytes);
  }
  const config = parseArtifactConfig(parseJsonFile(root, CONFIG_FILE, contents.get(CONFIG_FILE)!), `artifact ${root}: ${CONFIG_FILE}`);
  const version = artifactVersion(config.name, manifest.files);
  if (manifest.version !== `${version.name}+${version.hash}`) {
    throw new ModelError(`artifact ${root}: ${MANIFEST_FILE} says version ${manifest.version}, its files give ${version.name}+${version.hash}`);
  }
  const vocab = options.vocabSha256 ?? SHIPPED_VOCAB_SHA256;
  if (config.vocabSha256 !== vocab) {
    throw new ModelError(
      `artifact ${root}: ${CONFIG_FILE} was made for vocabulary ${config.vocabSha256.slice(0, 12)}..., the tokenizer's is ${vocab.slice(0, 12)}...; token ids would not match`,
    );
  }
  const fold = tokenizerConfigOf(config).foldFullWidth;
  if (options.foldFullWidth !== undefined && options.foldFullWidth !== fold) {
    throw new ModelError(
      `artifact ${root}: ${CONFIG_FILE} was made with a tokenizer that ${fold ? 'folds' : 'does not fold'} full-width forms (tokenizer.foldFullWidth ${fold}), ` +
        `the tokenizer in use ${options.foldFullWidth ? 'folds' : 'does not'}; token ids would not match (BertTokenizer.withOptions(tokenizerOptionsOf(config)) gives the right one)`,
    );
  }
  let weights: WeightMap;
  try {
    weights = toWeightMap(readSafetensors(contents.get(WEIGHTS_FILE)!));
  } catch (error) {
    if (error instanceof SchemaError) throw new ModelError(`artifact ${root}: ${WEIGHTS_FILE}: ${error.message}`, { cause: error });
    throw error;
  }
  const problems = weightProblems(config.model, config.labels.length, weights);
  if (problems.length > 0) {
    throw new ModelError(`artifact ${root}: ${WEIGHTS_FILE} does not match ${CONFIG_FILE}:\n  - ${problems.join('\n  - ')}`);
  }
  return { dir: root, config, weights, version };
}
