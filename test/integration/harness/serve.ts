/**
 * `rmbert serve` as a child process, for the tests and the reliability suite that need a real process
 * (SIGKILL, SIGTERM, exit codes): its environment from a test's names, spawning, readiness, metrics.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { REPO_ROOT } from '../../helpers/paths.ts';

export const RMBERT_BIN = path.join(REPO_ROOT, 'bin/rmbert.js');

export interface ServeNames {
  input: string;
  output: string;
  deadLetter: string;
  feedback: string;
  modelUpdates: string;
  group: string;
}

/** A TCP port free at the time of the call (loopback). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * The environment of a `rmbert serve` on a test's topics and group: ONNX engine, embedded graph from
 * data/kg/Medical.spo (no Neo4j) unless `extra` says otherwise, metrics on 127.0.0.1:`port`.
 */
export function serveEnv(names: ServeNames, options: { brokers: readonly string[]; modelDir: string; port: number; extra?: Record<string, string> }): Record<string, string> {
  return {
    RMBERT_KAFKA_BROKERS: options.brokers.join(','),
    RMBERT_INPUT_TOPIC: names.input,
    RMBERT_OUTPUT_TOPIC: names.output,
    RMBERT_DLQ_TOPIC: names.deadLetter,
    RMBERT_FEEDBACK_TOPIC: names.feedback,
    RMBERT_MODEL_UPDATES_TOPIC: names.modelUpdates,
    RMBERT_GROUP_ID: names.group,
    RMBERT_TRANSACTIONAL_ID_PREFIX: names.group,
    RMBERT_MODEL_DIR: options.modelDir,
    RMBERT_ENGINE: 'onnx',
    RMBERT_EMBEDDED: 'true',
    RMBERT_KG_FILE: path.join(REPO_ROOT, 'data/kg/Medical.spo'),
    RMBERT_METRICS_PORT: String(options.port),
    RMBERT_METRICS_HOST: '127.0.0.1',
    ...options.extra,
  };
}

export interface ServeProcess {
  readonly child: ChildProcessWithoutNullStreams;
  /** Settles with the exit code (null when ended by a signal). */
  readonly exited: Promise<number | null>;
  /** http://127.0.0.1:<metrics port>, when the environment names the port. */
  readonly base: string;
  out(): string;
  err(): string;
  /** JSON log lines of stdout whose msg is `msg`. */
  logLines(msg: string): Record<string, unknown>[];
  /** SIGKILL if still running (for finally blocks). */
  kill(): void;
}

export function spawnServe(env: Record<string, string>, args: readonly string[] = []): ServeProcess {
  return spawnRmbert(['serve', ...args], env);
}

/** Any `rmbert` command as a child process (only PATH and HOME from this environment); `stdin` is written and closed. */
export function spawnRmbert(args: readonly string[], env: Record<string, string>, stdin?: string): ServeProcess {
  const child = spawn(process.execPath, [RMBERT_BIN, ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (stdin !== undefined) child.stdin.end(stdin);
  else child.stdin.end();
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    exited,
    base: `http://127.0.0.1:${env.RMBERT_METRICS_PORT ?? '0'}`,
    out: () => stdout,
    err: () => stderr,
    logLines(msg: string) {
      const lines: Record<string, unknown>[] = [];
      for (const line of stdout.split('\n')) {
        if (!line.includes(msg)) continue;
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          if (parsed.msg === msg) lines.push(parsed);
        } catch {
          // Not a log line.
        }
      }
      return lines;
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, pollMs = 200): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** Waits until /readyz answers 200; the error carries the process's output. */
export async function waitReady(serve: ServeProcess, timeoutMs = 120_000): Promise<void> {
  await waitFor('ready', () => fetch(`${serve.base}/readyz`).then((r) => r.status === 200, () => false), timeoutMs, 250).catch((e: Error) => {
    throw new Error(`${e.message}; exit ${serve.child.exitCode}; stderr:\n${serve.err().slice(-3000)}\nstdout:\n${serve.out().slice(-3000)}`);
  });
}

/** One sample of a metric without labels from /metrics; NaN when not there (or the server is gone). */
export async function metric(base: string, name: string): Promise<number> {
  const text = await fetch(`${base}/metrics`).then((r) => r.text(), () => '');
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}
