/**
 * The review page's HTTP server (Fastify): static page files, a small JSON API over the review queue,
 * and the submission of a corrected entity list as one Feedback record.
 *
 * Security, because the page shows patient text:
 * - every route but the sign-in page, its script and style, and /healthz needs a reviewer: a session
 *   cookie (HttpOnly, SameSite=Strict) from signing in with a token of the configured tokens file, a
 *   `Authorization: Bearer <token>` header (scripts), or, when configured, an authenticating proxy's
 *   user header;
 * - writes from a browser session need the session's CSRF token in `X-CSRF-Token`, and every write is
 *   refused when the browser says it is cross-site (Origin other than the page's own or a configured
 *   one, or Sec-Fetch-Site: cross-site / same-site);
 * - a strict Content-Security-Policy (scripts and styles from the page's origin only, no inline
 *   script), no framing, no referrer, no caching of API answers;
 * - no document text and no patient reference in logs (request lines carry the route pattern, the
 *   status and the time only); the patient reference reaches the page only when configured.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyCookie from '@fastify/cookie';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { ReviewConfig } from '../config/review.ts';
import { RmBertError, SchemaError } from '../errors/index.ts';
import type { Logger } from '../pipeline/ports.ts';
import { safeErrorMessage } from '../pipeline/logging.ts';
import type { ReviewQueue, Submission, WaitingItem } from './queue.ts';
import type { TrainerPanel } from './trainer-panel.ts';
import { entityProblems } from './static/offsets.js';

export const STATIC_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'static');
export const SESSION_COOKIE = 'rmbert_review_session';
export const CSRF_HEADER = 'x-csrf-token';
const MAX_ENTITIES = 5000;

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The Feedback record the page produces (the fields of schemas/Feedback.avsc). */
export interface GoldAssertionOut {
  polarity: 'present' | 'absent';
  certainty: 'certain' | 'possible';
  temporality: 'current' | 'historical';
  experiencer: 'patient' | 'other';
}

export interface FeedbackOut {
  documentId: string;
  text: string;
  /** assertion: the reviewer's (Feedback v2), null when none was given. */
  entities: { start: number; end: number; text: string; type: string; assertion: GoldAssertionOut | null }[];
  annotator: string;
  modelVersionSeen: string | null;
  createdAt: number;
}

/** Where Feedback records go (src/stream/review-io.ts's FeedbackSender in production). */
export interface FeedbackPort {
  encode(record: FeedbackOut): Buffer;
  send(documentId: string, value: Buffer, reviewId: string): Promise<void>;
}

export interface ReviewServerOptions {
  config: ReviewConfig;
  queue: ReviewQueue;
  feedback: FeedbackPort;
  logger: Logger;
  /** The trainer panel's data (GET /api/trainer); null = no panel. */
  panel?: TrainerPanel | null;
  now?: () => number;
}

/** Why a request is refused; the message is safe to show (no document text). */
export class ReviewRequestError extends RmBertError {
  constructor(
    readonly status: number,
    message: string,
    readonly problems: string[] = [],
  ) {
    super(message);
  }
}

interface Session {
  reviewer: string;
  csrf: string;
  expiresAt: number;
}

type Auth = { reviewer: string; via: 'session' | 'proxy'; csrf: string } | { reviewer: string; via: 'bearer' };

declare module 'fastify' {
  interface FastifyRequest {
    reviewAuth: Auth | null;
  }
}

const PUBLIC: ReadonlySet<string> = new Set(['GET /login', 'GET /login.js', 'GET /review.css', 'GET /favicon.ico', 'GET /healthz', 'POST /api/login']);
const STATIC_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/login': { file: 'login.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/login.js': { file: 'login.js', type: 'text/javascript; charset=utf-8' },
  '/offsets.js': { file: 'offsets.js', type: 'text/javascript; charset=utf-8' },
  '/review.css': { file: 'review.css', type: 'text/css; charset=utf-8' },
  '/trainer': { file: 'trainer.html', type: 'text/html; charset=utf-8' },
  '/trainer.js': { file: 'trainer.js', type: 'text/javascript; charset=utf-8' },
};

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function sameSecret(a: string, b: string): boolean {
  // Hashing first gives equal lengths, so the comparison's time says nothing about either.
  return timingSafeEqual(sha256(a), sha256(b));
}

interface SubmittedEntity {
  start: number;
  end: number;
  type: string;
  assertion: GoldAssertionOut | null;
}

