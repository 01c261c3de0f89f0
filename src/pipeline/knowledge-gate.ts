/**
 * Keeps the stage flowing when the graph store is down. While the store answers, lookups go through
 * it (cache first). When a lookup fails, the gate closes: lookups are served from the cache alone and
 * the names it cannot answer are reported as unresolved (their documents are marked kgDegraded),
 * while a background loop probes the store with jittered backoff (withRetry) and opens the gate again
 * as soon as it answers.
 */
import type { Triple } from '../domain/index.ts';
import { KnowledgeUnavailableError, withRetry } from '../errors/index.ts';
import type { KnowledgeSource, Logger, StageMetrics } from './ports.ts';
import { safeErrorMessage } from './logging.ts';

export interface KnowledgeAnswer {
  triples: ReadonlyMap<string, readonly Triple[]>;
  /** Names whose knowledge is unknown because the store could not be asked. */
  unresolved: ReadonlySet<string>;
}

export interface KnowledgeGateOptions {
  retryInitialMs: number;
  retryMaxMs: number;
  /** A lookup slower than this counts as the store being down. */
  lookupTimeoutMs?: number;
  logger: Logger;
  metrics: StageMetrics;
}

const EMPTY_SET: ReadonlySet<string> = new Set();

function timeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expiry = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new KnowledgeUnavailableError(`graph lookup took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, expiry]).finally(() => clearTimeout(timer));
}

export class KnowledgeGate {
  private up = true;
  private recovering: Promise<void> | null = null;
  private readonly stopSignal = new AbortController();
  private readonly lookupTimeoutMs: number;

  constructor(
    readonly source: KnowledgeSource,
    private readonly options: KnowledgeGateOptions,
  ) {
    this.lookupTimeoutMs = options.lookupTimeoutMs ?? 5000;
    // A source that could not read the graph at start is down from the first moment (rmbert_kg_available
    // 0), and reconnects in the background at once rather than after the first failed lookup.
    this.up = source.isOpen?.() ?? true;
    options.metrics.kgAvailable(this.up);
    if (!this.up) {
      this.recovering = this.recover().finally(() => {
        this.recovering = null;
      });
    }
  }

  /** True while the store is believed to answer. */
  get available(): boolean {
    return this.up;
  }

  version(): string {
    return this.source.version();
  }

  async lookup(names: readonly string[]): Promise<KnowledgeAnswer> {
    if (names.length === 0) return { triples: new Map(), unresolved: EMPTY_SET };
    if (this.up) {
      try {
        const triples = await timeout(this.source.lookup(names), this.lookupTimeoutMs);
        return { triples, unresolved: EMPTY_SET };
      } catch (error) {
        this.markDown(error);
      }
    }
    const cached = this.source.lookupCached(names);
    return { triples: cached.triples, unresolved: new Set(cached.missing) };
  }

  private markDown(error: unknown): void {
    if (!this.up) return;
    this.up = false;
    this.options.metrics.kgAvailable(false);
    this.options.logger.warn('knowledge graph unavailable; serving cached knowledge and marking outputs kgDegraded', {
      errorClass: error instanceof Error ? error.name : 'Error',
      error: safeErrorMessage(error),
    });
    this.recovering ??= this.recover().finally(() => {
      this.recovering = null;
    });
  }

  private async recover(): Promise<void> {
    let attempts = 0;
    while (!this.stopSignal.signal.aborted) {
      try {
        await withRetry(
          async () => {
            attempts++;
            try {
              await timeout(this.source.probe(), this.lookupTimeoutMs);
            } catch (error) {
              throw error instanceof KnowledgeUnavailableError ? error : new KnowledgeUnavailableError('graph probe failed', error);
            }
          },
          {
            retries: 1000,
            initialDelayMs: this.options.retryInitialMs,
            maxDelayMs: this.options.retryMaxMs,
            signal: this.stopSignal.signal,
          },
        );
        this.up = true;
        this.options.metrics.kgAvailable(true);
        this.options.logger.info('knowledge graph reachable again', { probes: attempts });
        return;
      } catch {
        // Gave up one round of retries (or stopping): start another round unless stopping.
      }
    }
  }

  /** Stops the background reconnection. */
  async close(): Promise<void> {
    this.stopSignal.abort();
    await this.recovering;
  }
}
