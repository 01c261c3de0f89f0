/**
 * Settings of the clinician review page (`rmbert review`), in the style of the stage's table in
 * schema.ts: environment variable, flag, kind, default, bounds, validated once into a typed, frozen
 * object, every problem reported together in one ConfigError. The Kafka connection and the topics
 * (documents, entities, feedback) are the stage's settings (schema.ts); these are the page's own.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors/index.ts';
import { SETTINGS } from './schema.ts';

export interface ReviewerToken {
  /** Pseudonymous reviewer id: goes into Feedback.annotator. */
  reviewer: string;
  /** sha256 (hex) of the reviewer's token; the token itself is not kept. */
  tokenSha256: string;
}

export interface ReviewConfig {
  /** Address the page listens on (127.0.0.1 unless configured). */
  host: string;
  /** 0 = any free port (the chosen one is logged). */
  port: number;
  /** The review queue, the join window and the submission records (holds document text: keep it private). */
  stateDir: string;
  /** Reviewers and their tokens (from tokensFile), empty in proxy mode without a tokens file. */
  reviewers: readonly ReviewerToken[];
  tokensFile: string | null;
  /** Header set by an authenticating proxy (e.g. an OIDC proxy) with the user's name; null = tokens only. */
  proxyUserHeader: string | null;
  /** Documents waiting for review, at most; beyond it the most confident waiting one leaves the queue. */
  maxQueue: number;
  /** Documents (or entity records) kept while waiting for their other half, at most: the join window. */
  joinWindow: number;
  /** Reviewed documents remembered (so that a repeated submission is recognised), at most. */
  maxReviewed: number;
  /** Show EmrDocument.patientRef on the page. */
  showPatientRef: boolean;
  /** Entity types a reviewer can choose (types seen in records are added). */
  types: readonly string[];
  /** Consumer group of the page's reader of the documents and entities topics. */
  groupId: string;
  /** Set the Secure attribute on the session cookie (the page is served over HTTPS, e.g. behind a proxy). */
  secureCookie: boolean;
  /** Origins (scheme://host:port) allowed to send writes besides the page's own Host; e.g. the proxy's public origin. */
  allowedOrigins: readonly string[];
  /** Session lifetime. */
  sessionMinutes: number;
  /** The trainer's /metrics for the trainer panel; null = the panel shows the model-updates topic only. */
  trainerMetricsUrl: string | null;
  trainerPollMs: number;
}

type Kind = 'int' | 'string' | 'bool' | 'list';

export interface ReviewSetting {
  key: string;
  env: string;
  flag: string;
  kind: Kind;
  default: string;
  min?: number;
  max?: number;
  doc: string;
}

export const DEFAULT_REVIEW_TYPES = ['Disease', 'Symptom', 'BodyPart', 'Examine', 'Cure'] as const;