/** sha256 of the canonical entity list (sorted; offsets, type and assertion). */
export function entitiesHash(entities: readonly SubmittedEntity[]): string {
  const canonical = [...entities]
    .map((e) => [e.start, e.end, e.type, e.assertion ? [e.assertion.polarity, e.assertion.certainty, e.assertion.temporality, e.assertion.experiencer] : null])
    .sort((a, b) => (a[0] as number) - (b[0] as number) || (a[1] as number) - (b[1] as number));
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex');
}

export interface ReviewServer {
  app: FastifyInstance;
  /** Resends the Feedback records a crash or an outage left unacknowledged; resolves to how many went out. */
  resendPending(): Promise<number>;
}

export function createReviewServer(options: ReviewServerOptions): ReviewServer {
  const { config, queue, feedback } = options;
  const now = options.now ?? Date.now;
  const log = options.logger.child({ component: 'review-http' });
  const files = new Map(Object.entries(STATIC_FILES).map(([route, f]) => [route, { body: readFileSync(path.join(STATIC_DIR, f.file)), type: f.type }]));
  const sessions = new Map<string, Session>();
  const csrfKey = randomBytes(32);
  const failedLogins = new Map<string, { count: number; since: number }>();
  const locks = new Map<string, Promise<unknown>>();

  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024, trustProxy: false, return503OnClosing: true });
  void app.register(fastifyCookie);
  app.decorateRequest('reviewAuth', null);

  function tokenReviewer(token: string): string | null {
    const hash = createHash('sha256').update(token, 'utf8').digest('hex');
    let found: string | null = null;
    for (const r of config.reviewers) if (sameSecret(r.tokenSha256, hash)) found = r.reviewer;
    return found;
  }

  function authenticate(request: FastifyRequest): Auth | null {
    const header = request.headers.authorization;
    if (typeof header === 'string' && header.startsWith('Bearer ')) {
      const reviewer = tokenReviewer(header.slice(7).trim());
      return reviewer === null ? null : { reviewer, via: 'bearer' };
    }
    if (config.proxyUserHeader !== null) {
      const user = request.headers[config.proxyUserHeader];
      if (typeof user === 'string' && user.trim() !== '') {
        // Pseudonymous: the proxy's user name (often an e-mail address) never leaves this process.
        const reviewer = `proxy-${createHash('sha256').update(user.trim()).digest('hex').slice(0, 16)}`;
        return { reviewer, via: 'proxy', csrf: createHmac('sha256', csrfKey).update(`proxy\u0000${user.trim()}`).digest('base64url') };
      }
    }
    const sid = request.cookies[SESSION_COOKIE];
    if (typeof sid === 'string') {
      const session = sessions.get(sid);
      if (session && session.expiresAt > now()) return { reviewer: session.reviewer, via: 'session', csrf: session.csrf };
      if (session) sessions.delete(sid);
    }
    return null;
  }

  /** Refuses a write the browser marks as cross-site, or one from a foreign Origin. */
  function crossSiteProblem(request: FastifyRequest): string | null {
    const site = request.headers['sec-fetch-site'];
    if (typeof site === 'string' && site !== 'same-origin' && site !== 'none') return `cross-site request refused (Sec-Fetch-Site: ${site})`;
    const origin = request.headers.origin;
    if (typeof origin === 'string') {
      const own = `${request.protocol}://${request.headers.host ?? ''}`;
      if (origin !== own && !config.allowedOrigins.includes(origin)) return 'cross-site request refused (Origin is not this page)';
    }
    return null;
  }

  app.addHook('onRequest', async (request, reply) => {
    reply.header('content-security-policy', CONTENT_SECURITY_POLICY);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    reply.header('x-frame-options', 'DENY');
    reply.header('cross-origin-opener-policy', 'same-origin');
    reply.header('cross-origin-resource-policy', 'same-origin');
    reply.header('cache-control', 'no-store');
    const route = `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]}`;
    const write = request.method !== 'GET' && request.method !== 'HEAD';
    if (write) {
      const problem = crossSiteProblem(request);
      if (problem) return reply.code(403).send({ error: problem });
    }
    if (PUBLIC.has(route)) return;
    const auth = authenticate(request);
    if (auth === null) {
      if (request.method === 'GET' && !request.url.startsWith('/api/')) return reply.redirect('/login', 303);
      return reply.code(401).header('www-authenticate', 'Bearer realm="rmbert-review"').send({ error: 'sign in first (a reviewer token)' });
    }
    if (write && auth.via !== 'bearer') {
      const token = request.headers[CSRF_HEADER];
      if (typeof token !== 'string' || !sameSecret(token, auth.csrf)) return reply.code(403).send({ error: 'missing or wrong CSRF token' });
    }
    request.reviewAuth = auth;
  });

  app.addHook('onResponse', async (request, reply) => {
    // The route pattern, not the URL: no filter values, no ids beyond the pattern's.
    log.info('request', { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: reply.statusCode, ms: Math.round(reply.elapsedTime), reviewer: request.reviewAuth?.reviewer });
  });

  app.setErrorHandler(async (error, request, reply) => {
    if (error instanceof ReviewRequestError) return reply.code(error.status).send({ error: error.message, problems: error.problems });
    const status = (error as { statusCode?: number }).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) return reply.code(status).send({ error: 'bad request' });
    log.error('request failed', { route: request.routeOptions.url, errorClass: (error as Error).name, error: safeErrorMessage(error) });
    const retriable = error instanceof RmBertError && error.retriable;
    return reply.code(retriable ? 503 : 500).send({ error: retriable ? 'the feedback topic cannot be reached now; submit again' : 'internal error', retriable });
  });

  for (const [route, file] of files) app.get(route, async (_request, reply) => reply.type(file.type).send(file.body));
  app.get('/healthz', async () => ({ ok: true }));
  // Browsers ask for it on every page: no icon, and no 404 in their console.
  app.get('/favicon.ico', async (_request, reply) => reply.code(204).send());

  app.post('/api/login', async (request, reply) => {
    const ip = request.ip;
    const failures = failedLogins.get(ip);
    if (failures && now() - failures.since < 60_000 && failures.count >= 10) return reply.code(429).send({ error: 'too many failed sign-ins; wait a minute' });
    const token = (request.body as { token?: unknown } | null)?.token;
    const reviewer = typeof token === 'string' ? tokenReviewer(token.trim()) : null;
    if (reviewer === null) {
      const f = failures && now() - failures.since < 60_000 ? failures : { count: 0, since: now() };
      f.count++;
      if (failedLogins.size >= 10_000) failedLogins.clear();
      failedLogins.set(ip, f);
      log.warn('sign-in refused', { ip });
      return reply.code(401).send({ error: 'unknown token' });
    }
    failedLogins.delete(ip);
    const sid = randomBytes(32).toString('base64url');
    const maxAge = config.sessionMinutes * 60;
    sessions.set(sid, { reviewer, csrf: randomBytes(32).toString('base64url'), expiresAt: now() + maxAge * 1000 });
    for (const [k, s] of sessions) if (s.expiresAt <= now()) sessions.delete(k);
    reply.setCookie(SESSION_COOKIE, sid, { httpOnly: true, sameSite: 'strict', secure: config.secureCookie, path: '/', maxAge });
    log.info('signed in', { reviewer });
    return { reviewer };
  });

  app.post('/api/logout', async (request, reply) => {
    const sid = request.cookies[SESSION_COOKIE];
    if (sid) sessions.delete(sid);
    reply.clearCookie(SESSION_COOKIE, { path: '/' });
    return { ok: true };
  });

  app.get('/api/session', async (request) => {
    const auth = request.reviewAuth!;
    return { reviewer: auth.reviewer, csrfToken: auth.via === 'bearer' ? null : auth.csrf, types: allTypes(), showPatientRef: config.showPatientRef };
  });

  function allTypes(): string[] {
    return [...new Set([...config.types, ...queue.facets().types])];
  }

  app.get('/api/trainer', async (_request, reply) => {
    if (!options.panel) return reply.code(404).send({ error: 'no trainer panel' });
    return options.panel.view();
  });

  app.get('/api/queue', async (request) => {
    const q = request.query as { type?: string; modelVersion?: string; limit?: string };
    const filter = { type: q.type || undefined, modelVersion: q.modelVersion || undefined };
    const limit = Math.max(1, Math.min(500, Number(q.limit) || 100));
    const items = queue.list(filter);
    return {
      counts: queue.counts(filter),
      facets: { ...queue.facets(), types: allTypes() },
      items: items.slice(0, limit).map((w) => ({
        reviewId: w.reviewId,
        documentId: w.documentId,
        modelVersion: w.modelVersion,
        confidence: w.confidence,
        entityCount: w.entities.length,
        types: [...new Set(w.entities.map((e) => e.type))],
        annotatedAt: w.annotatedAt,
        submitting: w.submission !== null,
      })),
    };
  });

  app.get('/api/items/:reviewId', async (request, reply) => {
    const { reviewId } = request.params as { reviewId: string };
    const item = queue.get(reviewId);
    if (!item) {
      const done = queue.getReviewed(reviewId);
      if (done) return reply.code(410).send({ error: 'already reviewed', reviewId, submittedAt: done.submission.createdAt });
      return reply.code(404).send({ error: 'no such review' });
    }
    return itemView(item);
  });

  function itemView(item: WaitingItem): Record<string, unknown> {
    return {
      reviewId: item.reviewId,
      documentId: item.documentId,
      sourceSystem: item.sourceSystem,
      section: item.section,
      ...(config.showPatientRef ? { patientRef: item.patientRef } : {}),
      text: item.text,
      modelVersion: item.modelVersion,
      kgVersion: item.kgVersion,
      kgDegraded: item.kgDegraded,
      annotatedAt: item.annotatedAt,
      confidence: item.confidence,
      entities: item.entities,
      submitted: item.submission !== null,
    };
  }

  /** One submission at a time per review: a double click waits for the first and is answered like a retry. */
  function serialised<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    locks.set(key, tail);
    void tail.then(() => {
      if (locks.get(key) === tail) locks.delete(key);
    });
    return run;
  }

  async function send(item: WaitingItem, submission: Submission): Promise<void> {
    await feedback.send(item.documentId, Buffer.from(submission.recordBase64!, 'base64'), item.reviewId);
    queue.finishSubmission(item.reviewId);
  }

  app.post('/api/items/:reviewId/submit', async (request) => {
    const { reviewId } = request.params as { reviewId: string };
    const auth = request.reviewAuth!;
    const body = request.body as { entities?: unknown } | null;
    return serialised(reviewId, async () => {
      const raw = body?.entities;
      const done = queue.getReviewed(reviewId);
      const item = queue.get(reviewId);
      if (!item && !done) throw new ReviewRequestError(404, 'no such review');
      const text = item?.text ?? '';
      if (item) {
        const problems = entityProblems(text, raw, allTypes(), MAX_ENTITIES);
        if (problems.length > 0) throw new ReviewRequestError(400, 'the entity list is not valid', problems);
      } else if (!Array.isArray(raw)) throw new ReviewRequestError(400, 'the entity list is not valid', ['entities must be a list']);
      const entities: SubmittedEntity[] = (raw as (Omit<SubmittedEntity, 'assertion'> & { assertion?: GoldAssertionOut | null })[]).map((e) => ({
        start: e.start,
        end: e.end,
        type: e.type,
        assertion: e.assertion ? { polarity: e.assertion.polarity, certainty: e.assertion.certainty, temporality: e.assertion.temporality, experiencer: e.assertion.experiencer } : null,
      }));
      const hash = entitiesHash(entities);
      const earlier = done?.submission ?? item?.submission ?? null;
      if (earlier) {
        if (earlier.entitiesSha256 !== hash) throw new ReviewRequestError(409, 'this review was already submitted with another entity list');
        if (earlier.state === 'sending') await send(item!, earlier);
        return { status: 'sent', reviewId, createdAt: earlier.createdAt, entityCount: earlier.entityCount, repeated: true };
      }
      const sorted = [...entities].sort((a, b) => a.start - b.start || a.end - b.end);
      const record: FeedbackOut = {
        documentId: item!.documentId,
        text,
        entities: sorted.map((e) => ({ start: e.start, end: e.end, text: text.slice(e.start, e.end), type: e.type, assertion: e.assertion })),
        annotator: auth.reviewer,
        modelVersionSeen: item!.modelVersion,
        createdAt: now(),
      };
      let encoded: Buffer;
      try {
        encoded = feedback.encode(record);
      } catch (error) {
        if (error instanceof SchemaError) throw new ReviewRequestError(400, error.message);
        throw error;
      }
      const submission: Submission = { reviewer: auth.reviewer, entitiesSha256: hash, createdAt: record.createdAt, entityCount: sorted.length, state: 'sending', recordBase64: encoded.toString('base64') };
      queue.beginSubmission(reviewId, submission);
      await send(item!, submission);
      log.info('feedback sent', { reviewId, documentId: item!.documentId, reviewer: auth.reviewer, entities: sorted.length });
      return { status: 'sent', reviewId, createdAt: record.createdAt, entityCount: sorted.length, repeated: false };
    });
  });

  async function resendPending(): Promise<number> {
    let n = 0;
    for (const item of queue.sending()) {
      await serialised(item.reviewId, async () => {
        const current = queue.get(item.reviewId);
        if (current?.submission?.state === 'sending') {
          await send(current, current.submission);
          n++;
        }
      });
    }
    return n;
  }

  return { app, resendPending };
}
