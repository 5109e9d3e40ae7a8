import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';

/** Bad command line: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** The command whose usage to show (undefined: the top-level usage). */
    readonly command?: string,
  ) {
    super(message);
  }
}

/** `--help` / `-h` was given: print the command's usage, exit 0. */
export class HelpRequested extends Error {
  constructor(readonly command: string) {
    super(`help for ${command}`);
  }
}

/** Edit distance with adjacent transpositions counting as one edit ("sevre" is one from "serve"). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  const at = (i: number, j: number): number => d[i]?.[j] ?? 0;
  for (let i = 1; i <= a.length; i++) {
    const row = d[i] ?? [];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, at(i - 2, j - 2) + 1);
      row[j] = best;
    }
  }
  return at(a.length, b.length);
}

/**
 * The closest candidate to `word`, if close enough to be a typo: at most a third of the longer
 * word's length (at least 1, at most 3), or a prefix of the candidate ("--xds" for "--xds-port").
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of candidates) {
    const distance = editDistance(word, name);
    if (best === undefined || distance < best.distance) best = { name, distance };
  }
  if (best === undefined) return undefined;
  const limit = Math.min(3, Math.max(1, Math.floor(Math.max(word.length, best.name.length) / 3)));
  if (best.distance <= limit) return best.name;
  const prefixed = candidates.filter((c) => word.length >= 3 && c.startsWith(word));
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

function errorCode(err: unknown): string {
  return err instanceof Error && 'code' in err ? String(err.code) : '';
}

/**
 * Parses a command's flags (node:util parseArgs, strict) and turns its errors into UsageErrors
 * that name the flag and, for an unknown one, the closest known flag. `--help` / `-h` on any
 * command throws HelpRequested.
 */
export function parseFlags<T extends ParseArgsOptionsConfig>(command: string, config: { args: string[]; options: T }): { values: ReturnType<typeof parseArgs<{ args: string[]; options: T }>>['values'] } {
  const { args, options } = config;
  if (args.includes('--help') || args.includes('-h')) throw new HelpRequested(command);
  try {
    return { values: parseArgs({ args, options, strict: true }).values };
  } catch (err) {
    const code = errorCode(err);
    const message = err instanceof Error ? err.message : String(err);
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const given = /'([^']+)'/.exec(message)?.[1] ?? message;
      const flag = given.split('=')[0] ?? given;
      const names = Object.entries(options).flatMap(([name, o]) => [`--${name}`, ...(o.short ? [`-${o.short}`] : [])]);
      const guess = closest(flag, names.filter((n) => n.startsWith('--')));
      throw new UsageError(`${command}: unknown flag ${flag}${guess ? `; did you mean ${guess}?` : ''}`, command);
    }
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      const given = /'([^']+)'/.exec(message)?.[1] ?? '';
      throw new UsageError(`${command}: unexpected argument "${given}" (every value is given with a flag)`, command);
    }
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const flag = /'(-[^' ]+)/.exec(message)?.[1] ?? '';
      const takesValue = flag !== '' && /argument missing/.test(message);
      throw new UsageError(takesValue ? `${command}: ${flag} needs a value` : `${command}: ${message}`, command);
    }
    throw err;
  }
}
