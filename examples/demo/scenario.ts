import type { FakeProviderMode } from './fake-provider.js';

/**
 * The failover scenarios of `make demo`: for each part, a Backend's members, which member fails
 * how in each phase, and how the outcome of the client load that runs through all of it is counted
 * and shown. Nothing here starts a process; run.ts supplies the providers and the client through a
 * ScenarioDriver.
 */

/** A mode per member; a member not named answers 200. */
export type ProviderModes = Readonly<Record<string, FakeProviderMode>>;

export interface Phase {
  /** Short, for the live view's phase column. */
  label: string;
  /** What the scenario does to the providers. */
  action: string;
  /** What a user should see if failover works. */
  expect: string;
  modes: ProviderModes;
  /** Halfway through the phase, also send one `stream: true` request and print its chunks as they arrive. */
  stream?: boolean;
  /**
   * After its nominal length the phase goes on, second by second, until `member` gave most of the
   * last second's answers (its outlier ejection is over), `maxSeconds` in all at most.
   */
  extendUntilAnswerFrom?: { member: string; maxSeconds: number };
}

/** One part of the demo: a Backend, the client traffic to it, and the phases it goes through. */
export interface Part {
  /** The Backend (namespace ai), e.g. `chat`. */
  backend: string;
  title: string;
  /** What the part shows, one paragraph. */
  intro: string;
  /** The gateway path prefix the client talks to, e.g. `/v1`. */
  path: string;
  /** The Backend's members in priority order: the fake providers' names and the live view's columns. */
  members: readonly string[];
  phases: readonly Phase[];
}

const OK: FakeProviderMode = { kind: 'ok' };
const UNAVAILABLE: FakeProviderMode = { kind: 'status', status: 503, message: 'the demo made this provider fail' };
const RATE_LIMITED: FakeProviderMode = { kind: 'ratelimit', retryAfterSeconds: 30 };

/** Backend ai/chat (examples/chat.yaml): three OpenAI-compatible providers, outlier ejection 5 s. */
export const CHAT: Part = {
  backend: 'chat',
  title: 'failover across three OpenAI-compatible providers',
  intro: 'Backend ai/chat (examples/chat.yaml): primary, secondary, tertiary at priorities 0, 1, 2; outlier ejection after 3 consecutive 5xx, for 5 s.',
  path: '/v1',
  members: ['primary', 'secondary', 'tertiary'],
  phases: [
    {
      label: 'all healthy',
      action: 'every provider answers 200',
      expect: 'answers from primary (priority 0)',
      modes: {},
    },
    {
      label: 'p0 503',
      action: 'priority 0 (primary) returns 503',
      expect: 'answers from secondary, no client errors; primary is ejected after 3 consecutive 5xx',
      modes: { primary: UNAVAILABLE },
    },
    {
      label: 'p0+p1 503',
      action: 'priorities 0 and 1 (primary, secondary) return 503',
      expect: 'answers from tertiary, no client errors',
      modes: { primary: UNAVAILABLE, secondary: UNAVAILABLE },
    },
    {
      label: 'p0 429',
      action: 'priority 0 answers 429 with Retry-After: 30; secondary is healthy again',
      expect:
        'answers from secondary (tertiary while secondary is still ejected), no client errors; a 429 does not eject, ' +
        'so once primary is back every request tries it first and pays one retry',
      modes: { primary: RATE_LIMITED },
    },
    {
      label: 'recovery',
      action: 'every provider answers 200 again',
      expect: 'answers return to primary once its outlier ejection ends, no client errors',
      modes: {},
      extendUntilAnswerFrom: { member: 'primary', maxSeconds: 20 },
    },
  ],
};

/**
 * Backend ai/cross (examples/cross-provider.yaml): OpenAI, Azure OpenAI, Anthropic. It sets no
 * outlierDetection, so a multi-priority Backend's default applies: ejection after 3 consecutive
 * 5xx, 15 s (30 s for a second ejection).
 */
