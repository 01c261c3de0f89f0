/**
 * Hot model swap. A request (a ModelUpdate record, or a new artifact in the model directory) loads,
 * verifies and warms the new model in the background while the old one keeps serving; the stage
 * installs it between micro-batches, so every output record is made by exactly one model and says
 * which. A bad or tampered artifact is refused and the old model keeps serving.
 */
import { formatModelVersion } from '../domain/index.ts';
import { safeErrorMessage } from './logging.ts';
import type { Logger, ModelLoader, ModelRequest, ModelRuntime, StageMetrics } from './ports.ts';

export type SwapOutcome = 'staged' | 'refused' | 'unchanged';

export interface ModelCatalogEntry {
  location: string;
  /** Hex sha256 of the artifact's manifest. */
  sha256: string;
}

/** Finds the artifact a model directory currently offers (the newest one, for a directory of versions). */
export interface ModelCatalog {
  latest(): Promise<ModelCatalogEntry | null>;
}

function sameArtifact(model: ModelRuntime, sha256: string | undefined): boolean {
  return sha256 !== undefined && model.version.hash.length > 0 && sha256.toLowerCase().startsWith(model.version.hash.toLowerCase());
}

export class ModelSwitcher {
  private active: ModelRuntime | null = null;
  private staged: ModelRuntime | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly listeners: ((model: ModelRuntime) => void)[] = [];

  constructor(
    private readonly loader: ModelLoader,
    private readonly logger: Logger,
    private readonly metrics: StageMetrics,
  ) {}

  /** Loads the first model; throws when it cannot be loaded (the stage cannot serve without one). */
  async start(request: ModelRequest): Promise<ModelRuntime> {
    const model = await this.loader.load(request);
    this.active = model;
    this.announce(model);
    return model;
  }

  /** Adopts a model loaded elsewhere as the first one. */
  adopt(model: ModelRuntime): void {
    this.active = model;
    this.announce(model);
  }

  get current(): ModelRuntime {
    if (!this.active) throw new Error('no model loaded yet');
    return this.active;
  }

  get loaded(): boolean {
    return this.active !== null;
  }

  /** Called with each model once it serves. */
  onInstalled(listener: (model: ModelRuntime) => void): void {
    this.listeners.push(listener);
  }

  /**
   * Loads, verifies and warms the requested model and stages it for the next micro-batch boundary.
   * Requests run one at a time, in order; a later staged model replaces an earlier one not yet installed.
   */
  request(request: ModelRequest): Promise<SwapOutcome> {
    const run = async (): Promise<SwapOutcome> => {
      const incumbent = this.staged ?? this.active;
      if (incumbent && sameArtifact(incumbent, request.sha256)) {
        this.metrics.modelSwap('unchanged');
        return 'unchanged';
      }
      const log = this.logger.child({ reason: request.reason, announcedVersion: request.announcedVersion, location: request.location });
      log.info('loading model');
      let model: ModelRuntime;
      try {
        model = await this.loader.load(request);
      } catch (error) {
        this.metrics.modelSwap('refused');
        log.error('model refused; the current model keeps serving', {
          errorClass: error instanceof Error ? error.name : 'Error',
          error: safeErrorMessage(error),
          serving: this.active ? formatModelVersion(this.active.version) : null,
        });
        return 'refused';
      }
      if (incumbent && formatModelVersion(incumbent.version) === formatModelVersion(model.version)) {
        await model.dispose();
        this.metrics.modelSwap('unchanged');
        return 'unchanged';
      }
      const previous = this.staged;
      this.staged = model;
      if (previous) await previous.dispose();
      log.info('model staged; it serves from the next micro-batch', { modelVersion: formatModelVersion(model.version), engine: model.engine });
      return 'staged';
    };
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Installs a staged model, if any; call only between micro-batches. Returns true when the model changed. */
  async installStaged(): Promise<boolean> {
    const model = this.staged;
    if (!model) return false;
    this.staged = null;
    const previous = this.active;
    this.active = model;
    this.metrics.modelSwap('installed');
    this.logger.info('model installed', {
      modelVersion: formatModelVersion(model.version),
      previousVersion: previous ? formatModelVersion(previous.version) : null,
      engine: model.engine,
    });
    this.announce(model);
    if (previous) await previous.dispose();
    return true;
  }

  private announce(model: ModelRuntime): void {
    this.metrics.modelServed(formatModelVersion(model.version), model.engine);
    for (const l of this.listeners) l(model);
  }

  /** Waits for pending loads, then disposes every model. */
  async close(): Promise<void> {
    await this.queue;
    const models = [this.staged, this.active].filter((m): m is ModelRuntime => m !== null);
    this.staged = null;
    this.active = null;
    for (const m of models) await m.dispose();
  }
}

/**
 * Polls a model directory and requests a swap when it offers an artifact with a new manifest hash.
 * A refused artifact is not retried until its hash changes.
 */
export class ModelDirectoryWatcher {
  private timer: NodeJS.Timeout | null = null;
  private lastSeen: string | null = null;
  private polling = false;

  constructor(
    private readonly catalog: ModelCatalog,
    private readonly switcher: ModelSwitcher,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  /** `initialSha256`: the hash of the artifact already serving (not requested again). */
  start(initialSha256: string | null): void {
    this.lastSeen = initialSha256;
    if (this.intervalMs <= 0) return;
    this.timer = setInterval(() => void this.poll(), this.intervalMs);
    this.timer.unref();
  }

  /** One check; exposed so tests and the stage can trigger it without waiting for the timer. */
  async poll(): Promise<SwapOutcome | null> {
    if (this.polling) return null;
    this.polling = true;
    try {
      const entry = await this.catalog.latest();
      if (!entry || entry.sha256 === this.lastSeen) return null;
      this.lastSeen = entry.sha256;
      return await this.switcher.request({ location: entry.location, sha256: entry.sha256, reason: 'model-directory' });
    } catch (error) {
      this.logger.warn('model directory check failed', { errorClass: error instanceof Error ? error.name : 'Error', error: safeErrorMessage(error) });
      return null;
    } finally {
      this.polling = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