export const REVIEW_SETTINGS: readonly ReviewSetting[] = [
  { key: 'host', env: 'RMBERT_REVIEW_HOST', flag: 'host', kind: 'string', default: '127.0.0.1', doc: 'address the review page listens on (anything but loopback exposes patient text: put it behind TLS)' },
  { key: 'port', env: 'RMBERT_REVIEW_PORT', flag: 'port', kind: 'int', default: '8765', min: 0, max: 65535, doc: 'port of the review page; 0 = any free port (logged)' },
  { key: 'stateDir', env: 'RMBERT_REVIEW_STATE_DIR', flag: 'state-dir', kind: 'string', default: 'review-state', doc: 'the review queue on disk (survives restarts; holds document text: keep it private)' },
  { key: 'tokensFile', env: 'RMBERT_REVIEW_TOKENS_FILE', flag: 'tokens-file', kind: 'string', default: '', doc: 'reviewers and their tokens, one "reviewer-id token" per line (# comments); the id is pseudonymous and goes into Feedback.annotator' },
  { key: 'proxyUserHeader', env: 'RMBERT_REVIEW_PROXY_USER_HEADER', flag: 'proxy-user-header', kind: 'string', default: '', doc: 'trust this request header (e.g. x-forwarded-user, set by an authenticating OIDC proxy) as the reviewer; only when the proxy is the only way to reach the page' },
  { key: 'maxQueue', env: 'RMBERT_REVIEW_MAX_QUEUE', flag: 'max-queue', kind: 'int', default: '1000', min: 1, max: 1_000_000, doc: 'documents waiting for review, at most (the most confident waiting one leaves when a new one comes)' },
  { key: 'joinWindow', env: 'RMBERT_REVIEW_JOIN_WINDOW', flag: 'join-window', kind: 'int', default: '5000', min: 1, max: 1_000_000, doc: 'documents (and entity records) kept while waiting for their other half, at most' },
  { key: 'maxReviewed', env: 'RMBERT_REVIEW_MAX_REVIEWED', flag: 'max-reviewed', kind: 'int', default: '10000', min: 1, max: 10_000_000, doc: 'reviewed documents remembered, so that a repeated submission is recognised' },
  { key: 'showPatientRef', env: 'RMBERT_REVIEW_SHOW_PATIENT_REF', flag: 'show-patient-ref', kind: 'bool', default: 'false', doc: 'show the patient reference on the page' },
  { key: 'types', env: 'RMBERT_REVIEW_TYPES', flag: 'types', kind: 'list', default: DEFAULT_REVIEW_TYPES.join(','), doc: 'entity types a reviewer can choose, comma-separated' },
  { key: 'groupId', env: 'RMBERT_REVIEW_GROUP_ID', flag: 'review-group-id', kind: 'string', default: 'rmbert-review', doc: "consumer group of the page's reader of the documents and entities topics" },
  { key: 'secureCookie', env: 'RMBERT_REVIEW_SECURE_COOKIE', flag: 'secure-cookie', kind: 'bool', default: 'false', doc: 'mark the session cookie Secure (the page is reached over HTTPS)' },
  { key: 'allowedOrigins', env: 'RMBERT_REVIEW_ALLOWED_ORIGINS', flag: 'allowed-origins', kind: 'list', default: '', doc: "origins allowed to send writes besides the page's own, comma-separated (e.g. https://review.hospital.example behind a proxy)" },
  { key: 'sessionMinutes', env: 'RMBERT_REVIEW_SESSION_MINUTES', flag: 'session-minutes', kind: 'int', default: '480', min: 1, max: 43_200, doc: 'a signed-in session lasts this long' },
  { key: 'trainerMetricsUrl', env: 'RMBERT_REVIEW_TRAINER_METRICS_URL', flag: 'trainer-metrics-url', kind: 'string', default: '', doc: "the trainer's /metrics (e.g. http://127.0.0.1:9465/metrics) for the trainer panel; empty = the panel shows promoted models only (model-updates topic)" },
  { key: 'trainerPollMs', env: 'RMBERT_REVIEW_TRAINER_POLL_MS', flag: 'trainer-poll-ms', kind: 'int', default: '5000', min: 200, max: 600_000, doc: "how often the trainer's metrics are read" },
];

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off']);
const HEADER_NAME = /^[a-z0-9-]{1,100}$/;
const REVIEWER_ID = /^[A-Za-z0-9._@:-]{1,128}$/;
const ORIGIN = /^https?:\/\/[^\s/]+$/;

export interface ReviewConfigSources {
  env?: Readonly<Record<string, string | undefined>>;
  /** By flag name; they win over the environment. */
  flags?: Readonly<Record<string, string | boolean | undefined>>;
  /** By key; they win over flags and environment (tests). */
  overrides?: Readonly<Record<string, string | number | boolean>>;
}

