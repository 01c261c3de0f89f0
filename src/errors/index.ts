/**
 * A few typed errors. `retriable` tells the retry layer whether trying again can help;
 * `cause` keeps the underlying error.
 */
export class RmBertError extends Error {
  readonly retriable: boolean;
  constructor(message: string, options: { retriable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.retriable = options.retriable ?? false;
  }
}

/** Configuration is invalid; `problems` lists every one found. */
export class ConfigError extends RmBertError {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

/** Data does not match the expected schema or format (a file, a record, a dataset line). */
export class SchemaError extends RmBertError {}

/** One input record cannot be processed; it goes to the dead-letter topic. */
export class PoisonRecordError extends RmBertError {}

/** The knowledge graph store cannot be reached or answered with an error. */
export class KnowledgeUnavailableError extends RmBertError {
  constructor(message: string, cause?: unknown) {
    super(message, { retriable: true, cause });
  }
}

/** A model artifact or forward pass failed (bad artifact, hash mismatch, shape mismatch). */
export class ModelError extends RmBertError {}

/** The message broker failed in a way worth retrying. */
export class TransportError extends RmBertError {
  constructor(message: string, cause?: unknown, retriable = true) {
    super(message, { retriable, cause });
  }
}

/** The retry layer gave up; `cause` is the last error. */
export class RetriesExhaustedError extends RmBertError {
  constructor(message: string, cause: unknown) {
    super(message, { retriable: false, cause });
  }
}

export interface RetryOptions {
  retries: number;
  initialDelayMs: number;
  maxDelayMs: number;
  factor?: number;
  /** Called before each wait; for logs and metrics. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  signal?: AbortSignal;
}

export function isRetriable(error: unknown): boolean {
  return error instanceof RmBertError && error.retriable;
}

/** Retries only retriable errors, with full-jitter exponential backoff; wraps the last error when it gives up. */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const factor = options.factor ?? 2;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (error) {
      if (!isRetriable(error)) throw error;
      if (attempt >= options.retries || options.signal?.aborted) {
        throw new RetriesExhaustedError(`gave up after ${attempt + 1} attempts: ${(error as Error).message}`, error);
      }
      const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * factor ** attempt);
      const delayMs = Math.round(Math.random() * ceiling);
      options.onRetry?.(error, attempt + 1, delayMs);
      await abortableDelay(delayMs, options.signal);
      if (options.signal?.aborted) {
        throw new RetriesExhaustedError(`stopped after ${attempt + 1} attempts: ${(error as Error).message}`, error);
      }
    }
  }
}

/** Waits `ms`, or less if `signal` aborts first (so that shutdown does not wait out a backoff). */
function abortableDelay(ms: number, signal?: AbortSignal): Promise<void> {
  if (!signal) return new Promise((resolve) => setTimeout(resolve, ms));
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
