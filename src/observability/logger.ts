import type { DestinationStream, Level, Logger } from 'pino';
import { pino } from 'pino';

export type { Logger } from 'pino';

/**
 * Keys whose values are credentials wherever they appear: Secret contents (`data`, `stringData`),
 * inline tokens, header values and the provider auth headers of DESIGN.md. Redaction is decided
 * here once (redacted()), not at each call site. A consequence: log a Secret's *name* under another key
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

export const REDACTED = '[redacted]';

const SENSITIVE: ReadonlySet<string> = new Set(SENSITIVE_KEYS);

/**
 * How deep a sensitive key is looked for. pino's own redaction takes one path per key and depth
 * and, in @pinojs/redact, parses each of them again for every value of every line: with our 12
 * keys at 4 depths that was 17 µs a line and a few KB of garbage (three times an unredacted
 * line; issue 9). One walk over the record's own keys finds them at any depth up to this, and
 * copies only the objects on the way to a sensitive key: a record without one is printed as given.
 */
const MAX_DEPTH = 8;

/**
 * `value` with every sensitive key's value replaced by REDACTED, at any depth up to MAX_DEPTH;
 * `value` itself when it has none (nothing is copied), else a copy along the paths to them (the
 * caller's objects are never changed). Copies keep their prototype and non-enumerable own
 * properties, so an Error is still an Error with its message and stack for pino's serializer.
 */
export function redacted(value: unknown, depth = 0): unknown {
  if (typeof value !== 'object' || value === null || depth > MAX_DEPTH || ArrayBuffer.isView(value)) return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const clean = redacted(item, depth + 1);
      if (clean !== item) {
        copy ??= value.slice();
        copy[i] = clean;
      }
    }
    return copy ?? value;
  }
  const record = value as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  // Own enumerable keys: what JSON and pino's serializers print.
  for (const key of Object.keys(record)) {
    const item = record[key];
    const clean = SENSITIVE.has(key) && item !== undefined ? REDACTED : redacted(item, depth + 1);
    if (clean === item) continue;
    copy ??= copyOf(record);
    // Defined, not assigned: an accessor or a read-only property is replaced all the same.
    Object.defineProperty(copy, key, { value: clean, enumerable: true, writable: true, configurable: true });
  }
  return copy ?? value;
}

/**
 * A copy with the same prototype and own properties; accessors become their values, read off the
 * original (V8's Error stack is an accessor that reads the Error it was made on).
 */
function copyOf(record: Record<string, unknown>): Record<string, unknown> {
  const descriptors = Object.getOwnPropertyDescriptors(record);
  for (const [key, descriptor] of Object.entries(descriptors)) {
    if (descriptor.get !== undefined || descriptor.set !== undefined) {
      descriptors[key] = { value: record[key], enumerable: descriptor.enumerable ?? false, writable: true, configurable: true };
    }
  }
  return Object.create(Object.getPrototypeOf(record) as object | null, descriptors) as Record<string, unknown>;
}

export interface LoggerOptions {
  level?: Level | 'silent';
  name?: string;
}

/** A JSON-lines logger on stderr (stdout stays free for command output such as `translate`). */
export function createLogger(options: LoggerOptions = {}, destination?: DestinationStream): Logger {
  const logger = pino(
    {
      level: options.level ?? 'info',
      ...(options.name ? { name: options.name } : {}),
      hooks: {
        // Every object a line is given (the record, an Error, values interpolated into the
        // message), at the levels that print only.
        logMethod(args, method) {
          const values = args as unknown[];
          for (let i = 0; i < values.length; i++) values[i] = redacted(values[i]);
          method.apply(this, args);
        },
      },
    },
    // Synchronous writes: the last lines before a crash are the ones that explain it.
    destination ?? pino.destination({ fd: 2, sync: true }),
  );
  // A child's bindings are printed on each of its lines without passing logMethod: redacted when
  // it is made. Children inherit this from the logger they are made from, at any depth.
  const child = logger.child;
  logger.child = function redactedChild(this: Logger, bindings, childOptions) {
    return child.call(this, redacted(bindings) as typeof bindings, childOptions);
  } as Logger['child'];
  const setBindings = logger.setBindings;
  logger.setBindings = function redactedBindings(this: Logger, bindings) {
    setBindings.call(this, redacted(bindings) as typeof bindings);
  };
  return logger;
}

/** A logger that drops everything, for tests and library callers that pass none. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