/** Reviewers from a tokens file: "reviewer-id token" per line, blank lines and # comments ignored. */
export function parseTokensFile(text: string, file: string, problems: string[]): ReviewerToken[] {
  const out: ReviewerToken[] = [];
  const ids = new Set<string>();
  const hashes = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `review.tokensFile ${file} line ${i + 1}`;
    const parts = line.split(/\s+/);
    if (parts.length !== 2) return void problems.push(`${where}: expected "reviewer-id token"`);
    const [reviewer, token] = parts;
    if (!REVIEWER_ID.test(reviewer)) return void problems.push(`${where}: reviewer id must be 1-128 of A-Z a-z 0-9 . _ @ : -`);
    // The token is never echoed in a message.
    if (token.length < 16) return void problems.push(`${where}: the token is shorter than 16 characters`);
    const tokenSha256 = sha256Hex(token);
    if (ids.has(reviewer)) return void problems.push(`${where}: reviewer ${reviewer} is listed twice`);
    if (hashes.has(tokenSha256)) return void problems.push(`${where}: the same token is given to two reviewers`);
    ids.add(reviewer);
    hashes.add(tokenSha256);
    out.push({ reviewer, tokenSha256 });
  });
  return out;
}

export function sha256Hex(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

/** Validates every review setting; throws one ConfigError listing every problem. */
export function buildReviewConfig(sources: ReviewConfigSources = {}): ReviewConfig {
  const problems: string[] = [];
  const env = sources.env ?? {};
  const flags = sources.flags ?? {};
  const overrides = sources.overrides ?? {};
  const known = new Set(REVIEW_SETTINGS.map((s) => s.key));
  for (const key of Object.keys(overrides)) if (!known.has(key)) problems.push(`review.${key}: unknown setting`);
  const v: Record<string, string | number | boolean | string[]> = {};
  for (const s of REVIEW_SETTINGS) {
    let raw: string;
    let origin: string;
    const o = overrides[s.key];
    if (o !== undefined) [raw, origin] = [String(o), 'override'];
    else if (flags[s.flag] !== undefined) [raw, origin] = [String(flags[s.flag]), `--${s.flag}`];
    else if (env[s.env] !== undefined) [raw, origin] = [env[s.env]!, s.env];
    else [raw, origin] = [s.default, 'default'];
    const where = `review.${s.key} (${origin})`;
    const t = raw.trim();
    switch (s.kind) {
      case 'string':
        v[s.key] = t;
        break;
      case 'list':
        v[s.key] = t.split(',').map((x) => x.trim()).filter((x) => x !== '');
        break;
      case 'bool':
        if (TRUE.has(t.toLowerCase())) v[s.key] = true;
        else if (FALSE.has(t.toLowerCase())) v[s.key] = false;
        else problems.push(`${where}: "${raw}" is not a boolean (use true or false)`);
        break;
      case 'int':
        if (!/^-?\d+$/.test(t)) problems.push(`${where}: "${raw}" is not an integer`);
        else if ((s.min !== undefined && Number(t) < s.min) || (s.max !== undefined && Number(t) > s.max)) problems.push(`${where}: ${t} is outside ${s.min}..${s.max}`);
        else v[s.key] = Number(t);
        break;
    }
  }
  const str = (k: string) => (v[k] as string | undefined) ?? '';
  const list = (k: string) => (v[k] as string[] | undefined) ?? [];

  if (str('host') === '') problems.push('review.host: must not be empty (RMBERT_REVIEW_HOST)');
  if (str('stateDir') === '') problems.push('review.stateDir: must not be empty (RMBERT_REVIEW_STATE_DIR)');
  const proxyUserHeader = str('proxyUserHeader').toLowerCase() || null;
  if (proxyUserHeader !== null && !HEADER_NAME.test(proxyUserHeader)) problems.push(`review.proxyUserHeader: "${proxyUserHeader}" is not a header name`);
  if (proxyUserHeader !== null && ['cookie', 'authorization', 'host', 'origin'].includes(proxyUserHeader)) problems.push(`review.proxyUserHeader: ${proxyUserHeader} cannot carry the user`);
  const tokensFile = str('tokensFile') ? path.resolve(str('tokensFile')) : null;
  let reviewers: ReviewerToken[] = [];
  if (tokensFile !== null) {
    if (!existsSync(tokensFile)) problems.push(`review.tokensFile: file ${tokensFile} does not exist (RMBERT_REVIEW_TOKENS_FILE)`);
    else {
      reviewers = parseTokensFile(readFileSync(tokensFile, 'utf8'), tokensFile, problems);
      if (reviewers.length === 0 && proxyUserHeader === null) problems.push(`review.tokensFile: ${tokensFile} lists no reviewer`);
    }
  } else if (proxyUserHeader === null) {
    problems.push('review.tokensFile: required unless review.proxyUserHeader is set: every request is authenticated (RMBERT_REVIEW_TOKENS_FILE, lines "reviewer-id token")');
  }
  const types = list('types');
  if (types.length === 0) problems.push('review.types: must list at least one type (RMBERT_REVIEW_TYPES)');
  for (const t of types) if (t.length > 40) problems.push(`review.types: "${t.slice(0, 40)}..." is longer than 40 characters`);
  const allowedOrigins = list('allowedOrigins');
  for (const o of allowedOrigins) if (!ORIGIN.test(o)) problems.push(`review.allowedOrigins: "${o}" is not scheme://host[:port]`);
  if (str('groupId') === '') problems.push('review.groupId: must not be empty (RMBERT_REVIEW_GROUP_ID)');
  const trainerMetricsUrl = str('trainerMetricsUrl') || null;
  if (trainerMetricsUrl !== null && !/^https?:\/\/[^\s/]+(\/\S*)?$/.test(trainerMetricsUrl)) problems.push(`review.trainerMetricsUrl: "${trainerMetricsUrl}" is not an http(s) URL (RMBERT_REVIEW_TRAINER_METRICS_URL)`);
  if (problems.length > 0) throw new ConfigError(problems);

  return Object.freeze({
    host: str('host'),
    port: v.port as number,
    stateDir: path.resolve(str('stateDir')),
    reviewers: Object.freeze(reviewers),
    tokensFile,
    proxyUserHeader,
    maxQueue: v.maxQueue as number,
    joinWindow: v.joinWindow as number,
    maxReviewed: v.maxReviewed as number,
    showPatientRef: v.showPatientRef as boolean,
    types: Object.freeze([...new Set(types)]),
    groupId: str('groupId'),
    secureCookie: v.secureCookie as boolean,
    allowedOrigins: Object.freeze(allowedOrigins),
    sessionMinutes: v.sessionMinutes as number,
    trainerMetricsUrl,
    trainerPollMs: v.trainerPollMs as number,
  });
}

/** The review configuration from process.env and parsed flags. */
export function loadReviewConfig(flags: ReviewConfigSources['flags'] = {}, overrides: ReviewConfigSources['overrides'] = {}): ReviewConfig {
  return buildReviewConfig({ env: process.env, flags, overrides });
}

/** node:util parseArgs option specs for the review page's flags. */
export function reviewFlagOptions(): Record<string, { type: 'string' | 'boolean' }> {
  return Object.fromEntries(REVIEW_SETTINGS.map((s) => [s.flag, { type: s.kind === 'bool' ? ('boolean' as const) : ('string' as const) }]));
}

export function reviewConfigHelp(): string {
  return REVIEW_SETTINGS.map((s) => {
    const value = s.kind === 'bool' ? '' : ' <value>';
    const def = s.default ? ` (default ${s.default})` : '';
    return `  --${s.flag}${value}\n      ${s.env}: ${s.doc}${def}`;
  }).join('\n');
}

/** Flags of the review page that would clash with the stage's settings' flags (empty: none). */
export function reviewFlagClashes(): string[] {
  const stage = new Set(SETTINGS.flatMap((s) => [s.flag, `no-${s.flag}`]));
  return REVIEW_SETTINGS.filter((s) => stage.has(s.flag)).map((s) => s.flag);
}
