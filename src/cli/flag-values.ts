import { DURATION_HINT, parseDuration } from '../api/duration.js';
import { UsageError } from './flags.js';

// Flag values more than one command reads, checked with a UsageError that names the flag.

export function durationFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined) throw new UsageError(`${flag}: ${DURATION_HINT}, got "${value}"`);
  return ms;
}

export function int(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`${flag} must be a port number (0-65535), got "${value}"`);
  return n;
}

export async function output(value: unknown, format: string | undefined): Promise<string> {
  if (format === undefined || format === 'json') return `${JSON.stringify(value, null, 2)}\n`;
  if (format === 'yaml') return (await import('yaml')).stringify(value, { lineWidth: 0, aliasDuplicateObjects: false });
  throw new UsageError(`-o must be json or yaml, got "${format}"`);
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export type LogLevel = (typeof LOG_LEVELS)[number];

export function logLevel(value: string | undefined): LogLevel {
  const level = value ?? 'info';
  const known = LOG_LEVELS.find((l) => l === level);
  if (!known) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  return known;
}
