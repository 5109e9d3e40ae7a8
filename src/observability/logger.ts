import type { DestinationStream, Level, Logger } from 'pino';
import { pino } from 'pino';

export type { Logger } from 'pino';

/**
 * Keys whose values are credentials wherever they appear: Secret contents (`data`, `stringData`),
 * inline tokens, header values and the provider auth headers of DESIGN.md. Redaction is decided
 * here once, not at each call site. A consequence: log a Secret's *name* under another key
 * (`secretName`), since `secret` itself is censored.
 */
const SENSITIVE_KEYS = [
  'data',
  'stringData',
  'inline',
  'value',
  'authorization',
  'Authorization',
  'apiKey',
  'secret',
  'token',
  'api-key',
  'x-api-key',
  'x-goog-api-key',
] as const;

/** The redaction library matches a fixed depth per path; this covers the nesting our log records use. */
const MAX_DEPTH = 3;

function segment(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? key : `["${key}"]`;
}

/** `key`, `*.key`, `*.*.key`, ...: one path per depth, since a wildcard stands for exactly one level. */
export function redactPaths(keys: readonly string[] = SENSITIVE_KEYS, maxDepth = MAX_DEPTH): string[] {
  const paths: string[] = [];
  for (const key of keys) {
    const last = segment(key);
    for (let depth = 0; depth <= maxDepth; depth++) {
      const prefix = depth === 0 ? '' : `*${'.*'.repeat(depth - 1)}`;
      if (prefix === '') paths.push(last);
      else paths.push(last.startsWith('[') ? `${prefix}${last}` : `${prefix}.${last}`);
    }
  }
  return paths;
}

export const REDACTED = '[redacted]';

export interface LoggerOptions {
  level?: Level | 'silent';
  name?: string;
}

/** A JSON-lines logger on stderr (stdout stays free for command output such as `translate`). */
export function createLogger(options: LoggerOptions = {}, destination?: DestinationStream): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      ...(options.name ? { name: options.name } : {}),
      redact: { paths: redactPaths(), censor: REDACTED },
    },
    // Synchronous writes: the last lines before a crash are the ones that explain it.
    destination ?? pino.destination({ fd: 2, sync: true }),
  );
}

/** A logger that drops everything, for tests and library callers that pass none. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
