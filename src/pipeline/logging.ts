/**
 * Structured JSON logs: one line per event with time, level, msg and fields.
 *
 * Document text and patient references must never reach a log line. Call sites pass ids, counts
 * and error classes only; as a second line of defence, fields whose names suggest clinical content
 * are replaced before writing, and error messages are passed through `safeErrorMessage`.
 */
import type { LogFields, Logger } from './ports.ts';

export type LogLevelName = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: Record<LogLevelName, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Field names whose values are never written, whatever their content. */
const REDACTED_KEYS = new Set(['text', 'patientref', 'patient', 'patientid', 'sentence', 'mention', 'content', 'body', 'value', 'original']);

function sanitize(value: unknown, depth: number): unknown {
  if (value === null || value === undefined) return value;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object') return value;
  if (value instanceof Error) return { errorClass: value.name, message: safeErrorMessage(value) };
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return `[${value.constructor.name} ${(value as ArrayBufferView).byteLength} bytes]`;
  if (depth > 4) return '[nested]';
  if (Array.isArray(value)) return value.slice(0, 50).map((v) => sanitize(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = REDACTED_KEYS.has(k.toLowerCase()) ? '[redacted]' : sanitize(v, depth + 1);
  return out;
}

/**
 * An error's message, cut short and with any of `secrets` (document text, patient reference) removed,
 * for logs. Our own errors never put clinical text in messages; this guards against foreign ones.
 */
export function safeErrorMessage(error: unknown, secrets: readonly string[] = []): string {
  let message = error instanceof Error ? error.message : String(error);
  for (const secret of secrets) {
    if (secret.length >= 2) message = message.split(secret).join('[redacted]');
  }
  return message.length > 300 ? `${message.slice(0, 300)}...` : message;
}

export interface JsonLoggerOptions {
  level?: LogLevelName;
  /** Where lines go (without the newline); default: stdout. */
  sink?: (line: string) => void;
  fields?: LogFields;
  now?: () => Date;
}

class JsonLogger implements Logger {
  constructor(
    private readonly threshold: number,
    private readonly sink: (line: string) => void,
    private readonly base: LogFields,
    private readonly now: () => Date,
  ) {}

  private write(level: LogLevelName, msg: string, fields?: LogFields): void {
    if (LEVELS[level] < this.threshold) return;
    const event: Record<string, unknown> = { time: this.now().toISOString(), level, msg };
    const merged = sanitize({ ...this.base, ...fields }, 0) as Record<string, unknown>;
    for (const [k, v] of Object.entries(merged)) if (!(k in event)) event[k] = v;
    this.sink(JSON.stringify(event));
  }

  debug(msg: string, fields?: LogFields): void {
    this.write('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.write('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.write('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.write('error', msg, fields);
  }
  child(fields: LogFields): Logger {
    return new JsonLogger(this.threshold, this.sink, { ...this.base, ...fields }, this.now);
  }
}

export function createJsonLogger(options: JsonLoggerOptions = {}): Logger {
  const sink = options.sink ?? ((line: string) => process.stdout.write(`${line}\n`));
  return new JsonLogger(LEVELS[options.level ?? 'info'], sink, options.fields ?? {}, options.now ?? (() => new Date()));
}

export const SILENT_LOGGER: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => SILENT_LOGGER,
};
