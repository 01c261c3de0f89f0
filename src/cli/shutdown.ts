/**
 * Shutdown that always ends. Stopping the stage is bounded by its own deadline, but the process can
 * still outlive it: after a broker outage a kafkajs socket and its request-queue timers stay
 * referenced, a driver's close can wait on a dead server, and the CLI only sets process.exitCode.
 * So a long-running command ends explicitly: with the code that says how the stop went as soon as
 * it is over, and with EXIT_DEADLINE when the deadline passes first, whatever is still running.
 */
import type { Logger } from '../pipeline/ports.ts';

/** Stopped cleanly: the in-flight micro-batch was committed. */
export const EXIT_CLEAN = 0;
/** The stage failed (or could not start). */
export const EXIT_FAILED = 1;
/** The shutdown did not finish within the deadline; the process ended anyway (uncommitted input is processed again by the next stage). */
export const EXIT_DEADLINE = 3;

/** Time the stage's own stop may use out of the shutdown deadline, the rest closing the metrics server and graph driver. */
export function stageDeadlineMs(deadlineMs: number): number {
  return Math.max(1, deadlineMs - Math.min(2000, Math.floor(deadlineMs / 5)));
}

export interface ShutdownOptions {
  deadlineMs: number;
  logger: Logger;
  /** Ends the process (tests pass a recorder). */
  exit?: (code: number) => void;
  /**
   * How long after a finished stop the process may take to end by itself (timers and sockets
   * closing) before it is ended explicitly.
   */
  lingerMs?: number;
}

/**
 * Runs `stop` and resolves with the exit code (EXIT_CLEAN, or `uncleanCode` when the stop was not
 * clean or threw). The process is ended with that code `lingerMs` later if it has not ended by itself,
 * and with EXIT_DEADLINE once `deadlineMs` has passed if `stop` has not settled by then.
 */
export function stopAndExit(stop: () => Promise<{ clean: boolean }>, uncleanCode: number, options: ShutdownOptions): Promise<number> {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const lingerMs = options.lingerMs ?? 250;
  return new Promise<number>((resolve) => {
    let settled = false;
    // Unreferenced: it ends a process that would otherwise hang, and never keeps one alive.
    const deadline = setTimeout(() => {
      if (settled) return;
      settled = true;
      options.logger.error('shutdown did not finish within the deadline: exiting', { deadlineMs: options.deadlineMs, exitCode: EXIT_DEADLINE });
      resolve(EXIT_DEADLINE);
      exit(EXIT_DEADLINE);
    }, options.deadlineMs);
    deadline.unref();
    const finish = (code: number) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      resolve(code);
      setTimeout(() => {
        options.logger.warn('the process did not end by itself after stopping: exiting', { exitCode: code });
        exit(code);
      }, lingerMs).unref();
    };
    stop().then(
      ({ clean }) => finish(clean ? EXIT_CLEAN : uncleanCode),
      () => finish(uncleanCode),
    );
  });
}