export const CROSS: Part = {
  backend: 'cross',
  title: 'failover across vendors: OpenAI -> Azure OpenAI -> Anthropic',
  intro:
    'Backend ai/cross (examples/cross-provider.yaml): the same unmodified OpenAI client; the AI extension gives every attempt ' +
    "its vendor's path, Host, key header and model, and speaks Anthropic's Messages API to Anthropic. Each fake refuses a " +
    "request its vendor would refuse; every answer is checked to be in OpenAI's format. Outlier ejection: the default, 15 s.",
  path: '/cross/v1',
  members: ['openai', 'azure', 'anthropic'],
  phases: [
    {
      label: 'all healthy',
      action: 'every vendor answers 200',
      expect: 'answers from openai (priority 0)',
      modes: {},
    },
    {
      label: 'OpenAI 503',
      action: 'OpenAI returns 503',
      expect: "answers from azure in OpenAI's format (api-key header, deployment path), no client errors",
      modes: { openai: UNAVAILABLE },
    },
    {
      label: 'OpenAI+Azure 503',
      action: 'OpenAI and Azure return 503; halfway through, one `stream: true` request',
      expect: "answers from anthropic translated to OpenAI's format, the stream chunk by chunk as Anthropic writes it, no client errors",
      modes: { openai: UNAVAILABLE, azure: UNAVAILABLE },
      stream: true,
    },
    {
      label: 'recovery',
      action: 'every vendor answers 200 again',
      expect: "answers return to openai once its outlier ejection (15 s) ends; until then from anthropic, azure's ejection lasting too",
      modes: {},
      extendUntilAnswerFrom: { member: 'openai', maxSeconds: 35 },
    },
  ],
};

export const PARTS: readonly Part[] = [CHAT, CROSS];

export function modeOf(phase: Phase, member: string): FakeProviderMode {
  return phase.modes[member] ?? OK;
}

/** The members answering 200 in a phase: while there is one, every client request should succeed. */
export function healthyMembers(part: Part, phase: Phase): string[] {
  return part.members.filter((name) => modeOf(phase, name).kind === 'ok');
}

/** The fake providers answer `answered by <name>`. */
export function memberNamedIn(members: readonly string[], content: string): string | undefined {
  const match = /answered by (\S+)/.exec(content);
  const name = match?.[1];
  return members.find((m) => m === name);
}

// ---------------------------------------------------------------------------------------------
// Outcomes and their aggregation

export type Answer = { answeredBy: string } | { failure: string };

export interface RequestOutcome {
  /** Index into the part's phases, at the moment the request was sent. */
  phase: number;
  /** Milliseconds since the part started. */
  sentAt: number;
  doneAt: number;
  answer: Answer;
  /** A `stream: true` request. */
  stream?: boolean;
}

export interface Tally {
  requests: number;
  /** Answers per member, in the part's member order. */
  answered: number[];
  failed: number;
  /** Latencies of all requests but streams (their whole length), failed ones included, sorted ascending (ms). */
  latencies: number[];
}

export function tally(members: readonly string[], outcomes: readonly RequestOutcome[]): Tally {
  const answered = members.map(() => 0);
  let failed = 0;
  for (const o of outcomes) {
    if ('answeredBy' in o.answer) {
      const i = members.indexOf(o.answer.answeredBy);
      if (i >= 0) answered[i] = (answered[i] ?? 0) + 1;
    } else {
      failed++;
    }
  }
  const latencies = outcomes.filter((o) => o.stream !== true).map((o) => o.doneAt - o.sentAt).sort((a, b) => a - b);
  return { requests: outcomes.length, answered, failed, latencies };
}

