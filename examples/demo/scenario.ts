import type { FakeProviderMode } from './fake-provider.js';

/**
 * The failover scenario of `make demo`: which provider fails how in each phase, the client load
 * that runs through all of it, and how the outcome is counted and shown. Nothing here starts a
 * process; run.ts supplies the providers and the client through a ScenarioDriver.
 */

/** The members of Backend ai/chat (examples/chat.yaml), in priority order. */
export const PROVIDERS = ['primary', 'secondary', 'tertiary'] as const;
export type ProviderName = (typeof PROVIDERS)[number];

export type ProviderModes = Readonly<Record<ProviderName, FakeProviderMode>>;

export interface Phase {
  /** Short, for the live view's phase column. */
  label: string;
  /** What the scenario does to the providers. */
  action: string;
  /** What a user should see if failover works. */
  expect: string;
  modes: ProviderModes;
}

const OK: FakeProviderMode = { kind: 'ok' };
const UNAVAILABLE: FakeProviderMode = { kind: 'status', status: 503, message: 'the demo made this provider fail' };
const RATE_LIMITED: FakeProviderMode = { kind: 'ratelimit', retryAfterSeconds: 30 };

export const PHASES: readonly Phase[] = [
  {
    label: 'all healthy',
    action: 'every provider answers 200',
    expect: 'answers from primary (priority 0)',
    modes: { primary: OK, secondary: OK, tertiary: OK },
  },
  {
    label: 'p0 503',
    action: 'priority 0 (primary) returns 503',
    expect: 'answers from secondary, no client errors; primary is ejected after 3 consecutive 5xx',
    modes: { primary: UNAVAILABLE, secondary: OK, tertiary: OK },
  },
  {
    label: 'p0+p1 503',
    action: 'priorities 0 and 1 (primary, secondary) return 503',
    expect: 'answers from tertiary, no client errors',
    modes: { primary: UNAVAILABLE, secondary: UNAVAILABLE, tertiary: OK },
  },
  {
    label: 'p0 429',
    action: 'priority 0 answers 429 with Retry-After: 30; secondary is healthy again',
    expect:
      'answers from secondary (tertiary while secondary is still ejected), no client errors; a 429 does not eject, ' +
      'so once primary is back every request tries it first and pays one retry',
    modes: { primary: RATE_LIMITED, secondary: OK, tertiary: OK },
  },
  {
    label: 'recovery',
    action: 'every provider answers 200 again',
    expect: 'answers return to primary once its outlier ejection ends, no client errors',
    modes: { primary: OK, secondary: OK, tertiary: OK },
  },
];

/** The providers answering 200 in a phase: while there is one, every client request should succeed. */
export function healthyProviders(phase: Phase): ProviderName[] {
  return PROVIDERS.filter((name) => phase.modes[name].kind === 'ok');
}

/** The fake providers answer `answered by <name>`. */
export function providerNamedIn(content: string): ProviderName | undefined {
  const match = /answered by (\S+)/.exec(content);
  const name = match?.[1];
  return PROVIDERS.find((p) => p === name);
}

// ---------------------------------------------------------------------------------------------
// Outcomes and their aggregation

export type Answer = { answeredBy: ProviderName } | { failure: string };

export interface RequestOutcome {
  /** Index into the phase list, at the moment the request was sent. */
  phase: number;
  /** Milliseconds since the scenario started. */
  sentAt: number;
  doneAt: number;
  answer: Answer;
}

export interface Tally {
  requests: number;
  answered: Record<ProviderName, number>;
  failed: number;
  /** Latencies of all requests, failed ones included, sorted ascending (ms). */
  latencies: number[];
}

export function tally(outcomes: readonly RequestOutcome[]): Tally {
  const answered: Record<ProviderName, number> = { primary: 0, secondary: 0, tertiary: 0 };
  let failed = 0;
  for (const o of outcomes) {
    if ('answeredBy' in o.answer) answered[o.answer.answeredBy]++;
    else failed++;
  }
  const latencies = outcomes.map((o) => o.doneAt - o.sentAt).sort((a, b) => a - b);
  return { requests: outcomes.length, answered, failed, latencies };
}

/** Nearest-rank percentile of ascending values; undefined when there are none. */
export function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Requests that failed although some provider was healthy when they were sent: the goal is none. */
export function failuresWhileHealthy(phases: readonly Phase[], outcomes: readonly RequestOutcome[]): RequestOutcome[] {
  return outcomes.filter((o) => {
    const phase = phases[o.phase];
    return 'failure' in o.answer && phase !== undefined && healthyProviders(phase).length > 0;
  });
}

/** Distinct failure messages with their counts, most frequent first. */
export function failureReasons(outcomes: readonly RequestOutcome[]): Array<{ reason: string; count: number }> {
  const counts = new Map<string, number>();
  for (const o of outcomes) if ('failure' in o.answer) counts.set(o.answer.failure, (counts.get(o.answer.failure) ?? 0) + 1);
  return [...counts].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count);
}

// ---------------------------------------------------------------------------------------------
// Rendering

export interface Palette {
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

export function palette(enabled: boolean): Palette {
  const wrap = (open: number, close: number) => (s: string) => (enabled ? `\x1b[${open}m${s}\x1b[${close}m` : s);
  return { bold: wrap(1, 22), dim: wrap(2, 22), red: wrap(31, 39), green: wrap(32, 39), yellow: wrap(33, 39), cyan: wrap(36, 39) };
}

export function formatMs(ms: number | undefined): string {
  if (ms === undefined) return '-';
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

function formatClock(seconds: number): string {
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`;
}

const LIVE_COLUMNS = [
  { title: 'time', width: 5, align: 'right' },
  { title: 'phase', width: 13, align: 'left' },
  { title: 'primary', width: 8, align: 'right' },
  { title: 'secondary', width: 10, align: 'right' },
  { title: 'tertiary', width: 9, align: 'right' },
  { title: 'failed', width: 7, align: 'right' },
  { title: 'p50', width: 9, align: 'right' },
  { title: 'attempts p0/p1/p2', width: 17, align: 'right' },
] as const;

function pad(text: string, width: number, align: 'left' | 'right'): string {
  return align === 'left' ? text.padEnd(width) : text.padStart(width);
}

export function liveHeader(p: Palette): string {
  return p.dim(LIVE_COLUMNS.map((c) => pad(c.title, c.width, c.align)).join('  '));
}

export type Attempts = Readonly<Record<ProviderName, number>>;

/** What each provider received: answers plus the failed attempts Envoy retried elsewhere. */
export function formatAttempts(a: Attempts): string {
  return PROVIDERS.map((n) => String(a[n])).join('/');
}

export function attemptsBetween(before: Attempts, after: Attempts): Attempts {
  return { primary: after.primary - before.primary, secondary: after.secondary - before.secondary, tertiary: after.tertiary - before.tertiary };
}

/** One line of the live view: what completed during second `second` of the scenario. */
export function liveRow(second: number, phaseIndex: number, phase: Phase, t: Tally, attempts: Attempts, p: Palette): string {
  const top = Math.max(...PROVIDERS.map((n) => t.answered[n]));
  const cells = [
    formatClock(second),
    `${phaseIndex + 1} ${phase.label}`,
    ...PROVIDERS.map((n) => String(t.answered[n])),
    String(t.failed),
    formatMs(percentile(t.latencies, 50)),
    formatAttempts(attempts),
  ];
  const padded = cells.map((text, i) => {
    const column = LIVE_COLUMNS[i];
    return column === undefined ? text : pad(text, column.width, column.align);
  });
  PROVIDERS.forEach((name, i) => {
    const cell = padded[2 + i];
    if (cell !== undefined && t.answered[name] > 0 && t.answered[name] === top) padded[2 + i] = p.green(cell);
  });
  const failedCell = padded[5];
  if (failedCell !== undefined && t.failed > 0) padded[5] = p.bold(p.red(failedCell));
  padded[0] = p.dim(padded[0] ?? '');
  padded[7] = p.dim(padded[7] ?? '');
  return padded.join('  ');
}

export function phaseBanner(index: number, phase: Phase, seconds: number, p: Palette): string {
  const title = p.bold(p.cyan(`Phase ${index + 1}/${PHASES.length}: ${phase.label}`));
  return [
    '',
    `${title} ${p.dim(`(${seconds} s)`)}`,
    `  ${phase.action}`,
    `  expect: ${phase.expect}`,
  ].join('\n');
}

/** The end-of-run table: one row per phase and a total; `attempts[i]` is what providers received in phase i. */
export function summaryTable(phases: readonly Phase[], outcomes: readonly RequestOutcome[], attempts: readonly Attempts[], p: Palette): string {
  const header = ['phase', 'requests', 'primary', 'secondary', 'tertiary', 'failed', 'p50', 'p99', 'attempts p0/p1/p2'];
  const rows: string[][] = [];
  const failedColumn = header.indexOf('failed');
  const row = (label: string, t: Tally, a: Attempts | undefined): string[] => [
    label,
    String(t.requests),
    ...PROVIDERS.map((n) => String(t.answered[n])),
    String(t.failed),
    formatMs(percentile(t.latencies, 50)),
    formatMs(percentile(t.latencies, 99)),
    a === undefined ? '-' : formatAttempts(a),
  ];
  phases.forEach((phase, i) => rows.push(row(`${i + 1} ${phase.label}`, tally(outcomes.filter((o) => o.phase === i)), attempts[i])));
  const total = { primary: 0, secondary: 0, tertiary: 0 };
  for (const a of attempts) for (const n of PROVIDERS) total[n] += a[n];
  rows.push(row('total', tally(outcomes), total));

  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[], paint: (cell: string, column: number) => string = (c) => c): string =>
    cells.map((c, i) => paint(pad(c, widths[i] ?? 0, i === 0 ? 'left' : 'right'), i)).join('  ');
  const rule = p.dim(widths.map((w) => '-'.repeat(w)).join('  '));
  const out = [p.bold(line(header)), rule];
  rows.forEach((r, i) => {
    if (i === rows.length - 1) out.push(rule);
    const isTotal = i === rows.length - 1;
    out.push(
      line(r, (cell, column) => {
        if (column === failedColumn && r[column] !== '0') return p.bold(p.red(cell));
        return isTotal ? p.bold(cell) : cell;
      }),
    );
  });
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// The run

export interface ScenarioDriver {
  /** Puts each fake provider in the phase's mode; resolves once the modes are in effect. */
  setModes(modes: ProviderModes): Promise<void>;
  /** One chat request through the gateway; never rejects. */
  send(): Promise<Answer>;
  /** How many requests each provider has received so far (Envoy's attempts, not client requests). */
  attempts(): Attempts;
}

export interface ScenarioOptions {
  phases: readonly Phase[];
  phaseSeconds: number;
  requestsPerSecond: number;
  /** Requests in flight at most; a send due while at the limit is skipped and counted. */
  maxInFlight: number;
  driver: ScenarioDriver;
  write(line: string): void;
  palette: Palette;
  /** Aborting ends the scenario early (Ctrl-C, a process died); what completed is returned. */
  signal: AbortSignal;
  /** How long to wait for requests still in flight once the last phase is over. */
  drainMs?: number;
}

export interface ScenarioResult {
  outcomes: RequestOutcome[];
  /** Sends skipped because `maxInFlight` requests were pending. */
  skipped: number;
  /** Requests still pending when the drain wait ended. */
  abandoned: number;
  /** What the providers received during each phase. */
  attempts: Attempts[];
  completed: boolean;
}

export async function runScenario(opts: ScenarioOptions): Promise<ScenarioResult> {
  const { phases, phaseSeconds, driver, write, palette: p, signal } = opts;
  const outcomes: RequestOutcome[] = [];
  const pending = new Set<Promise<void>>();
  const start = performance.now();
  const elapsed = (): number => performance.now() - start;
  let phase = 0;
  let skipped = 0;
  let reported = 0;
  const attempts: Attempts[] = [];
  let phaseStartAttempts = driver.attempts();
  let secondStartAttempts = phaseStartAttempts;

  const enterPhase = async (index: number): Promise<void> => {
    const next = phases[index];
    if (next === undefined) return;
    await driver.setModes(next.modes);
    phase = index;
    write(phaseBanner(index, next, phaseSeconds, p));
    write(liveHeader(p));
  };

  const sendOne = (): void => {
    if (pending.size >= opts.maxInFlight) {
      skipped++;
      return;
    }
    const sentPhase = phase;
    const sentAt = elapsed();
    const done = driver.send().then((answer) => {
      outcomes.push({ phase: sentPhase, sentAt, doneAt: elapsed(), answer });
    });
    pending.add(done);
    void done.finally(() => pending.delete(done));
  };

  await enterPhase(0);
  const interval = 1000 / opts.requestsPerSecond;
  let sent = 0;
  const sender = (): void => {
    if (signal.aborted) return;
    sendOne();
    sent++;
    timer = setTimeout(sender, Math.max(0, start + sent * interval - performance.now()));
  };
  let timer = setTimeout(sender, 0);

  const totalSeconds = phases.length * phaseSeconds;
  try {
    for (let second = 1; second <= totalSeconds && !signal.aborted; second++) {
      await sleepUntil(start + second * 1000, signal);
      if (signal.aborted) break;
      const to = second * 1000;
      const current = phases[phase];
      // A request counts in the second it completed: that is when a user would see it.
      // Outcomes are appended as they complete, so each second's are a contiguous run.
      let end = reported;
      while (end < outcomes.length && (outcomes[end]?.doneAt ?? Infinity) < to) end++;
      const window = outcomes.slice(reported, end);
      reported = end;
      const now = driver.attempts();
      if (current !== undefined) write(liveRow(second, phase, current, tally(window), attemptsBetween(secondStartAttempts, now), p));
      secondStartAttempts = now;
      if (second % phaseSeconds === 0 && second < totalSeconds) {
        attempts[phase] = attemptsBetween(phaseStartAttempts, now);
        phaseStartAttempts = now;
        await enterPhase(second / phaseSeconds);
      }
    }
  } finally {
    clearTimeout(timer);
  }

  const inFlight = [...pending];
  const drained = await Promise.race([
    Promise.all(inFlight).then(() => true),
    sleepUntil(performance.now() + (opts.drainMs ?? 15_000), signal).then(() => false),
  ]);
  attempts[phase] = attemptsBetween(phaseStartAttempts, driver.attempts());
  return { outcomes, skipped, abandoned: drained ? 0 : pending.size, attempts, completed: !signal.aborted };
}

function sleepUntil(deadline: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, Math.max(0, deadline - performance.now()));
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