/** Nearest-rank percentile of ascending values; undefined when there are none. */
export function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Requests that failed although some member was healthy when they were sent: the goal is none. */
export function failuresWhileHealthy(part: Part, outcomes: readonly RequestOutcome[]): RequestOutcome[] {
  return outcomes.filter((o) => {
    const phase = part.phases[o.phase];
    return 'failure' in o.answer && phase !== undefined && healthyMembers(part, phase).length > 0;
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

type Align = 'left' | 'right';

interface Column {
  title: string;
  width: number;
  align: Align;
}

/** The live view's columns: time, phase, one per member, failed, p50, attempts. */
function liveColumns(part: Part): Column[] {
  const phaseWidth = Math.max(13, ...part.phases.map((ph, i) => `${i + 1} ${ph.label}`.length));
  return [
    { title: 'time', width: 5, align: 'right' },
    { title: 'phase', width: phaseWidth, align: 'left' },
    ...part.members.map((m): Column => ({ title: m, width: Math.max(7, m.length), align: 'right' })),
    { title: 'failed', width: 7, align: 'right' },
    { title: 'p50', width: 9, align: 'right' },
    { title: attemptsTitle(part), width: Math.max(11, attemptsTitle(part).length), align: 'right' },
  ];
}

function attemptsTitle(part: Part): string {
  return `attempts ${part.members.map((_, i) => `p${i}`).join('/')}`;
}

function pad(text: string, width: number, align: Align): string {
  return align === 'left' ? text.padEnd(width) : text.padStart(width);
}

export function liveHeader(part: Part, p: Palette): string {
  return p.dim(liveColumns(part).map((c) => pad(c.title, c.width, c.align)).join('  '));
}

/** What each member received: answers plus the failed attempts Envoy retried elsewhere (member order). */
export type Attempts = readonly number[];

export function formatAttempts(a: Attempts): string {
  return a.map(String).join('/');
}

export function attemptsBetween(before: Attempts, after: Attempts): Attempts {
  return after.map((n, i) => n - (before[i] ?? 0));
}

/** One line of the live view: what completed during second `second` of the part. */
export function liveRow(part: Part, second: number, phaseIndex: number, t: Tally, attempts: Attempts, p: Palette): string {
  const columns = liveColumns(part);
  const members = part.members.length;
  const top = Math.max(...t.answered);
  const cells = [
    formatClock(second),
    `${phaseIndex + 1} ${part.phases[phaseIndex]?.label ?? ''}`,
    ...t.answered.map(String),
    String(t.failed),
    formatMs(percentile(t.latencies, 50)),
    formatAttempts(attempts),
  ];
  const padded = cells.map((text, i) => {
    const column = columns[i];
    return column === undefined ? text : pad(text, column.width, column.align);
  });
  t.answered.forEach((n, i) => {
    const cell = padded[2 + i];
    if (cell !== undefined && n > 0 && n === top) padded[2 + i] = p.green(cell);
  });
  const failedAt = 2 + members;
  const failedCell = padded[failedAt];
  if (failedCell !== undefined && t.failed > 0) padded[failedAt] = p.bold(p.red(failedCell));
  padded[0] = p.dim(padded[0] ?? '');
  const attemptsAt = padded.length - 1;
  padded[attemptsAt] = p.dim(padded[attemptsAt] ?? '');
  return padded.join('  ');
}

export function phaseBanner(part: Part, index: number, seconds: number, p: Palette): string {
  const phase = part.phases[index];
  if (phase === undefined) return '';
  const title = p.bold(p.cyan(`Phase ${index + 1}/${part.phases.length}: ${phase.label}`));
  const extend = phase.extendUntilAnswerFrom;
  const length = extend === undefined ? `${seconds} s` : `${seconds} s, longer until ${extend.member} answers again, at most ${Math.max(seconds, extend.maxSeconds)} s`;
  return ['', `${title} ${p.dim(`(${length})`)}`, `  ${phase.action}`, `  expect: ${phase.expect}`].join('\n');
}

/** The end-of-run table: one row per phase and a total; `attempts[i]` is what members received in phase i. */
export function summaryTable(part: Part, result: Pick<ScenarioResult, 'outcomes' | 'attempts' | 'seconds'>, p: Palette): string {
  const header = ['phase', 's', 'requests', ...part.members, 'failed', 'p50', 'p99', attemptsTitle(part)];
  const rows: string[][] = [];
  const failedColumn = header.indexOf('failed');
  const row = (label: string, seconds: number | undefined, t: Tally, a: Attempts | undefined): string[] => [
    label,
    seconds === undefined ? '-' : String(seconds),
    String(t.requests),
    ...t.answered.map(String),
    String(t.failed),
    formatMs(percentile(t.latencies, 50)),
    formatMs(percentile(t.latencies, 99)),
    a === undefined ? '-' : formatAttempts(a),
  ];
  part.phases.forEach((phase, i) =>
    rows.push(row(`${i + 1} ${phase.label}`, result.seconds[i], tally(part.members, result.outcomes.filter((o) => o.phase === i)), result.attempts[i])),
  );
  const total = part.members.map(() => 0);
  for (const a of result.attempts) a.forEach((n, i) => (total[i] = (total[i] ?? 0) + n));
  rows.push(row('total', result.seconds.reduce((s, n) => s + n, 0), tally(part.members, result.outcomes), total));

  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[], paint: (cell: string, column: number) => string = (c) => c): string =>
    cells.map((c, i) => paint(pad(c, widths[i] ?? 0, i === 0 ? 'left' : 'right'), i)).join('  ');
  const rule = p.dim(widths.map((w) => '-'.repeat(w)).join('  '));
  const out = [p.bold(line(header)), rule];
  rows.forEach((r, i) => {
    const isTotal = i === rows.length - 1;
    if (isTotal) out.push(rule);
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
  setModes(phase: Phase): Promise<void>;
  /** One chat request through the gateway; never rejects. */
  send(): Promise<Answer>;
  /** One `stream: true` request; `print` shows each chunk as it arrives; never rejects. */
  stream(print: (line: string) => void): Promise<Answer>;
  /** How many requests each member has received so far (Envoy's attempts, not client requests). */
  attempts(): Attempts;
}

export interface ScenarioOptions {
  part: Part;
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
  /** What the members received during each phase. */
  attempts: Attempts[];
  /** How long each phase lasted (s). */
  seconds: number[];
  completed: boolean;
}

export async function runScenario(opts: ScenarioOptions): Promise<ScenarioResult> {
  const { part, phaseSeconds, driver, write, palette: p, signal } = opts;
  const { phases, members } = part;
  const outcomes: RequestOutcome[] = [];
  const pending = new Set<Promise<void>>();
  const start = performance.now();
  const elapsed = (): number => performance.now() - start;
  let phase = 0;
  let phaseStartSecond = 0;
  let skipped = 0;
  let reported = 0;
  const attempts: Attempts[] = [];
  const seconds: number[] = [];
  let phaseStartAttempts = driver.attempts();
  let secondStartAttempts = phaseStartAttempts;

  const enterPhase = async (index: number): Promise<void> => {
    const next = phases[index];
    if (next === undefined) return;
    await driver.setModes(next);
    phase = index;
    write(phaseBanner(part, index, phaseSeconds, p));
    write(liveHeader(part, p));
  };

  const track = (request: () => Promise<Answer>, stream: boolean): void => {
    const sentPhase = phase;
    const sentAt = elapsed();
    const done = request().then((answer) => {
      outcomes.push({ phase: sentPhase, sentAt, doneAt: elapsed(), answer, ...(stream ? { stream } : {}) });
    });
    pending.add(done);
    void done.finally(() => pending.delete(done));
  };

  const sendOne = (): void => {
    if (pending.size >= opts.maxInFlight) {
      skipped++;
      return;
    }
    track(() => driver.send(), false);
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

  try {
    for (let second = 1; !signal.aborted; second++) {
      await sleepUntil(start + second * 1000, signal);
      if (signal.aborted) break;
      const to = second * 1000;
      const current = phases[phase];
      if (current === undefined) break;
      // A request counts in the second it completed: that is when a user would see it.
      // Outcomes are appended as they complete, so each second's are a contiguous run.
      let end = reported;
      while (end < outcomes.length && (outcomes[end]?.doneAt ?? Infinity) < to) end++;
      const window = tally(members, outcomes.slice(reported, end));
      reported = end;
      const now = driver.attempts();
      write(liveRow(part, second, phase, window, attemptsBetween(secondStartAttempts, now), p));
      secondStartAttempts = now;

      const inPhase = second - phaseStartSecond;
      if (current.stream === true && inPhase === Math.max(1, Math.floor(phaseSeconds / 2))) {
        track(() => driver.stream(write), true);
      }
      let over = inPhase >= phaseSeconds;
      const extend = current.extendUntilAnswerFrom;
      if (over && extend !== undefined) {
        const answers = window.answered.reduce((n, a) => n + a, 0);
        const back = 2 * (window.answered[members.indexOf(extend.member)] ?? 0) > answers;
        if (!back && inPhase < extend.maxSeconds) {
          over = false;
          if (inPhase === phaseSeconds) write(p.dim(`  ${extend.member} is not answering again yet (still ejected): the phase goes on, at most ${extend.maxSeconds} s in all`));
        } else if (!back) {
          write(p.yellow(`  ${extend.member} did not answer again within ${extend.maxSeconds} s: its outlier ejection outlasted the phase`));
        }
      }
      if (over) {
        attempts[phase] = attemptsBetween(phaseStartAttempts, now);
        seconds[phase] = inPhase;
        phaseStartAttempts = now;
        phaseStartSecond = second;
        if (phase === phases.length - 1) break;
        await enterPhase(phase + 1);
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
  // Requests that completed after the last phase ended count in that phase too.
  const last = driver.attempts();
  attempts[phase] = attemptsBetween(phaseStartAttempts, last).map((n, i) => n + (attempts[phase]?.[i] ?? 0));
  seconds[phase] ??= Math.round(elapsed() / 1000) - phaseStartSecond;
  return { outcomes, skipped, abandoned: drained ? 0 : pending.size, attempts, seconds, completed: !signal.aborted };
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
